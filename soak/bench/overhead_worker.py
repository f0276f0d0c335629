"""Child processes of the overhead benchmark: a batch of transcription requests, and tracemalloc's cost.

Each mode prints one JSON line on stdout and exits 0, or prints the reason on
stderr and exits 1. ``load`` sends requests from a process of its own, as
Locust does in a soak run, so the sampler thread in the benchmark's process
competes with the client only for CPU and not for the GIL. ``tracemalloc``
imports the gateway's model code (and with it torch and FunASR), which the
benchmark's own process never does.

    python -m soak.bench.overhead_worker load --url URL --audio WAV --requests N --gateway-pid PID
    python -m soak.bench.overhead_worker tracemalloc --models-dir DIR --model NAME --audio WAV --rounds R --transcriptions N --frames 1 25
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict, TypeVar

import httpx
import psutil

REQUEST_TIMEOUT_S = 60.0
WARM_UP_TRANSCRIPTIONS = 2
# Audio longer than the gateway's default limit (2 hours) is not expected here.
MAX_AUDIO_DURATION_S = 7200.0

T = TypeVar("T")


class LoadResult(TypedDict):
    """One batch of sequential transcription requests, timed from its first request to its last response."""

    requests: int
    wall_s: float
    gateway_cpu_s: float


class TracemallocBlock(TypedDict):
    """One block of transcriptions under one tracemalloc setting; ``frames`` 0 means tracing off."""

    round: int
    frames: int
    transcriptions: int
    seconds_per_transcription: float
    tracemalloc_memory_bytes: int
    traced_bytes: int
    traced_peak_bytes: int


class TracemallocResult(TypedDict):
    load_s: float
    audio_s: float
    blocks: list[TracemallocBlock]


class WorkerError(Exception):
    """A measurement in the child failed; the message goes to stderr and the exit status is 1."""


def tree_cpu_s(pid: int) -> float:
    """Return the user plus system CPU seconds of a process and all its descendants."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        raise WorkerError(f"gateway process {pid} not found") from None
    total_s = 0.0
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total_s += times.user + times.system
    return total_s


def send_batch(url: str, audio_path: Path, requests: int, gateway_pid: int) -> LoadResult:
    """POST the audio to /v1/audio/transcriptions ``requests`` times, one after another."""
    data = audio_path.read_bytes()
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        # Connect once before the clock starts, so the batch times requests and not the TCP handshake.
        client.get("/readyz").raise_for_status()

        cpu_before_s = tree_cpu_s(gateway_pid)
        started = time.perf_counter()
        for index in range(requests):
            response = client.post("/v1/audio/transcriptions", files={"file": (audio_path.name, data, "audio/wav")})
            if response.status_code != 200:
                raise WorkerError(f"request {index} of {requests} returned HTTP {response.status_code}: {response.text[:300]}")
        wall_s = time.perf_counter() - started
        cpu_after_s = tree_cpu_s(gateway_pid)

    return {"requests": requests, "wall_s": wall_s, "gateway_cpu_s": cpu_after_s - cpu_before_s}


def alternate(settings: Sequence[T], round_index: int) -> list[T]:
    """Return the settings in order on even rounds and reversed on odd rounds."""
    return list(settings) if round_index % 2 == 0 else list(reversed(settings))


def measure_tracemalloc(models_dir: Path, model: str, audio_path: Path, rounds: int, transcriptions: int, frames: list[int]) -> TracemallocResult:
    """Time transcriptions with tracing off and at each frame count, alternating the order per round."""
    from gateway import asr
    from gateway import audio as gateway_audio

    started = time.perf_counter()
    identity = asr.resolve_identity(model, models_dir, "cpu")
    loaded = asr.load_model(identity, torch_threads=1)
    load_s = time.perf_counter() - started

    samples = gateway_audio.decode(audio_path.read_bytes(), max_duration_s=MAX_AUDIO_DURATION_S, name=audio_path.name)
    options = asr.RequestOptions()
    for _ in range(WARM_UP_TRANSCRIPTIONS):
        loaded.transcribe(samples, options)

    blocks: list[TracemallocBlock] = []
    for round_index in range(rounds):
        for frame_count in alternate([0, *frames], round_index):
            gc.collect()
            if frame_count:
                tracemalloc.start(frame_count)

            block_started = time.perf_counter()
            for _ in range(transcriptions):
                loaded.transcribe(samples, options)
            seconds = (time.perf_counter() - block_started) / transcriptions

            traced_bytes, traced_peak_bytes = tracemalloc.get_traced_memory()
            own_bytes = tracemalloc.get_tracemalloc_memory()
            tracemalloc.stop()
            blocks.append({
                "round": round_index,
                "frames": frame_count,
                "transcriptions": transcriptions,
                "seconds_per_transcription": seconds,
                "tracemalloc_memory_bytes": own_bytes,
                "traced_bytes": traced_bytes,
                "traced_peak_bytes": traced_peak_bytes,
            })

    return {"load_s": load_s, "audio_s": samples.size / asr.SAMPLE_RATE, "blocks": blocks}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soak.bench.overhead_worker", description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)

    load = modes.add_parser("load", help="send a batch of sequential transcription requests and time it")
    load.add_argument("--url", required=True, help="gateway base URL")
    load.add_argument("--audio", type=Path, required=True, help="WAV file to upload")
    load.add_argument("--requests", type=int, required=True, help="requests in the batch")
    load.add_argument("--gateway-pid", type=int, required=True, help="gateway PID whose process tree CPU time is read")

    tracing = modes.add_parser("tracemalloc", help="time transcriptions with tracemalloc off and on")
    tracing.add_argument("--models-dir", type=Path, required=True, help="prepared models folder")
    tracing.add_argument("--model", required=True, help="model name under --models-dir")
    tracing.add_argument("--audio", type=Path, required=True, help="WAV file to transcribe")
    tracing.add_argument("--rounds", type=int, required=True, help="rounds, each running every setting once")
    tracing.add_argument("--transcriptions", type=int, required=True, help="transcriptions per setting and round")
    tracing.add_argument("--frames", type=int, nargs="+", required=True, help="tracemalloc frame counts to compare with tracing off")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.mode == "load":
            result: LoadResult | TracemallocResult = send_batch(args.url, args.audio, args.requests, args.gateway_pid)
        else:
            result = measure_tracemalloc(args.models_dir, args.model, args.audio, args.rounds, args.transcriptions, args.frames)
    except (WorkerError, httpx.HTTPError, OSError) as exc:
        print(f"overhead_worker {args.mode}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
