"""The listening socket: bound early, and its connections sent without Nagle's delay."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.server import bind_listener
from gateway.errors import SettingsError


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


def test_busy_port_fails_with_the_port_and_the_fix() -> None:
    first = bind_listener("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        with pytest.raises(SettingsError, match=rf"cannot listen on 127.0.0.1:{port}.*another --port"):
            bind_listener("127.0.0.1", port)
    finally:
        first.close()
