"""A child process that calls ``AutoModel.generate()`` directly: the floor the servers are compared with.

Run as ``python -m soak.bench.direct_worker --models-dir DIR --model NAME
--audio FILE``. It loads the model twice, with the gateway's companion VAD
(the gateway's pipeline) and without one (funasr-server's pipeline for a
``--model-path`` folder), both with one torch thread as the gateway uses,
then reads one JSON command per line on stdin::

    {"pipeline": "vad" | "plain", "concurrency": 4, "requests": 16}

and writes one JSON line per command on its original stdout:
``{"latencies_s": [...], "wall_s": 1.9}``. Everything FunASR prints goes to
stderr. Each model instance runs one call at a time (AutoModel rewrites its
own kwargs during inference), as in the gateway, so concurrent clients wait
their turn. A single-thread executor per model runs the calls in the order
they arrive, as the gateway's queue does; a plain lock would let some
clients wait for many turns and distort the latency tail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TORCH_THREADS = 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--audio", type=Path, required=True)
    args = parser.parse_args()

    # Keep the original stdout for the protocol; anything printed goes to stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import soundfile
    from funasr import AutoModel

    from gateway import asr

    audio, sample_rate = soundfile.read(args.audio, dtype="float32", always_2d=False)
    if sample_rate != asr.SAMPLE_RATE or audio.ndim != 1:
        raise SystemExit(f"{args.audio} must be mono {asr.SAMPLE_RATE} Hz audio, got {sample_rate} Hz and shape {audio.shape}")

    identity = asr.resolve_identity(args.model, args.models_dir, "cpu")
    with_vad = asr.load_model(identity, TORCH_THREADS).automodel
    plain = AutoModel(
        model=identity.path, model_path=identity.path, device="cpu", ncpu=TORCH_THREADS,
        disable_update=True, disable_pbar=True, disable_log=True, log_level="WARNING",
    )
    runners = {name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"direct-{name}") for name in ("vad", "plain")}
    models = {"vad": (with_vad, runners["vad"]), "plain": (plain, runners["plain"])}
    protocol.write(json.dumps({"ready": True, "audio_s": audio.size / sample_rate}) + "\n")

    for line in sys.stdin:
        command = json.loads(line)
        model, runner = models[command["pipeline"]]
        requests = int(command["requests"])
        concurrency = int(command["concurrency"])
        remaining = iter(range(requests))
        index_lock = threading.Lock()
        latencies_s: list[float] = []

        def client_loop() -> None:
            while True:
                with index_lock:
                    if next(remaining, None) is None:
                        return
                started = time.perf_counter()
                runner.submit(model.generate, input=audio, disable_pbar=True).result()
                with index_lock:
                    latencies_s.append(time.perf_counter() - started)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as clients:
            for future in [clients.submit(client_loop) for _ in range(concurrency)]:
                future.result()
        protocol.write(json.dumps({"latencies_s": latencies_s, "wall_s": time.perf_counter() - started}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
