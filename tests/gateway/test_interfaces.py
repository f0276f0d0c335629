"""Client-facing interfaces on a real gateway: OpenAI client, WebSocket stream, metrics, debug, auth."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DATA
from tests.gateway.test_service import SPEECH, overlaps, wait_until

TOKEN = "test-token-0123456789abcdef"
PCM = (DATA / "speech.wav").read_bytes()[44:]


def ws_url(server, session_id: str, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + f"/v1/sessions/{session_id}/stream" + query


def test_openai_client_transcribes(start_gateway, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    server = start_gateway(env={"TMPDIR": str(uploads)})
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    big = DATA / "speech.wav"

    with big.open("rb") as audio_file:
        as_json = client.audio.transcriptions.create(model="whisper-1", file=audio_file)
    with big.open("rb") as audio_file:
        verbose = client.audio.transcriptions.create(model="paraformer-tiny", file=audio_file, response_format="verbose_json")
    with big.open("rb") as audio_file:
        as_text = client.audio.transcriptions.create(model="whisper-1", file=audio_file, response_format="text")
    models = [model.id for model in client.models.list()]

    assert as_json.text
    assert as_text.strip() == as_json.text
    assert verbose.duration == pytest.approx(11.175, abs=0.01)
    segments = [{"start_ms": s.start * 1000, "end_ms": s.end * 1000} for s in verbose.segments]
    assert any(overlaps(s, SPEECH["speech_ms"][0]) for s in segments)
    assert "paraformer-tiny" in models
    assert list(uploads.iterdir()) == []


def test_openai_endpoint_rejects_bad_input(start_gateway):
    server = start_gateway("--max-upload-bytes", "400000")
    url = server.url + "/v1/audio/transcriptions"

    missing = httpx.post(url, data={"model": "whisper-1"}, timeout=30)
    wrong_format = httpx.post(url, files={"file": ("a.wav", PCM[:100])}, data={"response_format": "srt"}, timeout=30)
    not_audio = httpx.post(url, files={"file": ("a.wav", b"not audio" * 10)}, timeout=30)
    too_big = httpx.post(url, files={"file": ("a.wav", b"\x00" * 400001)}, timeout=30)

    assert missing.status_code == 400
    assert "file" in missing.json()["error"]["message"]
    assert wrong_format.json()["error"]["code"] == "invalid_response_format"
    assert not_audio.status_code == 400
    assert not_audio.json()["error"]["code"] == "invalid_audio"
    assert too_big.status_code == 413
    assert "400000" in too_big.json()["error"]["message"]


async def stream_all(url: str, chunk_bytes: int = 32000) -> list[dict]:
    messages = []
    async with websockets.connect(url, max_size=None) as socket:
        for start in range(0, len(PCM), chunk_bytes):
            await socket.send(PCM[start:start + chunk_bytes])
        await socket.send(json.dumps({"event": "ping"}))
        await socket.send(json.dumps({"event": "end"}))
        async for message in socket:
            messages.append(json.loads(message))
        assert socket.close_code == 1000
    return messages


def test_stream_sends_partials_and_final(start_gateway):
    server = start_gateway()

    messages = asyncio.run(stream_all(ws_url(server, "stream-1")))

    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "final"
    assert "partial" in kinds
    assert "pong" in kinds
    final = messages[-1]
    for interval in SPEECH["speech_ms"]:
        assert any(overlaps(s, interval) for s in final["segments"])
    assert server.status()["sessions_open"] == 0


async def close_code_after(url: str, *frames) -> int:
    async with websockets.connect(url, max_size=None) as socket:
        # The server may close before every frame is sent (a bad query closes at once).
        try:
            for frame in frames:
                await socket.send(frame)
            while True:
                await socket.recv()
        except websockets.ConnectionClosed:
            pass
        return socket.close_code


@pytest.mark.parametrize(
    ("frames", "query", "expected"),
    [
        (["not json"], "", 1008),
        ([json.dumps({"event": "rewind"})], "", 1008),
        ([b"\x00" * 70000], "", 1009),
        ([b"\x00\x00"], "?sample_rate=abc", 1008),
        ([b"\x00\x00"], "?model=no-such-model", 1008),
    ],
)
def test_stream_policy_close_codes(start_gateway, frames, query, expected):
    server = start_gateway("--stream-max-message-bytes", "65536")

    code = asyncio.run(close_code_after(ws_url(server, "policy", query), *frames))

    assert code == expected
    wait_until(lambda: server.status()["sessions_open"] == 0, timeout_s=30, message="session released")


async def vanish(url: str) -> None:
    socket = await websockets.connect(url)
    await socket.send(PCM[:32000])
    await socket.send(PCM[32000:64000])
    # Drop the TCP connection without a close handshake.
    socket.transport.abort()


@pytest.mark.parametrize(("leaks", "expected_open"), [("none", 0), ("session-buffers", 1)])
def test_vanished_stream_client(start_gateway, leaks, expected_open):
    server = start_gateway("--leaks", leaks)

    asyncio.run(vanish(ws_url(server, "vanish")))

    if expected_open == 0:
        wait_until(lambda: server.status()["sessions_open"] == 0, timeout_s=30, message="session released")
    else:
        wait_until(lambda: server.status()["sessions_buffered_bytes"] == 64000, timeout_s=30, message="chunks buffered")
        wait_until(lambda: server.status()["workers_active"] == 0, timeout_s=30, message="workers idle")
    assert server.status()["sessions_open"] == expected_open


def test_metrics_parse_and_count_requests(start_gateway):
    server = start_gateway()
    assert server.transcribe(audio_url="speech.wav").status_code == 200

    text = httpx.get(server.url + "/metrics", timeout=10).text
    families = {family.name: family for family in text_string_to_metric_families(text)}

    assert families["asr_gateway_models_cached"].samples[0].value == 1
    assert families["asr_gateway_retained_futures"].samples[0].value == 0
    assert families["asr_gateway_tasks_completed"].samples[0].value == 1
    assert families["asr_gateway_process_tree_rss_bytes"].samples[0].value > 0
    counts = [
        s for s in families["asr_gateway_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["route"] == "/v1/responses"
    ]
    assert counts[0].value == 1
    assert counts[0].labels["status"] == "200"


def test_debug_memory_names_leaky_container(start_gateway):
    server = start_gateway("--leaks", "worker-futures", "--debug-endpoints")
    for _ in range(2):
        assert server.transcribe(audio_url="speech.wav").status_code == 200

    report = httpx.get(server.url + "/v1/debug/memory", timeout=60).json()

    assert report["census"]["retained_futures"] == 2
    assert report["live_objects"]["Future"] >= 2
    roots = {row["root"]: row for row in report["retention_paths"]}
    assert "gateway.leaky.workers._FUTURES" in roots
    assert roots["gateway.leaky.workers._FUTURES"]["holds"]["Future"] == 2
    assert roots["gateway.leaky.workers._FUTURES"]["holds"]["ndarray_bytes"] >= 2 * 11 * 16000 * 4


def test_debug_endpoints_off_by_default(start_gateway):
    server = start_gateway()

    response = httpx.get(server.url + "/v1/debug/memory", timeout=10)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "debug_off"


def test_bearer_auth(start_gateway):
    server = start_gateway(env={"GATEWAY_AUTH_TOKEN": TOKEN})
    server.wait_ready()

    anonymous = httpx.get(server.url + "/v1/status", timeout=10)
    wrong = httpx.get(server.url + "/v1/status", headers={"Authorization": "Bearer nope"}, timeout=10)
    right = httpx.get(server.url + "/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    health = httpx.get(server.url + "/healthz", timeout=10)

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["code"] == "unauthorized"
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert health.status_code == 200
    with pytest.raises(websockets.InvalidStatus):
        asyncio.run(close_code_after(ws_url(server, "auth"), b"\x00\x00"))


def test_tracemalloc_snapshot_round_trip(start_gateway, tmp_path):
    import tracemalloc

    server = start_gateway("--debug-endpoints")
    assert server.status()["tracemalloc_traced_bytes"] is None
    refused = httpx.get(server.url + "/v1/debug/tracemalloc/snapshot", timeout=30)

    started = httpx.post(server.url + "/v1/debug/tracemalloc/start", params={"frames": 2}, timeout=30)
    assert server.transcribe(audio_url="speech.wav").status_code == 200
    snapshot_bytes = httpx.get(server.url + "/v1/debug/tracemalloc/snapshot", timeout=60).content
    (tmp_path / "snap").write_bytes(snapshot_bytes)
    snapshot = tracemalloc.Snapshot.load(str(tmp_path / "snap"))

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_tracing"
    assert started.json()["started_now"] is True
    assert server.status()["tracemalloc_traced_bytes"] > 0
    assert snapshot.traceback_limit == 2
    assert len(snapshot.traces) > 0


def test_bearer_scheme_is_case_insensitive(start_gateway):
    server = start_gateway(env={"GATEWAY_AUTH_TOKEN": TOKEN})

    lower = httpx.get(server.url + "/v1/status", headers={"Authorization": f"bearer {TOKEN}"}, timeout=10)
    basic = httpx.get(server.url + "/v1/status", headers={"Authorization": f"Basic {TOKEN}"}, timeout=10)

    assert lower.status_code == 200
    assert basic.status_code == 401


async def second_stream_close_code(url: str) -> int:
    async with websockets.connect(url) as first:
        await first.send(PCM[:32000])
        await first.send(json.dumps({"event": "ping"}))
        assert json.loads(await first.recv())["type"] == "pong"
        code = await close_code_after(url, PCM[:32000], json.dumps({"event": "end"}))
        await first.send(json.dumps({"event": "end"}))
        final = [json.loads(m) async for m in first]
        assert final[-1]["type"] == "final"
        return code


def test_second_stream_cannot_take_over_session(start_gateway):
    server = start_gateway()

    code = asyncio.run(second_stream_close_code(ws_url(server, "owned")))

    assert code == 1008
    wait_until(lambda: server.status()["sessions_open"] == 0, timeout_s=30, message="session released")


@pytest.mark.parametrize("model", ["fsmn-vad", "paraformer-tiny\u0000"])
def test_unserved_model_names_rejected(start_gateway, model):
    server = start_gateway()

    response = server.transcribe(audio_url="speech.wav", model=model)

    assert response.status_code in (400, 404)
    assert response.json()["error"]["code"] in ("invalid_model", "model_not_found")
    assert server.status()["models_cached"] == 1


def test_too_short_audio_and_surrogates_are_400(start_gateway, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "short.wav").write_bytes((DATA / "speech.wav").read_bytes()[:100])
    server = start_gateway("--media-root", str(media))

    short = server.transcribe(audio_url=str(media / "short.wav"))
    surrogate = httpx.post(
        server.url + "/v1/responses", content=b'{"audio_url": "\\ud800"}',
        headers={"content-type": "application/json"}, timeout=30,
    )
    session_id = httpx.post(server.url + "/v1/sessions", json={}, timeout=10).json()["session_id"]
    httpx.post(server.url + f"/v1/sessions/{session_id}/chunks", content=b"\x01\x00" * 28, timeout=10)
    closed = httpx.post(server.url + f"/v1/sessions/{session_id}/close", timeout=30)

    assert short.status_code == 400
    assert short.json()["error"]["code"] == "audio_too_short"
    assert "25 ms" in short.json()["error"]["message"]
    assert surrogate.status_code == 400
    assert surrogate.json()["error"]["code"] == "invalid_audio_url"
    assert closed.status_code == 400
    assert closed.json()["error"]["code"] == "audio_too_short"
