"""Running the app under uvicorn with a draining shutdown.

On the first SIGTERM or Ctrl+C the gateway drains before uvicorn stops
listening: readiness turns 503 (so a load balancer stops sending traffic),
new and queued work gets 503, and running tasks get up to
``--drain-timeout-s`` to finish. Then uvicorn closes the listener, waits for
open connections, and the lifespan stops the sweeper and unloads the models.
A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

import uvicorn

from gateway.app import create_app
from gateway.errors import SettingsError
from gateway.settings import Settings

logger = logging.getLogger(__name__)

CONNECTION_CLOSE_TIMEOUT_S = 10


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gateway):
        super().__init__(config)
        self.gateway = gateway
        self._drain_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame) -> None:
        name = signal.Signals(sig).name if isinstance(sig, int) else str(sig)
        if self._drain_task is not None or self._loop is None:
            logger.warning("Received %s again; stopping now", name)
            super().handle_exit(sig, frame)
            return
        logger.info("Received %s; draining before shutdown", name)
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        self.gateway.begin_drain()
        await self.gateway.wait_for_running_tasks(self.gateway.settings.drain_timeout_s)
        logger.info("Stopping the HTTP server")
        self.should_exit = True


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind the listening socket before any model loads, so a busy port fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # accepted connections copy the listener's proto. With proto 0, Nagle's
    # algorithm held each response's body behind its headers until the
    # client's delayed ACK, adding about 40 ms to every request.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise SettingsError(
            f"cannot listen on {host}:{port}: {error.strerror}; stop the other server on that port or pass "
            "another --port"
        ) from None
    listener.listen(2048)
    return listener


def run_server(settings: Settings, sockets: list | None = None) -> int:
    """Serve until stopped; with ``sockets``, serve those instead of binding host and port."""
    if sockets is None:
        sockets = [bind_listener(settings.host, settings.port)]
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=CONNECTION_CLOSE_TIMEOUT_S,
        ws_max_size=max(settings.stream_max_message_bytes * 2, 1 << 20),
    )
    server = DrainingServer(config, app.state.gateway)
    exit_status = 0
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        # uvicorn raises a second Ctrl+C again once it has stopped.
        exit_status = 130

    # A Python thread cannot be killed, and the interpreter would wait for
    # every worker thread at exit. Tasks still running now outlived the drain
    # timeout or a second signal, so the process exits without them.
    still_running = app.state.gateway.components.pool.stats()["workers_active"]
    if still_running:
        logger.warning("Exiting with %d inference tasks still running; their clients get no response", still_running)
        logging.shutdown()
        os._exit(exit_status or 1)
    return exit_status if server.started else 1
