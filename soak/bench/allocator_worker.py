"""The allocator benchmark's fork server: children that read RSS around model eviction, or across audio of distinct lengths.

Run as ``python -m soak.bench.allocator_worker --models-dir DIR --audio FILE``
under the environment of one configuration (allocator variables,
``LD_PRELOAD``, oneDNN's cache capacity). The server imports torch and
FunASR once, because importing FunASR costs several seconds of CPU, and
writes ``{"ready": true, "pid": N}`` on its stdout. It then reads one JSON
request per line on stdin and runs each in a fresh child process forked
from it::

    {"measurement": "eviction", "models": ["paraformer-50mb", ...], "threads": 2}
    {"measurement": "onednn", "model": "paraformer-50mb", "lengths_s": [12.25, 1.5, ...]}

It writes ``{"child_pid": N}`` when the child starts, then
``{"child_pid": N, "exit_status": 0, "result": {...}}`` when it ends. A
child reads its resident memory from ``/proc/self/status``: VmRSS and its
anonymous (RssAnon) and file-backed (RssFile) parts.

The environment is in place before torch is imported, and the server
loads no model and creates no oneDNN primitive, so every child starts from
the same heap with the configuration's settings. Both measurements load
through ``gateway.asr`` with one torch thread, as the gateway does.
Everything Python code prints goes to stderr. A child sends C-level stdout
(oneDNN's verbose lines, when ``ONEDNN_VERBOSE`` is set) to a temporary file
and counts the primitive-creation lines in it.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import threading
import traceback
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np

TORCH_THREADS = 1
# jemalloc's MALLCTL_ARENAS_ALL: "arena.4096.purge" purges every arena.
JEMALLOC_ALL_ARENAS = 4096


def memory() -> dict[str, int]:
    """Return this process's resident memory: all of it, the anonymous part where malloc's memory lives, and the file-backed part."""
    fields = {"VmRSS:": "rss_bytes", "RssAnon:": "rss_anon_bytes", "RssFile:": "rss_file_bytes"}
    reading = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            parts = line.split()
            if parts and parts[0] in fields:
                reading[fields[parts[0]]] = int(parts[1]) * 1024
    return reading


def read_speech(path: Path) -> np.ndarray:
    """Read ``path`` as mono float32 at 16 kHz, or exit with a message for any other format."""
    import soundfile

    from gateway import asr

    audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=False)
    if sample_rate != asr.SAMPLE_RATE or audio.ndim != 1:
        raise SystemExit(f"{path} must be mono {asr.SAMPLE_RATE} Hz audio, got {sample_rate} Hz and shape {audio.shape}")
    return audio


def measure_eviction(models_dir: Path, names: list[str], audio: np.ndarray, threads: int) -> dict[str, Any]:
    """Load and use every model from ``threads`` worker threads, evict them all, and read memory around each step."""
    from gateway import asr, native

    identities = [asr.resolve_identity(name, models_dir, "cpu") for name in names]
    before_load = memory()
    thread_names: set[str] = set()

    def load_and_transcribe(identity: asr.ModelIdentity) -> asr.LoadedModel:
        thread_names.add(threading.current_thread().name)
        model = asr.load_model(identity, TORCH_THREADS)
        model.transcribe(audio, asr.RequestOptions())
        return model

    # The pool stays up during the eviction, as the gateway's worker pool does, so the
    # threads' malloc arenas stay attached to live threads.
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference") as pool:
        models = list(pool.map(load_and_transcribe, identities))
        loaded = memory()

        pipelines = [weakref.ref(model.automodel) for model in models]
        del models
        gc.collect()
        pipelines_alive = sum(pipeline() is not None for pipeline in pipelines)
        evicted = memory()

        trim_released = native.malloc_trim()
        trimmed = memory()

        jemalloc = jemalloc_state()
        purged = None
        if jemalloc is not None:
            jemalloc["purge_status"] = jemalloc_purge()
            purged = memory()

    return {
        "models": names,
        "threads": sorted(thread_names),
        "memory": {"before_load": before_load, "loaded": loaded, "evicted": evicted, "trimmed": trimmed, "purged": purged},
        "malloc_trim_released": trim_released,
        "pipelines_alive_after_eviction": pipelines_alive,
        "jemalloc": jemalloc,
    }


def measure_onednn(models_dir: Path, name: str, audio: np.ndarray, lengths_s: list[float], verbose: IO[bytes]) -> dict[str, Any]:
    """Transcribe pieces of the given lengths with one model, reading memory after each piece and counting oneDNN primitive creations."""
    import torch

    from gateway import asr

    # Every piece is cut before the model loads, so no audio allocation falls between two RSS readings.
    pieces = [_tile(audio, round(length_s * asr.SAMPLE_RATE)) for length_s in lengths_s]
    model = asr.load_model(asr.resolve_identity(name, models_dir, "cpu"), TORCH_THREADS)
    after_load = memory()

    after_piece = []
    for piece in pieces:
        model.transcribe(piece, asr.RequestOptions())
        after_piece.append(memory())

    ctypes.CDLL(None).fflush(None)
    verbose.seek(0)
    creations = {"cache_miss": 0, "cache_hit": 0}
    for line in verbose:
        for outcome in creations:
            if b"create:" + outcome.encode() in line:
                creations[outcome] += 1
    version = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())

    return {
        "model": name,
        "lengths_s": lengths_s,
        "memory_after_load": after_load,
        "memory_after_piece": after_piece,
        "onednn_primitive_cache_misses": creations["cache_miss"],
        "onednn_primitive_cache_hits": creations["cache_hit"],
        "onednn_cache_capacity_env": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"),
        "onednn_version": version.group(1) if version else None,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def jemalloc_state() -> dict[str, Any] | None:
    """Return jemalloc's version and decay options when it is the process's malloc, else None."""
    mallctl = _mallctl()
    if mallctl is None:
        return None
    return {
        "version": _mallctl_read(mallctl, "version", ctypes.c_char_p),
        "dirty_decay_ms": _mallctl_read(mallctl, "opt.dirty_decay_ms", ctypes.c_ssize_t),
        "muzzy_decay_ms": _mallctl_read(mallctl, "opt.muzzy_decay_ms", ctypes.c_ssize_t),
        "background_thread": _mallctl_read(mallctl, "opt.background_thread", ctypes.c_bool),
    }


def jemalloc_purge() -> int:
    """Purge the unused dirty pages of every jemalloc arena and return mallctl's status (0 on success)."""
    mallctl = _mallctl()
    assert mallctl is not None
    return int(mallctl(f"arena.{JEMALLOC_ALL_ARENAS}.purge".encode(), None, None, None, 0))


