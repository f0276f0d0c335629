"""Several gateway processes on one port: per-process state, 409 for HTTP sessions, clean stop."""

from __future__ import annotations

import asyncio
import signal

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.test_interfaces import stream_all, ws_url

WAIT_S = 120.0


def test_two_processes_serve_and_stop(start_gateway):
    server = start_gateway("--processes", "2", "--workers", "1")
    parent = psutil.Process(server.process.pid)
    # Spawned gateway processes run multiprocessing's spawn_main; the resource tracker does not.
    gateway_children = [c for c in parent.children() if "spawn_main" in " ".join(c.cmdline())]

    responses = [server.transcribe(audio_url="speech.wav") for _ in range(3)]
    opened = httpx.post(server.url + "/v1/sessions", json={}, timeout=10)
    chunk = httpx.post(server.url + "/v1/sessions/s/chunks", content=b"\x00\x00", timeout=10)
    messages = asyncio.run(stream_all(ws_url(server, "multi")))
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    families = {family.name: family for family in text_string_to_metric_families(metrics)}

    assert len(gateway_children) == 2
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert opened.status_code == 409
    assert opened.json()["error"]["code"] == "use_websocket_stream"
    assert "WebSocket" in opened.json()["error"]["message"]
    assert chunk.status_code == 409
    assert messages[-1]["type"] == "final"
    assert "asr_gateway_request_duration_seconds" in families

    descendants = parent.children(recursive=True)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=WAIT_S) == 0
    gone, alive = psutil.wait_procs(descendants, timeout=WAIT_S)
    assert alive == []
