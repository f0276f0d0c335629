"""The benchmark context (models, audio, rounds, a work folder) and the servers that sections start and stop."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import psutil

from soak.errors import SoakError
from soak.processes import ManagedProcess, free_port

logger = logging.getLogger(__name__)

ServerKind = Literal["gateway", "funasr-server"]

READY_TIMEOUT_S = 180.0
READY_POLL_S = 0.25
STOP_TIMEOUT_S = 20.0
# funasr-server serves the folder given with --model-path under this request model name.
FUNASR_SERVER_MODEL = "custom"
# The reason GET /readyz gives while the gateway loads its default model.
GATEWAY_LOADING_REASON = "loading the default model"


class BenchError(SoakError):
    """A benchmark could not be carried out: a server did not start, a request failed, a tool is missing."""


@dataclass(frozen=True)
class BenchContext:
    """Inputs shared by the sections. ``rounds`` is the number of alternating rounds per figure."""

    models_dir: Path
    model: str
    audio_path: Path
    media_dir: Path
    work_dir: Path
    rounds: int = 5
    python: str = sys.executable
    gateway_command: tuple[str, ...] = (sys.executable, "-m", "gateway")
    funasr_server_command: tuple[str, ...] = (sys.executable, "-m", "funasr.bin.server")
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.models_dir / self.model

    def model_copies(self) -> list[str]:
        """Return the model and its prepared copies (``<model>-copyN``), the identities the memory profile cycles."""
        names = [self.model]
        names += sorted(path.name for path in self.models_dir.glob(f"{self.model}-copy*") if (path / "model.pt").is_file())
        return names

    def log_path(self, name: str) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir / f"{name}.log"


class BenchServer:
    """A gateway or funasr-server process on a free loopback port, in its own process group."""

    def __init__(self, kind: ServerKind, name: str, command: list[str], port: int, log_path: Path, env: dict[str, str], cwd: Path):
        self.kind = kind
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = "/readyz" if kind == "gateway" else "/health"
        self.status_path = "/v1/status" if kind == "gateway" else "/health"
        self.process = ManagedProcess(name, command, log_path, env=env, cwd=cwd)

    @property
    def pid(self) -> int:
        if self.process.pid is None:
            raise BenchError(f"{self.name} has not been started")
        return self.process.pid

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> float:
        """Start the process and wait for readiness; return the seconds it took."""
        started = time.monotonic()
        try:
            self.process.start()
        except OSError as exc:
            raise BenchError(f"could not start {self.name} ({' '.join(self.process.command)}): {exc}") from None

        deadline = started + ready_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchError(
                        f"{self.name} exited with status {self.process.poll()} before it was ready; "
                        f"last lines of {self.process.log_path}:\n{self.process.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    response = client.get(self.url + self.ready_path)
                    if response.status_code == 200:
                        return time.monotonic() - started
                    reason = response.json().get("reason", "") if self.kind == "gateway" else ""
                    # A gateway whose default model failed stays up but never gets ready.
                    if reason and reason != GATEWAY_LOADING_REASON:
                        raise BenchError(
                            f"{self.name} will not get ready: {reason}; last lines of {self.process.log_path}:\n"
                            f"{self.process.log_tail()}"
                        )
                time.sleep(READY_POLL_S)
        raise BenchError(
            f"{self.name} was not ready within {ready_timeout_s:.0f} s; last lines of {self.process.log_path}:\n"
            f"{self.process.log_tail()}"
        )

    def rss_bytes(self) -> int:
        """Return the resident memory of the server's process tree."""
        try:
            root = psutil.Process(self.pid)
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            raise BenchError(f"{self.name} (PID {self.pid}) is gone; last lines of its log:\n{self.process.log_tail()}") from None
        total = 0
        for member in members:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += member.memory_info().rss
        return total

    def stop(self) -> None:
        self.process.stop(timeout_s=STOP_TIMEOUT_S)


def gateway_server(context: BenchContext, name: str, *, leaks: str = "none", workers: int = 2, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> BenchServer:
    """Build (not start) a gateway on a free port serving ``context.model`` from the prepared models."""
    port = free_port()
    command = [
        *context.gateway_command, "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--models-dir", str(context.models_dir), "--media-root", str(context.media_dir),
        "--model", context.model, "--workers", str(workers), "--leaks", leaks,
        "--log-level", "warning",
        *extra_args,
    ]
    return BenchServer("gateway", name, command, port, context.log_path(name), {**os.environ, **context.extra_env, **(env or {})}, context.work_dir)


def funasr_server(context: BenchContext, name: str = "funasr-server", *, env: dict[str, str] | None = None) -> BenchServer:
    """Build (not start) FunASR's own ``funasr-server`` on a free port, serving the same model folder.

    With ``--model-path`` it serves the folder as the model ``custom`` through
    ``AutoModel.generate()``, without VAD or punctuation. It runs in the
    bench's work folder, so it writes nothing into the checkout.
    """
    port = free_port()
    command = [
        *context.funasr_server_command,
        "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--model-path", str(context.model_path),
    ]
    return BenchServer("funasr-server", name, command, port, context.log_path(name), {**os.environ, **context.extra_env, **(env or {})}, context.work_dir)


@contextlib.contextmanager
def running(server: BenchServer) -> Iterator[BenchServer]:
    """Start ``server``, yield it, and stop it on the way out, also on failure."""
    try:
        seconds = server.start()
        logger.info("%s ready in %.1f s (PID %d, %s).", server.name, seconds, server.pid, server.url)
        yield server
    finally:
        server.stop()
