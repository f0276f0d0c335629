"""Hostile WebSocket streams: bad query values, session ids and messages close with the documented code."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.reliability.conftest import SPEECH_WAV, assert_at_rest, rss_baseline

MAX_MESSAGE_BYTES = 65536
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG = 1000, 1008, 1009
PCM = SPEECH_WAV[44:44 + 32000]


@pytest.fixture(scope="module")
def gateway(module_gateway):
    server = module_gateway("--stream-max-message-bytes", str(MAX_MESSAGE_BYTES), "--stream-partial-interval-s", "100")
    return server, rss_baseline(server)


def stream_url(server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def run_stream(server, path: str, messages: list) -> tuple[int, str, list[dict]]:
    """Send ``messages`` and return the close code, the close reason and the JSON messages received."""
    received = []
    with connect(stream_url(server, path), open_timeout=10, close_timeout=10, max_size=None) as websocket:
        try:
            for message in messages:
                websocket.send(message)
            while True:
                received.append(json.loads(websocket.recv(timeout=30)))
        except ConnectionClosed:
            pass
        return websocket.close_code, websocket.close_reason, received


@pytest.mark.parametrize(
    ("path", "messages", "code", "fragment"),
    [
        ("/v1/sessions/a%20b/stream", [], CLOSE_POLICY, "session_id"),
        ("/v1/sessions/" + "s" * 129 + "/stream", [], CLOSE_POLICY, "session_id"),
        ("/v1/sessions/ok/stream?sample_rate=abc", [], CLOSE_POLICY, "sample_rate must be an integer"),
        ("/v1/sessions/ok/stream?sample_rate=1e9", [], CLOSE_POLICY, "sample_rate must be an integer"),
        ("/v1/sessions/ok/stream?sample_rate=0", [], CLOSE_POLICY, "8000 to 192000 Hz"),
        ("/v1/sessions/ok/stream?sample_rate=" + "9" * 5000, [], CLOSE_POLICY, "sample_rate must be an integer"),
        ("/v1/sessions/ok/stream?model=../x", [], CLOSE_POLICY, "not a model name"),
        ("/v1/sessions/ok/stream?model=nope", [], CLOSE_POLICY, "not found"),
        ("/v1/sessions/ok/stream", ["not json"], CLOSE_POLICY, "must be JSON"),
        ("/v1/sessions/ok/stream", ["[" * 50_000 + "]" * 50_000], CLOSE_TOO_BIG, "limit of 4096"),
        ("/v1/sessions/ok/stream", ["[" * 2000 + "]" * 2000], CLOSE_POLICY, "must be JSON"),
        ("/v1/sessions/ok/stream", ["x" * 500_000], CLOSE_TOO_BIG, "limit of 4096"),
        ("/v1/sessions/ok/stream", [json.dumps({"event": 5})], CLOSE_POLICY, "unknown event"),
        ("/v1/sessions/ok/stream", [json.dumps([1, 2])], CLOSE_POLICY, "unknown event"),
        ("/v1/sessions/ok/stream", [json.dumps({"event": "e" * 1000})], CLOSE_POLICY, "unknown event"),
        ("/v1/sessions/ok/stream", [b"\x00" * (MAX_MESSAGE_BYTES + 2)], CLOSE_TOO_BIG, f"limit of {MAX_MESSAGE_BYTES}"),
        ("/v1/sessions/ok/stream", [b"\x00\x00\x00"], CLOSE_POLICY, "even byte count"),
        ("/v1/sessions/ok/stream", [json.dumps({"event": "end"})], CLOSE_POLICY, "no buffered audio"),
    ],
)
def test_hostile_stream_closes_with_code(gateway, path, messages, code, fragment):
    server, _ = gateway

    close_code, reason, _ = run_stream(server, path, messages)

    assert close_code == code, reason
    assert fragment in reason


def test_many_pings_each_answered(gateway):
    server, _ = gateway
    pings = [json.dumps({"event": "ping"})] * 500

    close_code, _, received = run_stream(server, "/v1/sessions/pings/stream", pings + [PCM, json.dumps({"event": "end"})])

    assert close_code == CLOSE_NORMAL
    assert [message["type"] for message in received] == ["pong"] * 500 + ["final"]


def test_stream_to_session_opened_over_http_is_used(gateway):
    import httpx

    server, _ = gateway
    opened = httpx.post(server.url + "/v1/sessions", json={"session_id": "shared"}, timeout=10)
    assert opened.status_code == 201

    close_code, _, received = run_stream(server, "/v1/sessions/shared/stream", [PCM, json.dumps({"event": "end"})])

    assert close_code == CLOSE_NORMAL
    assert received[-1]["type"] == "final"


def test_hostile_streams_leave_nothing_behind(gateway):
    server, baseline = gateway

    assert_at_rest(server, baseline, "hostile WebSocket streams")
