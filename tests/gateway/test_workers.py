"""Unit tests of the fixed worker pool, with tasks held by threading events."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.errors import OverloadedError, ShuttingDownError, TaskTimeoutError
from gateway.workers import WorkerPool

WAIT_S = 10.0


def held_task(started: threading.Event, release: threading.Event, value: int = 1):
    def task() -> int:
        started.set()
        assert release.wait(WAIT_S), "test never released the task"
        return value

    return task


async def wait_for_stat(pool: WorkerPool, key: str, expected: int) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if pool.stats()[key] == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} never reached {expected}: {pool.stats()}")


def test_pool_rejects_past_queue_limit():
    async def scenario():
        pool = WorkerPool(workers=1, max_queue=1, task_timeout_s=WAIT_S)
        release = threading.Event()
        started = threading.Event()
        running = asyncio.ensure_future(pool.run(held_task(started, release)))
        queued = asyncio.ensure_future(pool.run(held_task(threading.Event(), release)))
        await wait_for_stat(pool, "queue_depth", 1)

        with pytest.raises(OverloadedError) as caught:
            await pool.run(lambda: 0)

        assert caught.value.retry_after_s >= 1
        assert pool.stats()["requests_rejected_total"] == 1
        release.set()
        assert await running == 1
        assert await queued == 1
        stats = pool.stats()
        assert stats["workers_active"] == 0
        assert stats["queue_depth"] == 0
        assert stats["requests_completed_total"] == 2
        assert stats["retained_futures"] == 0
        await pool.shutdown(1.0)

    asyncio.run(scenario())


def test_pool_times_out_and_keeps_worker_busy():
    async def scenario():
        pool = WorkerPool(workers=1, max_queue=0, task_timeout_s=0.05, stuck_after_timeouts=1)
        release = threading.Event()
        started = threading.Event()

        with pytest.raises(TaskTimeoutError, match="task timeout"):
            await pool.run(held_task(started, release))

        stats = pool.stats()
        assert stats["requests_timed_out_total"] == 1
        assert stats["workers_active"] == 1
        assert stats["workers_stuck"] == 1
        release.set()
        await wait_for_stat(pool, "workers_active", 0)
        assert pool.stats()["workers_stuck"] == 0
        await pool.shutdown(1.0)

    asyncio.run(scenario())


def test_pool_counts_failures():
    async def scenario():
        pool = WorkerPool(workers=2, max_queue=2, task_timeout_s=WAIT_S)

        def broken() -> None:
            raise ValueError("bad audio")

        with pytest.raises(ValueError, match="bad audio"):
            await pool.run(broken)

        assert pool.stats()["requests_failed_total"] == 1
        assert pool.stats()["workers_active"] == 0
        await pool.shutdown(1.0)

    asyncio.run(scenario())


def test_timed_out_queued_task_never_runs():
    async def scenario():
        pool = WorkerPool(workers=1, max_queue=1, task_timeout_s=0.2)
        release = threading.Event()
        started = threading.Event()
        ran = threading.Event()
        blocker = asyncio.ensure_future(pool.run(held_task(started, release)))
        await wait_for_stat(pool, "workers_active", 1)

        with pytest.raises(TaskTimeoutError):
            await pool.run(ran.set)

        assert pool.stats()["queue_depth"] == 0
        release.set()
        with pytest.raises(TaskTimeoutError):
            await blocker
        await wait_for_stat(pool, "workers_active", 0)
        assert not ran.is_set()
        await pool.shutdown(1.0)

    asyncio.run(scenario())


def test_shutdown_rejects_new_work():
    async def scenario():
        pool = WorkerPool(workers=1, max_queue=1, task_timeout_s=WAIT_S)
        assert await pool.shutdown(1.0) == 0

        with pytest.raises(ShuttingDownError):
            await pool.run(lambda: 0)
        assert await pool.shutdown(1.0) == 0

    asyncio.run(scenario())


def test_shutdown_cancels_queued_tasks():
    async def scenario():
        pool = WorkerPool(workers=1, max_queue=2, task_timeout_s=WAIT_S)
        release = threading.Event()
        started = threading.Event()
        running = asyncio.ensure_future(pool.run(held_task(started, release)))
        queued = [asyncio.ensure_future(pool.run(lambda: 2)) for _ in range(2)]
        await wait_for_stat(pool, "queue_depth", 2)

        cancelled = await pool.shutdown(0.05)

        assert cancelled == 2
        release.set()
        assert await running == 1
        for future in queued:
            with pytest.raises(ShuttingDownError, match="rejected this queued request"):
                await future

    asyncio.run(scenario())


def test_begin_shutdown_rejects_queued_keeps_running():
    async def scenario():
        pool = WorkerPool(workers=1, max_queue=2, task_timeout_s=WAIT_S)
        release = threading.Event()
        started = threading.Event()
        running = asyncio.ensure_future(pool.run(held_task(started, release)))
        queued = asyncio.ensure_future(pool.run(lambda: 2))
        await wait_for_stat(pool, "queue_depth", 1)

        assert pool.begin_shutdown() == 1

        with pytest.raises(ShuttingDownError):
            await queued
        with pytest.raises(ShuttingDownError):
            await pool.run(lambda: 3)
        assert pool.stats()["workers_active"] == 1
        release.set()
        assert await running == 1
        assert await pool.shutdown(1.0) == 0

    asyncio.run(scenario())


def test_pool_starts_every_thread_up_front():
    before = threading.active_count()
    pool = WorkerPool(workers=3, max_queue=0, task_timeout_s=WAIT_S)

    assert threading.active_count() == before + 3
    asyncio.run(pool.shutdown(1.0))
