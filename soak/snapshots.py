"""tracemalloc snapshots of the gateway, fetched over its debug endpoint into the run folder.

When a run traces Python allocations, a thread fetches
``GET /v1/debug/tracemalloc/snapshot`` (the bytes of ``Snapshot.dump``) every
``interval_s`` and once more at shutdown, and writes each to
``snapshots/NNNN-<trigger>.tracemalloc``: the zero-padded sequence number
makes the names sort by time. A failed fetch is logged and recorded, and the
run goes on, because a snapshot of a large heap can take seconds and a
blocked gateway may not respond at all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

SNAPSHOT_PATH = "/v1/debug/tracemalloc/snapshot"
START_PATH = "/v1/debug/tracemalloc/start"
# Taking and pickling a snapshot of a few hundred MB of traced heap took several seconds on a 2-core machine.
FETCH_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = FETCH_TIMEOUT_S + 10.0


class SnapshotCollector:
    """Fetches tracemalloc snapshots at an interval, in a thread, and a final one on ``stop``."""

    def __init__(self, url: str, directory: Path, interval_s: float, *, fetch_timeout_s: float = FETCH_TIMEOUT_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"snapshot interval must be greater than 0 s, got {interval_s}")
        self.url = url.rstrip("/")
        self.directory = directory
        self.interval_s = interval_s
        self.fetch_timeout_s = fetch_timeout_s
        self.snapshots: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._sequence = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the snapshot collector was already started")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="soak-snapshots", daemon=True)
        self._thread.start()
        logger.info("Fetching a tracemalloc snapshot every %.0f s into %s.", self.interval_s, self.directory)

    def stop(self) -> None:
        """Stop the interval fetches and take the final snapshot; safe to call twice."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        self._stop.set()
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            logger.warning("The snapshot thread was still fetching %.0f s after the stop request; leaving it.", STOP_TIMEOUT_S)
        self.fetch("final")
        logger.info("Fetched %d tracemalloc snapshots (%d failed).", len(self.snapshots), len(self.errors))

    def fetch(self, trigger: str) -> Path | None:
        """Fetch one snapshot and write it; return its path, or ``None`` when the fetch failed."""
        with self._lock:
            self._sequence += 1
            name = f"{self._sequence:04d}-{trigger}.tracemalloc"
        started = time.monotonic()
        try:
            response = httpx.get(f"{self.url}{SNAPSHOT_PATH}", timeout=self.fetch_timeout_s, trust_env=False)
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            return self._failed(name, f"GET {SNAPSHOT_PATH} returned HTTP {exc.response.status_code}: {exc.response.text[:300]}")
        except httpx.HTTPError as exc:
            return self._failed(name, f"GET {SNAPSHOT_PATH} failed: {type(exc).__name__}: {exc}")

        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / name
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_bytes(response.content)
        os.replace(temporary, target)
        with self._lock:
            self.snapshots.append(
                {
                    "file": name,
                    "time_s": round(time.time(), 3),
                    "size_bytes": len(response.content),
                    "fetch_s": round(time.monotonic() - started, 3),
                }
            )
        return target

    def manifest(self) -> dict[str, Any]:
        return {"interval_s": self.interval_s, "snapshots": list(self.snapshots), "errors": list(self.errors)}

    def _failed(self, name: str, error: str) -> None:
        logger.warning("Snapshot %s not taken: %s", name, error)
        with self._lock:
            self.errors.append(f"{name}: {error}")
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.fetch("interval")


def start_tracing(url: str, frames: int) -> dict[str, Any]:
    """Ask a running gateway to start tracing with ``frames`` frames (``POST /v1/debug/tracemalloc/start``)."""
    response = httpx.post(f"{url.rstrip('/')}{START_PATH}", params={"frames": frames}, timeout=30.0, trust_env=False)
    response.raise_for_status()
    return response.json()
