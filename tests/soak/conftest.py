"""Fixtures of the soak harness's tests: a stand-in gateway on a free loopback port, and Locust processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from soak.processes import free_port

HERE = Path(__file__).parent
FAKE_GATEWAY = HERE / "fake_gateway.py"
REPO = HERE.parent.parent
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


@dataclass
class RunningGateway:
    url: str
    pid: int
    models_dir: Path


def stop_group(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop a process started in its own session, with everything it started; SIGKILL after the timeout."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout_s)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def fake_gateway(tmp_path) -> Iterator[RunningGateway]:
    """Start the stand-in gateway (fixed, cache bound 3, four model copies) and stop it after the test."""
    models_dir = tmp_path / "fake-models"
    subprocess.run(
        [sys.executable, str(FAKE_GATEWAY), "models", "prepare", "--size", "50mb", "--copies", "4", "--models-dir", str(models_dir)],
        check=True, capture_output=True, timeout=30,
    )
    port = free_port()
    log = (tmp_path / "fake-gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(FAKE_GATEWAY), "serve", "--host", "127.0.0.1", "--port", str(port), "--model", "paraformer-50mb",
         "--models-dir", str(models_dir), "--media-root", str(tmp_path), "--leaks", "none", "--log-level", "info"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.poll() is None, f"the fake gateway exited with {process.returncode}"
            try:
                if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the fake gateway was not ready within {READY_TIMEOUT_S} s"
            time.sleep(0.1)
        yield RunningGateway(url=url, pid=process.pid, models_dir=models_dir)
    finally:
        stop_group(process)
        log.close()


def locust_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """Return an environment for a Locust process running a profile: the repository on PYTHONPATH, the logs in tmp_path."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOAK_REQUESTS_LOG": str(tmp_path / "requests.jsonl"),
        "SOAK_EVENTS_LOG": str(tmp_path / "events.jsonl"),
        "SOAK_LOCUST_USAGE_LOG": str(tmp_path / "usage.jsonl"),
        **settings,
    }
