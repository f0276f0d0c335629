"""Child processes that the runner starts and must stop, each in its own process group.

Each child starts in a new session, so Ctrl+C in the terminal reaches only
the runner, and the runner can stop the child together with everything the
child started by signalling the group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

logger = logging.getLogger(__name__)

GROUP_EXIT_POLL_S = 0.1
LOG_TAIL_CHARS = 4000

StopOutcome = Literal["not started", "exited", "SIGTERM", "SIGKILL"]


class ManagedProcess:
    """A child process in its own process group, with stdout and stderr going to a log file."""

    def __init__(self, name: str, command: list[str], log_path: Path, *, env: dict[str, str], cwd: Path | None = None):
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.stop_outcome: StopOutcome = "not started"
        self._log: BinaryIO | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError:
            self._log.close()
            self._log = None
            raise
        logger.info("Started %s, PID %d: %s", self.name, self.process.pid, " ".join(self.command))

    def poll(self) -> int | None:
        return self.process.poll() if self.process else None

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the process to exit; return its status, or ``None`` on timeout."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float) -> StopOutcome:
        """Stop the process group: SIGTERM, wait up to ``timeout_s``, then SIGKILL.

        Safe to call more than once. Group members that outlive the leader get
        SIGKILL too, so nothing the child started is left behind.
        """
        if self.process is None:
            return self.stop_outcome
        if self.stop_outcome in ("exited", "SIGTERM", "SIGKILL") and self._group_is_gone():
            return self.stop_outcome

        group = self.process.pid
        if self.process.poll() is not None:
            self.stop_outcome = "exited"
        else:
            logger.info("Stopping %s (PID %d) with SIGTERM; SIGKILL after %.0f s.", self.name, group, timeout_s)
            self._signal_group(signal.SIGTERM)
            if self.wait(timeout_s) is None:
                logger.warning("%s (PID %d) did not exit %.0f s after SIGTERM; sending SIGKILL.", self.name, group, timeout_s)
                self._signal_group(signal.SIGKILL)
                self.process.wait()
                self.stop_outcome = "SIGKILL"
            else:
                self.stop_outcome = "SIGTERM"

        self._kill_group_leftovers(timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        logger.info("%s stopped (%s, exit status %s).", self.name, self.stop_outcome, self.process.returncode)
        return self.stop_outcome

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - chars))
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _signal_group(self, signal_number: signal.Signals) -> None:
        try:
            os.killpg(self.process.pid, signal_number)
        except ProcessLookupError:
            pass

    def _group_is_gone(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _kill_group_leftovers(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._group_is_gone() and time.monotonic() < deadline:
            time.sleep(GROUP_EXIT_POLL_S)
        if not self._group_is_gone():
            logger.warning("Processes of %s's group %d outlived it; sending SIGKILL.", self.name, self.process.pid)
            self._signal_group(signal.SIGKILL)


@contextlib.contextmanager
def stop_signals_raise_keyboard_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while a run is going, so both take the same cleanup path."""
    if not is_main_thread():
        yield
        return

    def raise_interrupt(signal_number: int, frame: object) -> None:
        logger.warning("Received %s; stopping the run.", signal.Signals(signal_number).name)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ignore_stop_signals() -> Iterator[None]:
    """Log and ignore SIGINT and SIGTERM while the cleanup runs, so a second Ctrl+C cannot leave orphans.

    The cleanup is bounded in time (each stop has a timeout), so ignoring the
    signals delays the exit by at most those timeouts.
    """
    if not is_main_thread():
        yield
        return

    def note_signal(signal_number: int, frame: object) -> None:
        logger.warning("Received %s while stopping; the cleanup finishes first.", signal.Signals(signal_number).name)

    previous = {number: signal.signal(number, note_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
