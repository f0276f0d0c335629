"""The sampler: a thread that records a gateway's memory and resources from outside.

At every tick it reads the gateway's process tree with psutil (the root
process and all its descendants, never the sampler's own process) and the
gateway's ``GET /v1/status``. For a gateway on another host (no PID) it
reads the status alone and takes RSS from the gateway's own figure. A failed status read is recorded in the row and
sampling goes on, because a gateway whose event loop is blocked is exactly
what a leaky run can produce.

Besides the fixed interval the sampler can watch a file, normally the
profile's ``requests.jsonl``, and take an extra sample as soon as the file
grows. That puts a sample right after each completed request, which the
per-request RSS series needs. A 1 s tick alone would often land in the next
request's model load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import psutil

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
TRIGGER_POLL_S = 0.05
STATUS_TIMEOUT_S = 0.5
STOP_TIMEOUT_S = 10.0

Trigger = Literal["start", "interval", "request", "final"]


class SampleSource(Protocol):
    """Something that contributes fields to each sample."""

    def read(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class ProcessTreeSource:
    """psutil readings of one process and all its descendants, per process and summed.

    The ``psutil.Process`` objects are kept between reads, because
    ``cpu_percent`` measures the CPU time since the previous call on the same object.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._root = psutil.Process(pid)
        self._processes: dict[int, psutil.Process] = {pid: self._root}
        self._cpu_primed: set[psutil.Process] = set()

    def read(self) -> dict[str, Any]:
        try:
            children = self._root.children(recursive=True)
        except psutil.NoSuchProcess:
            return {"pid": self.pid, "processes": [], "process_error": f"process {self.pid} no longer exists"}

        current: dict[int, psutil.Process] = {self.pid: self._root}
        for child in children:
            # Keep the object from the previous read so its CPU counter continues.
            known = self._processes.get(child.pid)
            current[child.pid] = known if known is not None and known == child else child
        self._processes = current

        rows = []
        for process in current.values():
            row = read_process(process, cpu_primed=process in self._cpu_primed)
            if row is not None:
                rows.append(row)
        self._cpu_primed = set(current.values())
        if not any(row["pid"] == self.pid for row in rows):
            return {"pid": self.pid, "processes": rows, "process_error": f"process {self.pid} no longer exists"}

        return {"pid": self.pid, "processes": rows, **sum_process_rows(rows), "process_error": None}

    def close(self) -> None:
        self._processes.clear()
        self._cpu_primed.clear()


def read_process(process: psutil.Process, *, cpu_primed: bool) -> dict[str, Any] | None:
    """Read one process; ``None`` when it exited during the read.

    ``cpu_primed`` is true when ``cpu_percent`` was called on this object
    before. The first call has no previous reading and returns a meaningless 0.0.
    """
    try:
        with process.oneshot():
            row: dict[str, Any] = {
                "pid": process.pid,
                "name": process.name(),
                "rss_bytes": process.memory_info().rss,
                "threads": process.num_threads(),
                "fds": process.num_fds(),
                "cpu_times_s": round(sum(process.cpu_times()[:2]), 3),
            }
            cpu_percent = process.cpu_percent(interval=None)
            row["cpu_percent"] = cpu_percent if cpu_primed else None
        row["uss_bytes"] = read_uss(process)
        row["open_files"] = len(process.open_files())
        row["connections"] = len(process.net_connections(kind="inet"))
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied as exc:
        logger.debug("Access denied while reading process %d: %s", process.pid, exc)
        return None
    return row


def read_uss(process: psutil.Process) -> int | None:
    """Unique set size, or ``None`` where the platform or permissions do not allow it."""
    try:
        return process.memory_full_info().uss
    except (psutil.AccessDenied, AttributeError):
        return None


