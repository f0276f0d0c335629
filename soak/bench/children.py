"""Child processes of the benchmarks: one-shot children that print a JSON line, and long-lived JSON-line children."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from soak.bench.context import BenchContext, BenchError
from soak.bench.figures import Figure, Section

logger = logging.getLogger(__name__)

CHILD_STDERR_TAIL_CHARS = 2000


def run_section(context: BenchContext, key: str, title: str, measure: Callable[[BenchContext, Section], None]) -> Section:
    """Run one section's measurement into a new Section, recording a BenchError as the section's error."""
    section = Section(key=key, title=title, method="")
    started = time.monotonic()
    logger.info("Measuring %s (%d rounds).", key, context.rounds)
    try:
        measure(context, section)
    except BenchError as exc:
        section.error = str(exc)
        logger.error("Section %s failed: %s", key, exc)
    section.duration_s = time.monotonic() - started
    logger.info("Section %s done in %.1f s.", key, section.duration_s)
    return section


def child_env(context: BenchContext) -> dict[str, str]:
    return {**os.environ, **context.extra_env}


def run_child(context: BenchContext, description: str, command: list[str], timeout_s: float) -> dict[str, Any]:
    """Run a worker child and return the JSON object on the last line of its stdout; raise BenchError on failure.

    On timeout ``subprocess.run`` kills the child by its PID and waits for it.
    """
    command_line = " ".join(command)
    context.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                                   env=child_env(context), cwd=context.work_dir, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{description} timed out after {timeout_s:.0f} s and was killed ({command_line}); "
                         f"last lines of its stderr:\n{tail(exc.stderr)}") from None
    except OSError as exc:
        raise BenchError(f"could not start {description} ({command_line}): {exc}") from None

    if completed.returncode != 0:
        raise BenchError(f"{description} exited with status {completed.returncode} ({command_line}); "
                         f"last lines of its stderr:\n{tail(completed.stderr)}")
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise BenchError(f"{description} exited with status 0 but printed no JSON line ({command_line}); "
                         f"its stdout ended with:\n{tail(completed.stdout)}") from None


def tail(text: str | bytes | None, chars: int = CHILD_STDERR_TAIL_CHARS) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text[-chars:]


def ratio_words(figure: Figure, lower: str, higher: str) -> str:
    """Describe a figure's ratio to its reference: the median, the spread over rounds, and whether 1.0 is inside it.

    The reference's own range over the rounds follows, because on a shared
    machine it shows how much of a ratio the load of the moment can explain.
    """
    low, high = figure.ratio_spread
    text = f"{figure.ratio_median:.3f}x (rounds {low:.3f} to {high:.3f})"
    if not math.isfinite(low):
        return text
    if low <= 1.0 <= high:
        text = f"{text}, within the round-to-round noise"
    else:
        text = f"{text}, {higher if low > 1.0 else lower} in every round"
    reference = [value for value in figure.reference_values if math.isfinite(value)]
    return f"{text}, while the reference ({figure.reference_label}) ranged from {min(reference):.3g} to {max(reference):.3g} {figure.unit}"


class JsonLineChild:
    """A long-lived child that takes one JSON request per stdin line and writes JSON lines to stdout.

    Replies are read with ``select`` from a byte buffer, so a silent child
    times out and several lines arriving at once are all kept. The child
    runs in its own session; closing its stdin asks it to exit.
    """

    def __init__(self, name: str, command: list[str], log_path: Path, *, env: dict[str, str], cwd: Path):
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            try:
                self.process = subprocess.Popen(
                    self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                    env=self.env, cwd=self.cwd, start_new_session=True,
                )
            except OSError as error:
                raise BenchError(f"failed to start {self.name} ({' '.join(self.command)}): {error}") from None
        logger.info("Started %s, PID %d.", self.name, self.process.pid)

    def send(self, request: dict[str, Any]) -> None:
        """Write one request line; raise BenchError when the child is gone."""
        if self.process is None or self.process.stdin is None:
            raise BenchError(f"{self.name} has not been started")
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError as error:
            raise BenchError(
                f"{self.name} (PID {self.process.pid}) is gone ({error}; exit status {self.process.poll()}); "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            ) from None

    def read(self, timeout_s: float, description: str) -> dict[str, Any]:
        """Return the next JSON line; raise BenchError when the child exits or stays silent for ``timeout_s``."""
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        descriptor = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise BenchError(f"{description} timed out after {timeout_s:.0f} s; last lines of {self.log_path}:\n{self.log_tail()}")
            ready, _, _ = select.select([descriptor], [], [], min(remaining_s, 0.5))
            if not ready:
                continue
            chunk = os.read(descriptor, 65536)
            if not chunk:
                raise BenchError(
                    f"{self.name} exited with status {self.process.wait()} during {description}; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return dict(json.loads(line))

    def stop(self, timeout_s: float) -> None:
        """Close the child's stdin so that it exits; kill it by PID if it has not exited within ``timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s (PID %d) did not exit on end of input; sending SIGKILL.", self.name, self.process.pid)
            self.process.kill()
            self.process.wait()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-CHILD_STDERR_TAIL_CHARS:]
        except OSError:
            return ""
