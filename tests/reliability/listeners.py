"""Loopback HTTP listeners that count accepted connections and send scripted responses.

A test starts one per "host" it needs (an allowed one, a disallowed one) on
127.0.0.1 or ::1 with a free port, and asserts from ``accepted`` whether the
gateway connected at all. Every response is bounded in size and time.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# A dripping response sends one byte per interval for at most this long.
MAX_DRIP_S = 30.0
DRIP_INTERVAL_S = 0.05
READ_TIMEOUT_S = 10.0


@dataclass
class Reply:
    """A scripted HTTP response; ``drip`` sends the body one byte per interval."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip: bool = False
    declared_length: int | None = None  # Content-Length to send instead of len(body)
    close_delimited: bool = False  # no Content-Length: the body ends when the connection closes


@dataclass
class SeenRequest:
    method: str
    target: str
    headers: dict[str, str]


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        listener = self.server.listener
        with listener.lock:
            listener.accepted += 1
        self.request.settimeout(READ_TIMEOUT_S)
        try:
            head = self._read_head()
        except OSError:
            return
        if head is None:
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (request_line.split(" ", 2) + ["", ""])[:3]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        seen = SeenRequest(method, target, headers)
        with listener.lock:
            listener.requests.append(seen)
        reply = listener.respond(seen)
        try:
            self._send(reply)
        except OSError:
            pass

    def _read_head(self) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            block = self.request.recv(4096)
            if not block:
                return None
            data += block
            if len(data) > 65536:
                return None
        return data.split(b"\r\n\r\n", 1)[0]

    def _send(self, reply: Reply) -> None:
        length = reply.declared_length if reply.declared_length is not None else len(reply.body)
        lines = [f"HTTP/1.1 {reply.status} Scripted", "Connection: close"]
        if not reply.close_delimited:
            lines.append(f"Content-Length: {length}")
        lines += [f"{name}: {value}" for name, value in reply.headers.items()]
        self.request.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not reply.drip:
            self.request.sendall(reply.body)
            return
        deadline = time.monotonic() + MAX_DRIP_S
        for index in range(len(reply.body)):
            if time.monotonic() > deadline or self.server.listener.closed.is_set():
                return
            self.request.sendall(reply.body[index:index + 1])
            time.sleep(DRIP_INTERVAL_S)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, family: int, listener: "LoopbackListener"):
        self.address_family = family
        self.listener = listener
        super().__init__(address, _Handler)


class LoopbackListener:
    """An HTTP listener on a loopback address; ``respond`` maps each request to a Reply."""

    def __init__(self, respond: Callable[[SeenRequest], Reply], host: str = "127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.respond = respond
        self.host = host
        self.accepted = 0
        self.requests: list[SeenRequest] = []
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self._server = _Server((host, 0), family, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"listener-{self.port}", daemon=True)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, path: str = "/speech.wav") -> str:
        return f"http://{self.authority}{path}"

    def __enter__(self) -> "LoopbackListener":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), f"listener on port {self.port} did not stop within 10 s"


def serve(body: bytes, **headers: str) -> Callable[[SeenRequest], Reply]:
    return lambda request: Reply(200, body, dict(headers))


def redirect(location: str, status: int = 302) -> Callable[[SeenRequest], Reply]:
    return lambda request: Reply(status, b"", {"Location": location})
