"""Leak 2: a pool wrapper that keeps every future and blocks the event loop.

Each submitted future is appended to a module-level list that is never
pruned, so every finished task's result, with the decoded audio it carries,
stays reachable. The wrapper waits with ``future.result()`` on the event-loop
thread, which freezes every other request, the status endpoint included.
There is no admission control: the executor's queue grows without bound.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from gateway.errors import TaskTimeoutError
from gateway.workers import prestart_threads

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The leaking container: every future ever submitted, with its result.
_FUTURES: list[Future] = []


class LeakyWorkerPool:
    def __init__(self, workers: int, max_queue: int, task_timeout_s: float, stuck_after_timeouts: int = 3):
        self._workers = workers
        self._task_timeout_s = task_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference-leaky")
        prestart_threads(self._executor, workers)
        self._lock = threading.Lock()
        self._active = 0
        self._submitted = 0
        self._completed = 0
        self._failed = 0
        self._timed_out = 0

    async def run(self, task: Callable[[], T]) -> T:
        future = self._executor.submit(self._call, task)
        _FUTURES.append(future)
        with self._lock:
            self._submitted += 1
        try:
            # Blocks the event loop until the task ends: the incident's second leak.
            return future.result(timeout=self._task_timeout_s)
        except concurrent.futures.TimeoutError:
            with self._lock:
                self._timed_out += 1
            raise TaskTimeoutError(
                f"inference did not finish within the task timeout of {self._task_timeout_s:g} s"
            ) from None

    def _call(self, task: Callable[[], T]) -> T:
        with self._lock:
            self._active += 1
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
                self._active -= 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            finished = self._completed + self._failed
            return {
                "workers_active": self._active,
                "workers_max": self._workers,
                "workers_stuck": 0,
                "queue_depth": max(0, self._submitted - finished - self._active),
                "queue_limit": 0,
                "requests_completed_total": self._completed,
                "requests_failed_total": self._failed,
                "requests_rejected_total": 0,
                "requests_timed_out_total": self._timed_out,
                "retained_futures": len(_FUTURES),
            }

    def begin_shutdown(self) -> int:
        return 0

    async def shutdown(self, drain_timeout_s: float) -> int:
        self._executor.shutdown(wait=False, cancel_futures=True)
        return 0
