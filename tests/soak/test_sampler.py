from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from soak.sampler import ProcessTreeSource, Sampler, StatusSource

MIB = 1024 * 1024
STEP_BYTES = 64 * MIB
WAIT_TIMEOUT_S = 10.0

# A child that allocates STEP_BYTES (and writes every page) per "grow" line on
# stdin, and prints "ok" for each line once the memory is resident.
GROWING_CHILD = f"""
import sys
blocks = []
for line in sys.stdin:
    if line.strip() == "grow":
        blocks.append(bytearray(b"x" * {STEP_BYTES}))
    print("ok", flush=True)
"""

# A child that starts a sleeping grandchild and prints its PID.
PARENT_CHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(grandchild.pid, flush=True)
sys.stdin.readline()
grandchild.kill()
grandchild.wait()
"""


@pytest.fixture
def growing_child() -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", GROWING_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield child
    child.kill()
    child.wait(timeout=WAIT_TIMEOUT_S)


def step(child: subprocess.Popen[str], command: str) -> None:
    child.stdin.write(command + "\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "ok", "the child did not confirm the step"


def test_samples_show_child_memory_growth(growing_child):
    source = ProcessTreeSource(growing_child.pid)
    rows: list[dict] = []
    sampler = Sampler([source], rows.append)

    step(growing_child, "noop")
    sampler.sample_once("interval")
    for _ in range(3):
        step(growing_child, "grow")
        sampler.sample_once("interval")

    rss = [row["rss_bytes"] for row in rows]
    growth = [later - earlier for earlier, later in zip(rss, rss[1:])]
    assert len(rows) == 4
    assert all(delta >= STEP_BYTES * 0.9 for delta in growth), f"RSS steps {growth} below {STEP_BYTES}"
    assert all(row["process_error"] is None for row in rows)
    assert rows[-1]["uss_bytes"] >= 3 * STEP_BYTES


def test_sample_fields_per_process_and_summed(growing_child):
    source = ProcessTreeSource(growing_child.pid)

    first = source.read()
    second = source.read()

    assert [process["pid"] for process in second["processes"]] == [growing_child.pid]
    process = second["processes"][0]
    for key in ("rss_bytes", "uss_bytes", "threads", "fds", "open_files", "connections", "cpu_times_s"):
        assert process[key] is not None, key
        assert second[key] == process[key], key
    assert first["cpu_percent"] is None, "the first CPU reading has no interval to measure"
    assert second["cpu_percent"] is not None


def test_process_tree_includes_grandchild():
    parent = subprocess.Popen([sys.executable, "-c", PARENT_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        grandchild_pid = int(parent.stdout.readline())

        reading = ProcessTreeSource(parent.pid).read()

        pids = sorted(process["pid"] for process in reading["processes"])
        assert pids == sorted([parent.pid, grandchild_pid])
        assert reading["rss_bytes"] == sum(process["rss_bytes"] for process in reading["processes"])
        assert reading["threads"] == sum(process["threads"] for process in reading["processes"])
    finally:
        parent.stdin.write("\n")
        parent.stdin.flush()
        parent.wait(timeout=WAIT_TIMEOUT_S)
    assert not psutil.pid_exists(grandchild_pid) or psutil.Process(grandchild_pid).status() == psutil.STATUS_ZOMBIE


def test_exited_process_recorded_not_raised():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    source = ProcessTreeSource(child.pid)
    child.wait(timeout=WAIT_TIMEOUT_S)

    reading = source.read()

    assert reading["process_error"] == f"process {child.pid} no longer exists"
    assert "rss_bytes" not in reading


class StatusServer:
    """A loopback HTTP server whose GET /v1/status replies as the test sets it."""

    def __init__(self) -> None:
        self.status_code = 200
        self.payload: dict = {"models_cached": 2, "retained_futures": 0}
        self.release = threading.Event()
        self.block = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if server.block:
                    server.release.wait(WAIT_TIMEOUT_S)
                body = json.dumps(server.payload).encode()
                self.send_response(server.status_code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StatusServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(WAIT_TIMEOUT_S)


def test_status_source_reads_status():
    with StatusServer() as server:
        source = StatusSource(server.url)
        reading = source.read()
        source.close()

    assert reading["status"] == {"models_cached": 2, "retained_futures": 0}
    assert reading["status_error"] is None
    assert reading["status_latency_ms"] >= 0


def test_status_source_records_http_error():
    with StatusServer() as server:
        server.status_code = 500
        source = StatusSource(server.url)
        reading = source.read()
        source.close()

    assert reading["status"] is None
    assert reading["status_error"] == "GET /v1/status returned HTTP 500"


def test_status_source_records_timeout():
    with StatusServer() as server:
        server.block = True
        source = StatusSource(server.url, timeout_s=0.2)
        reading = source.read()
        source.close()

    assert reading["status"] is None
    assert reading["status_error"] == "GET /v1/status timed out after 0.2 s"


def test_status_source_records_refused_connection():
    with StatusServer() as server:
        url = server.url
    source = StatusSource(url)

    reading = source.read()
    source.close()

    assert reading["status"] is None
    assert reading["status_error"].startswith("GET /v1/status failed: ConnectError")


def test_sampler_thread_samples_on_trigger(tmp_path: Path, growing_child):
    trigger = tmp_path / "requests.jsonl"
    request_sampled = threading.Event()
    rows: list[dict] = []

    def sink(row: dict) -> None:
        rows.append(row)
        if row["trigger"] == "request":
            request_sampled.set()

    # An interval far longer than the test: every sample but start, request and final would be a bug.
    sampler = Sampler([ProcessTreeSource(growing_child.pid)], sink, interval_s=3600, trigger_path=trigger, trigger_poll_s=0.01)
    sampler.start()
    trigger.write_text('{"index": 0}\n', encoding="utf-8")
    assert request_sampled.wait(WAIT_TIMEOUT_S), "no sample followed the trigger file's growth"
    sampler.stop()

    assert [row["trigger"] for row in rows] == ["start", "request", "final"]
    assert sampler.samples_taken == 3
    assert all(row["rss_bytes"] > 0 for row in rows)


def test_sampler_thread_samples_at_interval(growing_child):
    three_samples = threading.Event()
    rows: list[dict] = []

    def sink(row: dict) -> None:
        rows.append(row)
        if len(rows) >= 3:
            three_samples.set()

    sampler = Sampler([ProcessTreeSource(growing_child.pid)], sink, interval_s=0.05)
    sampler.start()
    assert three_samples.wait(WAIT_TIMEOUT_S), "the sampler took fewer than 3 samples"
    sampler.stop()
    sampler.stop()

    assert rows[0]["trigger"] == "start"
    assert rows[1]["trigger"] == "interval"
    assert rows[-1]["trigger"] == "final"
    times = [row["monotonic_s"] for row in rows]
    assert times == sorted(times)


def test_failing_source_logged_and_sampling_continues(growing_child, caplog):
    class BrokenSource:
        def read(self) -> dict:
            raise RuntimeError("sensor unplugged")

        def close(self) -> None:
            pass

    rows: list[dict] = []
    sampler = Sampler([BrokenSource(), ProcessTreeSource(growing_child.pid)], rows.append)

    row = sampler.sample_once("interval")

    assert row["source_errors"] == ["BrokenSource: sensor unplugged"]
    assert row["rss_bytes"] > 0
    assert sampler.errors == 1
    assert "BrokenSource failed" in caplog.text


def test_status_source_takes_rss_from_status_without_pid():
    with StatusServer() as server:
        server.payload = {"rss_bytes": 123_456_789, "models_cached": 1}
        source = StatusSource(server.url, rss_from_status=True)
        reading = source.read()
        server.status_code = 500
        failed = source.read()
        source.close()

    assert reading["rss_bytes"] == 123_456_789
    assert reading["rss_source"] == "status"
    assert failed["rss_bytes"] is None, "a failed read must not repeat an old RSS figure"
    assert failed["rss_source"] == "status"
