"""Child processes and sections for the overhead benchmarks: run a child, read its JSON line, record failures."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from collections.abc import Callable
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
