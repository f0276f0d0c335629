"""tracemalloc snapshots fetched from a loopback stand-in of the gateway's debug endpoint."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from soak.snapshots import SnapshotCollector

WAIT_TIMEOUT_S = 10.0


class SnapshotServer:
    """Serves ``GET /v1/debug/tracemalloc/snapshot`` with numbered bytes, or HTTP 409 while ``tracing`` is False."""

    def __init__(self) -> None:
        self.served = 0
        self.tracing = True
        self.first_fetch = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if not server.tracing:
                    body = b'{"error": {"code": "not_tracing", "message": "tracemalloc is not tracing"}}'
                    self.send_response(409)
                else:
                    server.served += 1
                    body = f"snapshot {server.served}".encode()
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                server.first_fetch.set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SnapshotServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(WAIT_TIMEOUT_S)


def test_interval_and_final_snapshots_sort_by_time(tmp_path):
    with SnapshotServer() as server:
        collector = SnapshotCollector(server.url, tmp_path / "snapshots", interval_s=0.1)
        collector.start()
        assert server.first_fetch.wait(WAIT_TIMEOUT_S), "no interval snapshot was fetched"
        time.sleep(0.25)
        collector.stop()

    names = sorted(path.name for path in (tmp_path / "snapshots").iterdir())
    assert len(names) >= 2
    assert names[-1].endswith("-final.tracemalloc")
    assert all(name.endswith("-interval.tracemalloc") for name in names[:-1])
    assert [entry["file"] for entry in collector.manifest()["snapshots"]] == names
    assert (tmp_path / "snapshots" / names[0]).read_bytes() == b"snapshot 1"


def test_failed_fetch_recorded_not_raised(tmp_path):
    with SnapshotServer() as server:
        server.tracing = False
        collector = SnapshotCollector(server.url, tmp_path / "snapshots", interval_s=60)

        path = collector.fetch("final")

    assert path is None
    assert collector.errors == [
        '0001-final.tracemalloc: GET /v1/debug/tracemalloc/snapshot returned HTTP 409: '
        '{"error": {"code": "not_tracing", "message": "tracemalloc is not tracing"}}'
    ]


def test_interval_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="greater than 0 s"):
        SnapshotCollector("http://127.0.0.1:1", tmp_path, interval_s=0)
