"""Test-only failpoints: hold inference until a test releases it, or make it raise.

Off unless the gateway process starts with ``GATEWAY_FAILPOINTS_DIR`` set to a
folder; no request can turn them on, because only files in that folder do.
While the file ``hold`` exists there, each inference task writes
``entered-<n>`` and waits until ``hold`` is removed (at most ``MAX_HOLD_S``).
The file ``hang`` hangs one task only: the first task that finds it renames
it to ``hung-<n>`` and waits until that file is removed (at most
``MAX_HOLD_S``), while later tasks run normally; this stands in for
inference that hangs past the task timeout. While the file ``raise`` exists,
each inference task raises ``FailpointError`` before it decodes anything. Tests use the files as events to order their
steps without sleeps.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_VAR = "GATEWAY_FAILPOINTS_DIR"
MAX_HOLD_S = 120.0
POLL_S = 0.01

_counter = itertools.count(1)


def folder() -> Path | None:
    value = os.environ.get(ENV_VAR)
    return Path(value) if value else None


def hold_inference() -> None:
    """Block the calling worker while the ``hold`` file exists."""
    base = folder()
    if base is None or not (base / "hold").exists():
        return
    marker = base / f"entered-{next(_counter)}"
    marker.touch()
    logger.warning("Failpoint: holding inference task (%s)", marker.name)
    deadline = time.monotonic() + MAX_HOLD_S
    while (base / "hold").exists() and time.monotonic() < deadline:
        time.sleep(POLL_S)


def hang_one_task() -> None:
    """Block the calling worker if it is the first to claim the ``hang`` file."""
    base = folder()
    if base is None:
        return
    claimed = base / f"hung-{next(_counter)}"
    try:
        # rename() is atomic: of several tasks that see the file, exactly one claims it.
        (base / "hang").rename(claimed)
    except FileNotFoundError:
        return
    logger.warning("Failpoint: hanging one inference task (%s)", claimed.name)
    deadline = time.monotonic() + MAX_HOLD_S
    while claimed.exists() and time.monotonic() < deadline:
        time.sleep(POLL_S)


class FailpointError(RuntimeError):
    """The error the ``raise`` failpoint injects into an inference task."""


def raise_in_inference() -> None:
    """Raise FailpointError while the ``raise`` file exists."""
    base = folder()
    if base is None or not (base / "raise").exists():
        return
    logger.warning("Failpoint: raising in an inference task")
    raise FailpointError("failpoint 'raise': injected inference error")
