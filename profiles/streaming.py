"""Clients for the gateway's streaming paths that Locust's HTTP users do not cover.

- ``StreamClient``: the WebSocket ``/v1/sessions/{id}/stream``. The protocol
  itself is the ``websockets`` library's sans-I/O ``ClientProtocol``. The
  bytes travel over a plain socket, which gevent makes cooperative, so a
  stream blocks only its own Locust user.
- ``cut_chunk_upload``: an HTTP chunk upload whose connection is reset in the
  middle of the body, the abnormal disconnect that must not leave a buffer
  behind.

Both drop the TCP connection with a reset (``SO_LINGER`` 0) when asked to
disconnect abruptly, so the gateway sees what a crashed client or a broken
network produces: no close frame and no end of the request body.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

RECEIVE_BYTES = 65536


class StreamError(Exception):
    """The WebSocket handshake or stream failed."""


def host_and_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    if parts.hostname is None:
        raise StreamError(f"invalid host URL {base_url!r}; use a URL such as http://127.0.0.1:8080")
    default_port = 443 if parts.scheme in ("https", "wss") else 80
    return parts.hostname, parts.port or default_port


def reset_connection(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset instead of an orderly shutdown."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class StreamClient:
    """One WebSocket connection to ``/v1/sessions/{session_id}/stream``."""

    def __init__(self, base_url: str, session_id: str, *, sample_rate: int = 16000, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme == "https":
            raise StreamError("the stream client supports ws:// (plain HTTP hosts) only")
        host, port = host_and_port(base_url)
        self.uri = f"ws://{host}:{port}/v1/sessions/{session_id}/stream?sample_rate={sample_rate}"
        self.timeout_s = timeout_s
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._protocol = ClientProtocol(parse_uri(self.uri))
        self._socket = socket.create_connection((host, port), timeout=timeout_s)
        try:
            self._handshake()
        except BaseException:
            self._socket.close()
            raise

    def _handshake(self) -> None:
        self._protocol.send_request(self._protocol.connect())
        self._flush()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            self._receive_some()
            for event in self._protocol.events_received():
                if isinstance(event, Response):
                    if self._protocol.handshake_exc is not None:
                        raise StreamError(f"WebSocket handshake failed: {self._protocol.handshake_exc}")
                    return
                self._keep(event)
        raise StreamError(f"no WebSocket handshake response within {self.timeout_s} s")

    def send_audio(self, pcm: bytes) -> None:
        self._protocol.send_binary(pcm)
        self._flush()

    def finish(self) -> dict[str, Any] | None:
        """Send ``{"event": "end"}`` and wait for the final result; return it, or ``None`` if the stream closed first."""
        self._protocol.send_text(json.dumps({"event": "end"}).encode())
        self._flush()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and self.close_code is None:
            final = next((message for message in self.messages if message.get("type") == "final"), None)
            if final is not None:
                return final
            self._receive_some()
            for event in self._protocol.events_received():
                self._keep(event)
        return next((message for message in self.messages if message.get("type") == "final"), None)

    def close(self) -> None:
        """Close the connection in order, bounded by the timeout."""
        if self.close_code is None:
            try:
                self._protocol.send_close(1000)
                self._flush()
            except OSError:
                pass
        self._socket.close()

    def drop(self) -> None:
        """Reset the TCP connection without a close frame, as a crashed client would."""
        reset_connection(self._socket)

    def _keep(self, event: Any) -> None:
        if not isinstance(event, Frame):
            return
        if event.opcode == Opcode.TEXT:
            try:
                self.messages.append(json.loads(event.data))
            except ValueError:
                self.messages.append({"type": "unreadable", "data": event.data[:200].decode(errors="replace")})
        elif event.opcode == Opcode.CLOSE:
            self.close_code = struct.unpack("!H", event.data[:2])[0] if len(event.data) >= 2 else 1005
            self._flush()

    def _receive_some(self) -> None:
        try:
            data = self._socket.recv(RECEIVE_BYTES)
        except socket.timeout:
            return
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
            if self.close_code is None:
                self.close_code = 1006

    def _flush(self) -> None:
        for data in self._protocol.data_to_send():
            if data:
                self._socket.sendall(data)


def cut_chunk_upload(base_url: str, session_id: str, pcm: bytes, *, sent_fraction: float = 0.25, timeout_s: float = 10.0) -> int:
    """Start ``POST /v1/sessions/{id}/chunks`` with ``pcm``, send part of the body, then reset the connection.

    Returns the number of body bytes sent before the reset.
    """
    host, port = host_and_port(base_url)
    sent_bytes = max(1, int(len(pcm) * sent_fraction))
    head = (
        f"POST /v1/sessions/{session_id}/chunks HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {len(pcm)}\r\n"
        "\r\n"
    ).encode("ascii")
    sock = socket.create_connection((host, port), timeout=timeout_s)
    try:
        sock.sendall(head + pcm[:sent_bytes])
        # Give the gateway a moment to start reading the body, so the reset lands mid-request.
        time.sleep(0.05)
    finally:
        reset_connection(sock)
    return sent_bytes
