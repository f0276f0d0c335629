"""A stand-in for ``python -m gateway``: the same command line and HTTP contract, without torch.

The runner's tests use it where they need a gateway that fails in a chosen
way, or a fast one. "Model instances" are anonymous memory maps of
``FAKE_INSTANCE_BYTES`` whose pages are written, so they count in RSS and
unmapping them returns the memory at once.

Environment variables:

- ``FAKE_GATEWAY_MODE``: a comma list of failure modes. ``exit`` exits 3 at
  start-up, ``never-ready`` keeps ``/readyz`` at 503, ``ignore-sigterm``
  leaves only SIGKILL to stop it, and ``with-child`` also starts a sleeping
  child process. Empty or unset means a well-behaved gateway.
- ``FAKE_GATEWAY_PIDFILE``: file to which it appends its PID and its child's.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import subprocess
import sys
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAKE_INSTANCE_BYTES = 8 * 1024 * 1024
PAGE_BYTES = mmap.PAGESIZE
PRESETS = {"tiny": "paraformer-tiny", "50mb": "paraformer-50mb", "200mb": "paraformer-200mb"}


def prepare(args: argparse.Namespace) -> int:
    models_dir = Path(args.models_dir or os.environ.get("GATEWAY_MODELS_DIR", "fake-models")).resolve()
    base = PRESETS[args.size[0]]
    models = {}
    for name in [base] + [f"{base}-copy{number}" for number in range(1, args.copies + 1)]:
        folder = models_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.bin").write_bytes(name.encode())
        # The real gateway's marker, from which a runner driving a running gateway reads the instance size.
        (folder / "preset.json").write_text(json.dumps({"name": name, "instance_bytes": FAKE_INSTANCE_BYTES}))
        models[name] = {"path": str(folder), "instance_bytes": FAKE_INSTANCE_BYTES}
    print("Notice: a library printed this line to stdout before the JSON.")
    print(json.dumps({"models_dir": str(models_dir), "models": models}, indent=2))
    return 0


class ModelCache:
    """Fixed: LRU keyed by model name with a bound. Leaky: keyed by model and options, never evicts."""

    def __init__(self, bound: int, leaky: bool) -> None:
        self.bound = bound
        self.leaky = leaky
        self.entries: OrderedDict[str, mmap.mmap] = OrderedDict()
        self.lock = threading.Lock()

    def use(self, model: str, options: dict) -> None:
        key = json.dumps([model, options], sort_keys=True) if self.leaky else model
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return
            instance = mmap.mmap(-1, FAKE_INSTANCE_BYTES)
            for offset in range(0, FAKE_INSTANCE_BYTES, PAGE_BYTES):
                instance[offset] = 1
            self.entries[key] = instance
            while not self.leaky and len(self.entries) > self.bound:
                _, evicted = self.entries.popitem(last=False)
                evicted.close()


def serve(args: argparse.Namespace) -> int:
    mode = set(os.environ.get("FAKE_GATEWAY_MODE", "").split(","))
    record_pid(os.getpid())
    if "exit" in mode:
        print("fake gateway: error: exiting at start-up as FAKE_GATEWAY_MODE=exit asks", file=sys.stderr)
        return 3
    if "ignore-sigterm" in mode:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "with-child" in mode:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        record_pid(child.pid)

    models_dir = Path(args.models_dir)
    available = sorted(path.name for path in models_dir.iterdir() if path.is_dir())
    leaks = [] if args.leaks == "none" else ["model-cache", "worker-futures", "session-buffers"]
    cache = ModelCache(args.cache_max_models, leaky="model-cache" in leaks)
    cache.use(args.model, {})
    ready = "never-ready" not in mode

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *values: object) -> None:
            print(f"fake gateway: {self.command} {self.path} {format % values}", file=sys.stderr, flush=True)

        def send_json(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/readyz":
                self.send_json(200 if ready else 503, {"ready": ready})
            elif self.path == "/v1/debug/memory" and args.debug_endpoints:
                # The shape of the real gateway's report; the cache's dict stands for the leaking container.
                self.send_json(200, {
                    "schema_version": 1,
                    "census": {"models_cached": len(cache.entries), "retained_futures": 0},
                    "live_objects": {"LoadedModel": len(cache.entries)},
                    "retention_paths": [
                        {"root": "fake_gateway.ModelCache.entries", "holds": {"LoadedModel": len(cache.entries)}, "bytes": 0},
                    ],
                    "tracemalloc": {"tracing": False},
                })
            elif self.path == "/v1/status":
                self.send_json(200, {
                    "schema_version": 1, "status": "OK", "version": "fake", "pid": os.getpid(),
                    "leaks": leaks, "models_cached": len(cache.entries), "models_cache_limit": args.cache_max_models,
                    "models_available": available, "retained_futures": 0, "workers_active": 0, "queue_depth": 0,
                    "sessions_open": 0, "sessions_buffered_bytes": 0, "rss_bytes": own_rss_bytes(),
                    "cached_identities": [key for key in cache.entries if key in available] or [args.model],
                })
            else:
                self.send_json(404, {"error": {"code": "not_found", "message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            model = body.get("model") or args.model
            if model not in available:
                self.send_json(404, {"error": {"code": "unknown_model", "message": f"model {model} not found"}})
                return
            cache.use(model, {"hotwords": body.get("hotwords"), "language": body.get("language")})
            self.send_json(200, {"request_id": "fake", "text": "", "segments": [], "model": {"name": model}})

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    if "ignore-sigterm" not in mode:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"fake gateway: serving on {args.host}:{args.port}, leaks {args.leaks}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def own_rss_bytes() -> int:
    """Return this process's resident set size, as the real gateway reports its own in /v1/status."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def record_pid(pid: int) -> None:
    path = os.environ.get("FAKE_GATEWAY_PIDFILE")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"{pid}\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fake-gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models")
    models.add_argument("models_command", choices=["prepare"])
    models.add_argument("--size", action="append", required=True)
    models.add_argument("--copies", type=int, default=0)
    models.add_argument("--models-dir")
    models.add_argument("--json", action="store_true")
    serve_parser = commands.add_parser("serve")
    for flag in ("--host", "--port", "--model", "--models-dir", "--media-root", "--leaks", "--log-level"):
        serve_parser.add_argument(flag)
    serve_parser.add_argument("--cache-max-models", type=int, default=3)
    serve_parser.add_argument("--debug-endpoints", action="store_true")
    args = parser.parse_args(argv)
    args.port = int(args.port) if getattr(args, "port", None) else None
    return prepare(args) if args.command == "models" else serve(args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
