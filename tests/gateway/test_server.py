"""The listening socket and request dispatch: bound early, no Nagle delay, no thread hop per request."""

from __future__ import annotations

import asyncio
import inspect
import socket

import pytest

from gateway.errors import SettingsError
from gateway.routes import ops, sessions, transcribe
from gateway.server import bind_listener


def test_listener_connections_get_tcp_nodelay() -> None:
    """GIVEN the gateway's listener WHEN asyncio accepts a connection THEN the connection has TCP_NODELAY set."""
    listener = bind_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    accepted: asyncio.Queue[int] = asyncio.Queue()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            connection = transport.get_extra_info("socket")
            accepted.put_nowait(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def accept_one() -> int:
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=10)
            writer.close()
            return await asyncio.wait_for(accepted.get(), timeout=10)
        finally:
            server.close()
            await server.wait_closed()

    assert listener.proto == socket.IPPROTO_TCP
    assert asyncio.run(accept_one()) != 0


def test_busy_port_rejected() -> None:
    first = bind_listener("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        with pytest.raises(SettingsError, match=rf"cannot listen on 127.0.0.1:{port}.*another --port"):
            bind_listener("127.0.0.1", port)
    finally:
        first.close()



def dependency_calls(dependant) -> list:
    calls = []
    for dependency in dependant.dependencies:
        calls.append(dependency.call)
        calls.extend(dependency_calls(dependency))
    return calls


def test_route_dependencies_are_coroutines() -> None:
    """Every route dependency runs on the event loop: a plain ``def`` one would hop to anyio's thread pool per request."""
    routes = [*ops.router.routes, *transcribe.router.routes, *sessions.router.routes]
    calls = [call for route in routes for call in dependency_calls(route.dependant)]

    assert {call.__name__ for call in calls} >= {"gateway_of", "require_debug_access", "require_single_process"}
    for call in calls:
        assert inspect.iscoroutinefunction(call), call.__qualname__
