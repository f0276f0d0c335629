"""The bounded inference pool: admission control, timeouts, exact counters.

One long-lived ``ThreadPoolExecutor``. A task is admitted only while fewer
than ``workers + max_queue`` tasks are running or waiting; past that the
request gets 503 with ``Retry-After`` at once instead of hanging into a 504.
Results are awaited with ``asyncio.wrap_future``, so the event loop never
blocks, and no future is kept after its task ends.

A Python thread cannot be killed: a task past its timeout answers its client
with 504 but keeps its worker busy until it really returns. A task running
for ``stuck_after_timeouts`` timeouts is counted as stuck, and the status
reads DEGRADED while any is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

from gateway.errors import OverloadedError, ShuttingDownError, TaskTimeoutError

logger = logging.getLogger(__name__)

T = TypeVar("T")
SATURATION_LOG_INTERVAL_S = 30.0
PRESTART_TIMEOUT_S = 30.0


def prestart_threads(executor: ThreadPoolExecutor, workers: int) -> None:
    """Start every worker thread now rather than on demand.

    ``ThreadPoolExecutor`` adds a thread only when no idle one exists, so the
    thread count would otherwise creep up during a run and read as a leak of
    threads. Each thread blocks on a barrier until all of them exist.
    """
    barrier = threading.Barrier(workers + 1)
    for _ in range(workers):
        executor.submit(barrier.wait, PRESTART_TIMEOUT_S)
    barrier.wait(PRESTART_TIMEOUT_S)


class WorkerPoolProtocol(Protocol):
    """Interface of a worker pool, fixed or leaky."""

    async def run(self, task: Callable[[], T]) -> T: ...

    def stats(self) -> dict[str, int]: ...

    def begin_shutdown(self) -> int: ...

    async def shutdown(self, drain_timeout_s: float) -> int: ...


class WorkerPool:
    def __init__(self, workers: int, max_queue: int, task_timeout_s: float, stuck_after_timeouts: int = 3):
        self._workers = workers
        self._max_queue = max_queue
        self._task_timeout_s = task_timeout_s
        self._stuck_after_s = task_timeout_s * stuck_after_timeouts
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        prestart_threads(self._executor, workers)
        self._lock = threading.Lock()
        self._queued = 0
        self._running: dict[int, float] = {}  # task id -> monotonic start time
        self._waiting: dict[int, Future] = {}  # task id -> future, only until the task starts
        self._task_ids = itertools.count(1)
        self._completed = 0
        self._failed = 0
        self._rejected = 0
        self._timed_out = 0
        self._closing = False
        self._last_saturation_log = 0.0

    async def run(self, task: Callable[[], T]) -> T:
        """Run ``task`` on a worker; raise OverloadedError, TaskTimeoutError or the task's error."""
        task_id = self._admit()
        future = self._executor.submit(self._call, task_id, task)
        with self._lock:
            # Only a task that has not started yet can be cancelled at shutdown.
            if task_id not in self._running and not future.done():
                self._waiting[task_id] = future
        future.add_done_callback(lambda done: self._on_done(task_id, done))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=self._task_timeout_s)
        except asyncio.CancelledError:
            if self._closing and future.cancelled():
                raise ShuttingDownError(
                    "the gateway is shutting down and rejected this queued request before it started; "
                    "retry on another instance"
                ) from None
            raise
        except asyncio.TimeoutError:
            with self._lock:
                self._timed_out += 1
            logger.warning("Task %d timed out after %.1f s; its worker stays busy until it returns", task_id, self._task_timeout_s)
            raise TaskTimeoutError(
                f"inference did not finish within the task timeout of {self._task_timeout_s:g} s; "
                "retry later, send shorter audio, or raise --task-timeout-s"
            ) from None

    def _admit(self) -> int:
        with self._lock:
            if self._closing:
                raise ShuttingDownError("the gateway is shutting down and admits no new work; retry on another instance")
            in_flight = self._queued + len(self._running)
            if in_flight >= self._workers + self._max_queue:
                self._rejected += 1
                self._log_saturation_locked()
                raise OverloadedError(
                    f"all {self._workers} workers are busy and the queue is full "
                    f"({self._queued} of {self._max_queue} waiting); retry after the Retry-After delay",
                    retry_after_s=self._retry_after_locked(),
                )
            self._queued += 1
            return next(self._task_ids)

    def _log_saturation_locked(self) -> None:
        now = time.monotonic()
        if now - self._last_saturation_log >= SATURATION_LOG_INTERVAL_S:
            self._last_saturation_log = now
            logger.warning(
                "Worker pool saturated: %d workers busy, %d queued; rejecting with 503 (%d rejected so far)",
                len(self._running), self._queued, self._rejected,
            )

    def _retry_after_locked(self) -> int:
        return max(1, min(60, int(self._queued / max(1, self._workers)) + 1))

    def _call(self, task_id: int, task: Callable[[], T]) -> T:
        with self._lock:
            self._queued -= 1
            self._waiting.pop(task_id, None)
            self._running[task_id] = time.monotonic()
        try:
            result = task()
        except BaseException:
            with self._lock:
                self._failed += 1
            raise
        else:
            with self._lock:
                self._completed += 1
            return result
        finally:
            with self._lock:
                del self._running[task_id]

    def _on_done(self, task_id: int, future: Future) -> None:
        # A task cancelled before it started never ran _call, so it still counts as queued.
        with self._lock:
            self._waiting.pop(task_id, None)
            if future.cancelled():
                self._queued -= 1

    def stats(self) -> dict[str, int]:
        now = time.monotonic()
        with self._lock:
            stuck = sum(1 for started in self._running.values() if now - started >= self._stuck_after_s)
            return {
                "workers_active": len(self._running),
                "workers_max": self._workers,
                "workers_stuck": stuck,
                "queue_depth": self._queued,
                "queue_limit": self._max_queue,
                "requests_completed_total": self._completed,
                "requests_failed_total": self._failed,
                "requests_rejected_total": self._rejected,
                "requests_timed_out_total": self._timed_out,
                "retained_futures": 0,
            }

    def begin_shutdown(self) -> int:
        """Stop admitting and cancel every task that has not started; return how many were cancelled."""
        with self._lock:
            self._closing = True
            waiting = list(self._waiting.values())
        cancelled = sum(1 for future in waiting if future.cancel())
        if cancelled:
            logger.info("Worker pool closed to new work; %d queued tasks cancelled", cancelled)
        return cancelled

    async def shutdown(self, drain_timeout_s: float) -> int:
        """Stop admitting, wait up to ``drain_timeout_s`` for running tasks, cancel queued ones.

        Returns how many queued tasks were cancelled. Safe to call twice.
        """
        with self._lock:
            self._closing = True
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running and not self._queued:
                    break
            await asyncio.sleep(0.05)
        with self._lock:
            cancelled = self._queued
            still_running = len(self._running)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if cancelled or still_running:
            logger.warning(
                "Worker pool shut down with %d queued tasks cancelled and %d still running after %.1f s",
                cancelled, still_running, drain_timeout_s,
            )
        else:
            logger.info("Worker pool drained and shut down")
        return cancelled