def sum_process_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-process figures; a sum is ``None`` when any process lacks the figure."""
    totals: dict[str, Any] = {}
    for key in ("rss_bytes", "uss_bytes", "threads", "fds", "open_files", "connections", "cpu_percent", "cpu_times_s"):
        values = [row.get(key) for row in rows]
        if any(value is None for value in values):
            totals[key] = None
        elif key in ("cpu_percent", "cpu_times_s"):
            totals[key] = round(sum(values), 3)
        else:
            totals[key] = sum(values)
    return totals


class StatusSource:
    """Reads ``GET /v1/status`` with a short timeout; a failure becomes ``status_error``.

    With ``rss_from_status`` (a remote gateway without a PID to sample) the
    sample's ``rss_bytes`` is the gateway's own ``rss_bytes`` figure, and
    ``rss_source`` is "status"; a failed read leaves it ``None``.
    """

    def __init__(self, base_url: str, timeout_s: float = STATUS_TIMEOUT_S, *, rss_from_status: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.rss_from_status = rss_from_status
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, trust_env=False)

    def read(self) -> dict[str, Any]:
        started = time.perf_counter()
        status: dict[str, Any] | None = None
        error: str | None = None
        try:
            response = self._client.get("/v1/status")
            response.raise_for_status()
            status = response.json()
        except httpx.TimeoutException:
            error = f"GET /v1/status timed out after {self.timeout_s} s"
        except httpx.HTTPStatusError as exc:
            error = f"GET /v1/status returned HTTP {exc.response.status_code}"
        except httpx.HTTPError as exc:
            error = f"GET /v1/status failed: {type(exc).__name__}: {exc}"
        except ValueError as exc:
            error = f"GET /v1/status returned invalid JSON: {exc}"
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        row: dict[str, Any] = {"status": status, "status_error": error, "status_latency_ms": latency_ms}
        if self.rss_from_status:
            row["rss_bytes"] = status.get("rss_bytes") if status else None
            row["rss_source"] = "status"
        return row

    def close(self) -> None:
        self._client.close()


class Sampler:
    """Takes a sample at a fixed interval, and when the trigger file grows, in a thread.

    Each sample is one dict handed to ``sink`` (normally a JSONL writer). An
    exception in a source is logged and counted, and sampling continues.
    """

    def __init__(
        self,
        sources: list[SampleSource],
        sink: Callable[[dict[str, Any]], None],
        *,
        interval_s: float = SAMPLE_INTERVAL_S,
        trigger_path: Path | None = None,
        trigger_poll_s: float = TRIGGER_POLL_S,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"sample interval must be greater than 0 s, got {interval_s}")
        self.sources = sources
        self.sink = sink
        self.interval_s = interval_s
        self.trigger_path = trigger_path
        self.trigger_poll_s = trigger_poll_s
        self.samples_taken = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trigger_size = 0

    def sample_once(self, trigger: Trigger) -> dict[str, Any]:
        """Read every source into one row, hand it to the sink and return it."""
        row: dict[str, Any] = {
            "time_s": round(time.time(), 4),
            "monotonic_s": round(time.monotonic(), 4),
            "trigger": trigger,
        }
        for source in self.sources:
            try:
                row.update(source.read())
            except Exception as exc:
                self.errors += 1
                logger.exception("Sample source %s failed; the sample goes on without it", type(source).__name__)
                row.setdefault("source_errors", []).append(f"{type(source).__name__}: {exc}")
        # The reads take time; a request that started before this moment may show in some figures of the row.
        row["end_time_s"] = round(time.time(), 4)
        self.sink(row)
        self.samples_taken += 1
        return row

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the sampler was already started")
        self._trigger_size = self._read_trigger_size()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._thread.start()
        logger.info("Sampler started: every %.2f s%s", self.interval_s, self._trigger_note())

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Take a final sample, stop the thread and close the sources; safe to call twice."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stop.set()
            thread.join(timeout_s)
            if thread.is_alive():
                logger.warning("Sampler thread still running %.1f s after the stop request; leaving it", timeout_s)
            else:
                logger.info("Sampler stopped after %d samples (%d source errors).", self.samples_taken, self.errors)
        for source in self.sources:
            source.close()
        self.sources = []

    def _run(self) -> None:
        self.sample_once("start")
        next_tick = time.monotonic() + self.interval_s

        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_tick:
                self.sample_once("interval")
                next_tick += self.interval_s
                if next_tick <= time.monotonic():
                    # A slow read overran the interval: skip the missed ticks instead of bursting.
                    next_tick = time.monotonic() + self.interval_s
                continue

            if self._trigger_grew():
                self.sample_once("request")
                continue

            wait_s = next_tick - now
            if self.trigger_path is not None:
                wait_s = min(wait_s, self.trigger_poll_s)
            self._stop.wait(wait_s)

        self.sample_once("final")

    def _trigger_grew(self) -> bool:
        if self.trigger_path is None:
            return False
        size = self._read_trigger_size()
        if size > self._trigger_size:
            self._trigger_size = size
            return True
        return False

    def _read_trigger_size(self) -> int:
        if self.trigger_path is None:
            return 0
        try:
            return self.trigger_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _trigger_note(self) -> str:
        if self.trigger_path is None:
            return ""
        return f" and when {self.trigger_path.name} grows"
