"""A real gateway process for tests: free loopback port, readiness wait, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GatewayServer:
    def __init__(self, models_dir: Path, media_root: Path, log_path: Path, extra_args: list[str], env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.command = [
            sys.executable, "-m", "gateway", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--models-dir", str(models_dir), "--media-root", str(media_root),
            "--model", "paraformer-tiny", "--workers", "2",
            *extra_args,
        ]
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway not ready within {timeout_s} s:\n{self.log_tail()}")

    def status(self, timeout_s: float = 5.0) -> dict:
        response = httpx.get(self.url + "/v1/status", timeout=timeout_s)
        assert response.status_code == 200, response.text
        return response.json()

    def transcribe(self, timeout_s: float = 120.0, **body) -> httpx.Response:
        return httpx.post(self.url + "/v1/responses", json=body, timeout=timeout_s)

    def stop(self) -> int | None:
        """Stop with SIGTERM, then SIGKILL the process group after a bounded wait."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
        return self.process.returncode
