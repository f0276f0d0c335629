"""HTTP and WebSocket routes, one module per group of endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from gateway.errors import ClientDisconnectedError
from gateway.service import Gateway

logger = logging.getLogger(__name__)

T = TypeVar("T")


# The dependencies below are async because FastAPI runs a plain ``def``
# dependency on a thread of anyio's pool: two thread switches per request,
# each of which waits for the GIL while inference threads hold it.
async def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` unless the client disconnects first; then cancel it and raise ClientDisconnectedError.

    Call it only after the request body has been read. Cancelling a queued
    task frees its queue slot at once; a task already running on a worker
    finishes there and its result is dropped.
    """
    work_task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({work_task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if work_task.done():
            return work_task.result()
        work_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work_task
        logger.info("%s %s: client disconnected before the response; its work was cancelled", request.method, request.url.path)
        raise ClientDisconnectedError(f"client disconnected from {request.url.path} before the response was ready")
    finally:
        for task in (work_task, watcher):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
