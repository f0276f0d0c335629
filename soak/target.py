"""The gateway a run drives: one the runner starts and stops, or one it finds running (``--target``).

Both kinds wait for ``GET /readyz`` and read ``GET /v1/status`` once at
readiness. Only a started gateway is stopped at the end; a target keeps
running, and the runner never signals a process it did not start.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from soak.errors import SoakError
from soak.processes import ManagedProcess

logger = logging.getLogger(__name__)

READY_POLL_S = 0.25
HTTP_TIMEOUT_S = 2.0


class TargetError(SoakError):
    """The gateway could not be started, never got ready, or did not respond as a gateway."""


class StartedGateway:
    """A gateway process that the runner starts in its own process group and stops at the end."""

    def __init__(self, url: str, command: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> None:
        self.url = url
        self.command = command
        self.process = ManagedProcess("gateway", command, log_path, env=env, cwd=cwd)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def start(self) -> None:
        try:
            self.process.start()
        except OSError as exc:
            raise TargetError(f"could not start the gateway ({' '.join(self.command)}): {exc}") from None

    def exit_status(self) -> int | None:
        return self.process.poll()

    def describe_exit(self, exit_status: int) -> str:
        return (
            f"the gateway exited with status {exit_status} before it was ready; "
            f"last lines of {self.process.log_path}:\n{self.process.log_tail()}"
        )

    def not_ready_hint(self) -> str:
        return f"raise --ready-timeout-s if it loads slowly; last lines of {self.process.log_path}:\n{self.process.log_tail()}"

    def manifest(self) -> dict[str, Any]:
        return {"url": self.url, "pid": self.pid, "command": self.command, "started_by_runner": True, "rss_source": "process tree"}

    def stop(self, timeout_s: float) -> dict[str, Any]:
        exited_before_stop = self.process.poll() is not None
        outcome = self.process.stop(timeout_s=timeout_s)
        return {
            "exit_code": self.process.process.returncode if self.process.process else None,
            "stopped_by": outcome,
            "exited_before_stop": exited_before_stop,
        }


class ExternalGateway:
    """A running gateway that the runner drives and samples but neither started nor stops.

    With a PID (on this host), the sampler reads its process tree; without
    one, RSS comes from the gateway's own ``rss_bytes`` status figure.
    """

    def __init__(self, url: str, pid: int | None) -> None:
        self.url = url.rstrip("/")
        self.pid = pid

    def start(self) -> None:
        if self.pid is None:
            return
        if not psutil.pid_exists(self.pid):
            raise TargetError(f"--pid {self.pid}: no such process on this host; pass the PID of the gateway at {self.url}")

    def exit_status(self) -> int | None:
        return None

    def describe_exit(self, exit_status: int) -> str:
        return f"the gateway at {self.url} stopped answering"

    def not_ready_hint(self) -> str:
        return f"check that a gateway listens at {self.url} and has loaded its default model"

    def manifest(self) -> dict[str, Any]:
        command = None
        if self.pid is not None:
            with contextlib.suppress(psutil.Error):
                command = psutil.Process(self.pid).cmdline()
        return {
            "url": self.url,
            "pid": self.pid,
            "command": command,
            "started_by_runner": False,
            "rss_source": "process tree" if self.pid is not None else "status",
        }

    def stop(self, timeout_s: float) -> dict[str, Any]:
        return {"exit_code": None, "stopped_by": "not stopped (the runner did not start it)", "exited_before_stop": False}


Gateway = StartedGateway | ExternalGateway


def wait_until_ready(gateway: Gateway, timeout_s: float) -> float:
    """Poll ``GET /readyz`` until it returns 200; return the wall time of readiness."""
    logger.info("Waiting up to %.0f s for %s/readyz.", timeout_s, gateway.url)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=gateway.url, timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
        while time.monotonic() < deadline:
            exit_status = gateway.exit_status()
            if exit_status is not None:
                raise TargetError(gateway.describe_exit(exit_status))
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 200:
                    return time.time()
            time.sleep(READY_POLL_S)
    raise TargetError(f"the gateway at {gateway.url} was not ready within {timeout_s:.0f} s; {gateway.not_ready_hint()}")


def read_status(url: str) -> dict[str, Any]:
    """Return the gateway's ``GET /v1/status`` body."""
    try:
        response = httpx.get(f"{url}/v1/status", timeout=HTTP_TIMEOUT_S, trust_env=False)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise TargetError(f"GET {url}/v1/status failed after readiness: {exc}") from None
