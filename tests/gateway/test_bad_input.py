"""Bad input to a real gateway: each case is a 4xx with the documented error body."""

from __future__ import annotations

import io
import wave

import httpx
import numpy as np
import pytest

from tests.conftest import DATA
from tests.servers import GatewayServer


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    (folder / "empty.wav").write_bytes(wav_bytes(np.zeros(0)))
    (folder / "zero-bytes.wav").write_bytes(b"")
    (folder / "not-audio.wav").write_bytes(b"#!/bin/sh\necho this is not audio\n" * 10)
    (folder / "truncated.wav").write_bytes((DATA / "speech.wav").read_bytes()[:30])
    (folder / "big.wav").write_bytes(wav_bytes(np.zeros(16000 * 15)))
    (folder / "escape.wav").symlink_to(DATA.parent.parent / "pyproject.toml")
    return folder


@pytest.fixture(scope="module")
def server(models_dir, media, tmp_path_factory):
    gateway = GatewayServer(
        models_dir=models_dir,
        media_root=DATA,
        log_path=tmp_path_factory.mktemp("logs") / "gateway.log",
        extra_args=["--media-root", str(media), "--max-upload-bytes", "400000"],
        env={},
    )
    gateway.start()
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


def post(server: GatewayServer, body) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(server.url + "/v1/responses", content=body, headers={"content-type": "application/json"}, timeout=60)
    return httpx.post(server.url + "/v1/responses", json=body, timeout=60)


def assert_error(response: httpx.Response, status: int, code: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    for fragment in fragments:
        assert fragment in error["message"], error["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "audio_url"),
        ({"audio_url": 5}, "audio_url"),
        ({"audio_url": None}, "audio_url"),
        ({"audio_url": ["speech.wav"]}, "audio_url"),
        ({"audio_url": "speech.wav", "sample_rate": "16000"}, "sample_rate"),
        ({"audio_url": "speech.wav", "hotwords": [1, 2]}, "hotwords"),
        ({"audio_url": "speech.wav", "unknown_field": 1}, "unknown_field"),
        ({"audio_url": "speech.wav", "language": "x" * 1000}, "language"),
        ("not json at all", "body"),
        ("[1, 2, 3]", "body"),
        ("", "body"),
    ],
)
def test_invalid_body_is_400(server, body, fragment):
    assert_error(post(server, body), 400, "invalid_request", fragment)


@pytest.mark.parametrize(
    ("audio_url", "status", "code"),
    [
        ("../pyproject.toml", 403, "path_not_allowed"),
        ("/etc/passwd", 403, "path_not_allowed"),
        ("file:///etc/passwd", 403, "url_not_allowed"),
        ("http://127.0.0.1:1/a.wav", 403, "url_not_allowed"),
        ("", 400, "invalid_audio_url"),
        ("a\x00b", 400, "invalid_audio_url"),
        ("x" * 5000, 400, "invalid_audio_url"),
        ("missing.wav", 404, "audio_not_found"),
    ],
)
def test_bad_audio_url(server, audio_url, status, code):
    assert_error(post(server, {"audio_url": audio_url}), status, code)


def test_symlink_escape_rejected(server, media):
    assert_error(post(server, {"audio_url": str(media / "escape.wav")}), 403, "path_not_allowed", "outside")


@pytest.mark.parametrize(
    ("name", "status", "code", "fragment"),
    [
        ("empty.wav", 400, "invalid_audio", "no audio samples"),
        ("zero-bytes.wav", 400, "invalid_audio", "empty"),
        ("not-audio.wav", 400, "invalid_audio", "not decodable"),
        ("truncated.wav", 400, "invalid_audio", "WAV"),
        ("big.wav", 413, "payload_too_large", "400000"),
    ],
)
def test_bad_audio_files(server, media, name, status, code, fragment):
    assert_error(post(server, {"audio_url": str(media / name)}), status, code, fragment)


def test_sample_rate_mismatch(server):
    assert_error(post(server, {"audio_url": "speech.wav", "sample_rate": 8000}), 400, "sample_rate_mismatch", "16000")


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [("no-such-model", 404, "model_not_found"), ("../paraformer-tiny", 400, "invalid_model"), ("/tmp", 400, "invalid_model")],
)
def test_bad_model_name(server, model, status, code):
    assert_error(post(server, {"audio_url": "speech.wav", "model": model}), status, code)


def test_too_many_hotwords(server):
    assert_error(post(server, {"audio_url": "speech.wav", "hotwords": ["w"] * 1001}), 400, "too_many_hotwords", "1000")


def test_bad_input_leaves_nothing_behind(server):
    status = server.status()

    assert status["models_cached"] == 1
    assert status["workers_active"] == 0
    assert status["queue_depth"] == 0
    assert status["sessions_open"] == 0


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/sessions", {"session_id": "bad id"}, 400, "invalid_session_id"),
        ("/v1/sessions", {"sample_rate": 0}, 400, "invalid_sample_rate"),
        ("/v1/sessions", {"sample_rate": "16k"}, 400, "invalid_request"),
        ("/v1/sessions/unknown/close", None, 404, "session_not_found"),
    ],
)
def test_bad_session_requests(server, path, body, status, code):
    response = httpx.post(server.url + path, json=body, timeout=10)
    assert_error(response, status, code)


def test_chunk_for_unknown_session(server):
    response = httpx.post(server.url + "/v1/sessions/nope/chunks", content=b"\x00\x00", timeout=10)
    assert_error(response, 404, "session_not_found")


def test_odd_chunk_rejected(server):
    session_id = httpx.post(server.url + "/v1/sessions", json={}, timeout=10).json()["session_id"]
    response = httpx.post(server.url + f"/v1/sessions/{session_id}/chunks", content=b"\x00", timeout=10)
    assert_error(response, 400, "invalid_chunk", "even byte count")
    assert httpx.delete(server.url + f"/v1/sessions/{session_id}", timeout=10).status_code == 204


def test_oversized_chunk_rejected(server):
    session_id = httpx.post(server.url + "/v1/sessions", json={}, timeout=10).json()["session_id"]
    response = httpx.post(server.url + f"/v1/sessions/{session_id}/chunks", content=b"\x00" * 400002, timeout=10)
    assert_error(response, 413, "payload_too_large", "400000")
    assert httpx.delete(server.url + f"/v1/sessions/{session_id}", timeout=10).status_code == 204


def test_empty_session_close_is_400(server):
    session_id = httpx.post(server.url + "/v1/sessions", json={}, timeout=10).json()["session_id"]
    response = httpx.post(server.url + f"/v1/sessions/{session_id}/close", timeout=10)
    assert_error(response, 400, "empty_session")