def _mallctl() -> Any | None:
    # jemalloc loaded with LD_PRELOAD puts mallctl in the global symbol namespace. glibc has no mallctl.
    try:
        mallctl = ctypes.CDLL(None).mallctl
    except AttributeError:
        return None
    mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p, ctypes.c_size_t]
    mallctl.restype = ctypes.c_int
    return mallctl


def _mallctl_read(mallctl: Any, name: str, value_type: type) -> Any:
    value = value_type()
    size = ctypes.c_size_t(ctypes.sizeof(value))
    if mallctl(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0) != 0:
        return None
    return value.value.decode() if isinstance(value.value, bytes) else value.value


def _tile(audio: np.ndarray, samples: int) -> np.ndarray:
    return np.tile(audio, -(-samples // audio.size))[:samples].copy()


def run_request(request: dict[str, Any], models_dir: Path, audio: np.ndarray) -> dict[str, Any]:
    """Run one measurement in this forked process and return its result."""
    # C-level stdout of this child goes to its own file, where oneDNN's verbose lines are counted.
    verbose = tempfile.TemporaryFile()
    os.dup2(verbose.fileno(), 1)

    measurement = request.get("measurement")
    if measurement == "eviction":
        return measure_eviction(models_dir, list(request["models"]), audio, int(request.get("threads", 2)))
    if measurement == "onednn":
        return measure_onednn(models_dir, str(request["model"]), audio, [float(length) for length in request["lengths_s"]], verbose)
    raise ValueError(f"measurement must be 'eviction' or 'onednn', got {measurement!r}")


def fork_child(request: dict[str, Any], models_dir: Path, audio: np.ndarray, replies: IO[str]) -> None:
    """Run ``request`` in a forked child; write its PID, then its exit status and result, to ``replies``."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        status = 0
        try:
            payload = json.dumps(run_request(request, models_dir, audio)).encode()
            with os.fdopen(writer, "wb") as channel:
                channel.write(payload)
        except BaseException:  # the child reports every failure through its exit status and stderr
            traceback.print_exc()
            status = 1
        sys.stderr.flush()
        os._exit(status)

    os.close(writer)
    replies.write(json.dumps({"child_pid": pid}) + "\n")
    with os.fdopen(reader, "rb") as channel:
        payload = channel.read()
    _, wait_status = os.waitpid(pid, 0)
    exit_status = os.waitstatus_to_exitcode(wait_status)
    result = json.loads(payload) if exit_status == 0 and payload else None
    replies.write(json.dumps({"child_pid": pid, "exit_status": exit_status, "result": result}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True, help="folder of prepared models")
    parser.add_argument("--audio", type=Path, required=True, help="mono 16 kHz speech file that the measurements transcribe")
    args = parser.parse_args()

    # The original stdout carries the replies, and anything printed goes to stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import funasr  # noqa: F401  imported here, so no child pays for it and RSS baselines include it
    import torch  # noqa: F401

    from gateway import asr, native  # noqa: F401

    audio = read_speech(args.audio)
    replies.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")

    for line in sys.stdin:
        if line.strip():
            fork_child(json.loads(line), args.models_dir, audio, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
