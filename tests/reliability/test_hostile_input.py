"""Hostile and broken input to a real gateway: audio, JSON bodies, forms, paths and request bodies.

Each case must end in a 4xx with the documented error body whose message
names the value or the limit, and must leave nothing behind.
"""

from __future__ import annotations

import io
import json
import select
import socket
import time

import httpx
import numpy as np
import pytest
import soundfile

from gateway import audio
from gateway.errors import PayloadTooLargeError
from tests.conftest import DATA
from tests.reliability.conftest import (
    SPEECH_WAV,
    assert_at_rest,
    float_wav,
    pcm16_wav,
    rss_baseline,
    wav_header_claiming,
    wav_with_rate,
)

MAX_UPLOAD_BYTES = 70_000_000
MAX_DURATION_S = 600
HOUR_8KHZ_FRAMES = 8000 * 3600


def flac_bytes() -> bytes:
    samples, rate = soundfile.read(io.BytesIO(SPEECH_WAV), dtype="int16")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="FLAC")
    return buffer.getvalue()


def nan_samples(value: float) -> np.ndarray:
    samples = np.zeros(16000, dtype=np.float32)
    samples[100] = value
    return samples


AUDIO_FILES = {
    "empty.wav": b"",
    "header-only.wav": pcm16_wav(np.zeros(0)),
    "truncated-header.wav": SPEECH_WAV[:30],
    "truncated-data.wav": SPEECH_WAV[:1000],
    "lying-header.wav": wav_header_claiming(16000 * 3600 * 10),
    "not-audio.wav": b"#!/bin/sh\necho this is not audio\n" * 10,
    "random-bytes.wav": np.random.default_rng(7).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
    "speech.mp3": SPEECH_WAV,
    "speech-flac.wav": flac_bytes(),
    "nan.wav": float_wav(nan_samples(np.nan)),
    "inf.wav": float_wav(nan_samples(np.inf)),
    "huge-float.wav": float_wav(nan_samples(3e38)),
    "rate-1.wav": wav_with_rate(1),
    "rate-4000.wav": wav_with_rate(4000),
    "rate-200000.wav": wav_with_rate(200_000),
    "rate-8000.wav": pcm16_wav(np.zeros(8000), 8000),
    "rate-192000.wav": pcm16_wav(np.zeros(192_000), 192_000),
    "channels-64.wav": pcm16_wav(np.zeros(16000 * 64), 16000, channels=64),
    "channels-65.wav": pcm16_wav(np.zeros(16000 * 65), 16000, channels=65),
}

AUDIO_CASES = [
    ("empty.wav", 400, "invalid_audio", "empty"),
    ("header-only.wav", 400, "invalid_audio", "no audio samples"),
    ("truncated-header.wav", 400, "invalid_audio", "not decodable"),
    ("truncated-data.wav", 200, None, None),
    ("lying-header.wav", 200, None, None),
    ("not-audio.wav", 400, "invalid_audio", "not decodable"),
    ("random-bytes.wav", 400, "invalid_audio", "not decodable"),
    ("speech.mp3", 200, None, None),
    ("speech-flac.wav", 200, None, None),
    ("nan.wav", 400, "non_finite_audio", "NaN or infinite"),
    ("inf.wav", 400, "non_finite_audio", "NaN or infinite"),
    ("huge-float.wav", 200, None, None),
    ("rate-1.wav", 400, "unsupported_sample_rate", "1 Hz"),
    ("rate-4000.wav", 400, "unsupported_sample_rate", "8000 to 192000 Hz"),
    ("rate-200000.wav", 400, "unsupported_sample_rate", "200000 Hz"),
    ("rate-8000.wav", 200, None, None),
    ("rate-192000.wav", 200, None, None),
    ("channels-64.wav", 200, None, None),
    ("channels-65.wav", 400, "too_many_channels", "limit of 64"),
    ("hour-8khz.wav", 413, "audio_too_long", f"limit of {MAX_DURATION_S} s"),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-media")
    for name, data in AUDIO_FILES.items():
        (folder / name).write_bytes(data)
    (folder / "hour-8khz.wav").write_bytes(pcm16_wav(np.zeros(HOUR_8KHZ_FRAMES, dtype=np.int16), 8000))
    (folder / "escape.wav").symlink_to(DATA.parent.parent / "pyproject.toml")
    (folder / "escape-dir").symlink_to("/etc")
    (folder / "loop-a.wav").symlink_to(folder / "loop-b.wav")
    (folder / "loop-b.wav").symlink_to(folder / "loop-a.wav")
    (folder / "a-folder.wav").mkdir()
    return folder


@pytest.fixture(scope="module")
def gateway(module_gateway, media):
    server = module_gateway(
        "--media-root", str(media),
        "--max-upload-bytes", str(MAX_UPLOAD_BYTES),
        "--max-audio-duration-s", str(MAX_DURATION_S),
        "--upload-timeout-s", "2",
    )
    return server, rss_baseline(server)


def assert_error(response: httpx.Response, status: int, code: str | None, fragment: str | None) -> None:
    assert response.status_code == status, response.text
    if code is None:
        return
    error = response.json()["error"]
    assert error["code"] == code, error
    assert fragment in error["message"], error["message"]


# -- audio ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "status", "code", "fragment"), AUDIO_CASES)
def test_audio_file_by_path(gateway, media, name, status, code, fragment):
    server, _ = gateway

    response = server.transcribe(audio_url=str(media / name))

    assert_error(response, status, code, fragment)


@pytest.mark.parametrize(("name", "status", "code", "fragment"), [case for case in AUDIO_CASES if case[0] != "hour-8khz.wav"])
def test_audio_file_uploaded(gateway, name, status, code, fragment):
    server, _ = gateway

    response = httpx.post(
        server.url + "/v1/audio/transcriptions", files={"file": (name, AUDIO_FILES[name])}, timeout=60
    )

    assert_error(response, status, code, fragment)


def test_duration_checked_before_decoding(monkeypatch):
    data = pcm16_wav(np.zeros(8000 * 61, dtype=np.int16), 8000)

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoding started although the header already shows the audio is too long")

    monkeypatch.setattr(soundfile.SoundFile, "blocks", must_not_decode)

    with pytest.raises(PayloadTooLargeError, match="lasts 61.0 s, over the limit of 60 s"):
        audio.decode(data, max_duration_s=60)


def test_block_decoding_matches_whole_file():
    samples, rate = soundfile.read(io.BytesIO(SPEECH_WAV), dtype="float32")
    stereo = pcm16_wav(np.repeat((samples * 32767).astype(np.int16), 2), rate, channels=2)

    decoded = audio.decode(stereo, max_duration_s=60)

    assert decoded.dtype == np.float32
    assert decoded.size == samples.size
    assert np.max(np.abs(decoded - samples)) < 1e-3


@pytest.mark.parametrize(
    ("audio_url", "status", "code", "fragment"),
    [
        ("../pyproject.toml", 403, "path_not_allowed", "'..'"),
        ("speech.wav/../../pyproject.toml", 403, "path_not_allowed", "'..'"),
        ("/etc/passwd", 403, "path_not_allowed", "outside the media roots"),
        ("//etc/passwd", 403, "path_not_allowed", "outside the media roots"),
        ("file:///etc/passwd", 403, "url_not_allowed", "scheme 'file'"),
        ("FILE:///etc/passwd", 403, "url_not_allowed", "scheme 'file'"),
        ("file:/etc/passwd", 404, "audio_not_found", "not found"),
        ("%2e%2e/pyproject.toml", 404, "audio_not_found", "not found"),
        ("a" * 300 + ".wav", 400, "invalid_audio_url", "File name too long"),
        ("x" * 5000, 400, "invalid_audio_url", "limit of 4096"),
        ("   ", 400, "invalid_audio_url", "empty"),
        ("a\x00b", 400, "invalid_audio_url", "NUL"),
        ("missing.wav", 404, "audio_not_found", "not found"),
    ],
)
def test_hostile_audio_paths(gateway, audio_url, status, code, fragment):
    server, _ = gateway

    assert_error(server.transcribe(audio_url=audio_url), status, code, fragment)


@pytest.mark.parametrize(
    ("name", "status", "code", "fragment"),
    [
        ("escape.wav", 403, "path_not_allowed", "outside the media roots"),
        ("escape-dir/passwd", 403, "path_not_allowed", "outside the media roots"),
        ("loop-a.wav", 400, "invalid_audio_url", "not a usable path"),
        ("a-folder.wav", 404, "audio_not_found", "not found"),
    ],
)
def test_hostile_links_and_folders(gateway, media, name, status, code, fragment):
    server, _ = gateway

    assert_error(server.transcribe(audio_url=str(media / name)), status, code, fragment)


# -- JSON bodies ----------------------------------------------------------------


def post_json(server, path: str, body) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(server.url + path, content=body, headers={"content-type": "application/json"}, timeout=60)
    return httpx.post(server.url + path, json=body, timeout=60)


RESPONSES_BODIES = [
    ({}, 400, "invalid_request", "audio_url"),
    (None, 400, "invalid_request", "body"),
    ([], 400, "invalid_request", "body"),
    ("null", 400, "invalid_request", "body"),
    ('{"audio_url": "speech.wav",}', 400, "invalid_request", "JSON"),
    ('{"audio_url": "speech.wav", "audio_url": 5}', 400, "invalid_request", "audio_url"),
    ({"audio_url": 5}, 400, "invalid_request", "audio_url"),
    ({"audio_url": {"path": "speech.wav"}}, 400, "invalid_request", "audio_url"),
    ({"audio_url": True}, 400, "invalid_request", "audio_url"),
    ({"audio_url": "speech.wav", "model": 7}, 400, "invalid_request", "model"),
    ({"audio_url": "speech.wav", "model": ""}, 400, "invalid_model", "not a model name"),
    ({"audio_url": "speech.wav", "model": "m" * 100_000}, 400, "invalid_model", "not a model name"),
    ({"audio_url": "speech.wav", "model": "../../etc"}, 400, "invalid_model", "not a model name"),
    ({"audio_url": "speech.wav", "language": ["en"]}, 400, "invalid_request", "language"),
    ({"audio_url": "speech.wav", "language": "x" * 65}, 400, "invalid_request", "language"),
    ({"audio_url": "speech.wav", "hotwords": {"a": 1}}, 400, "invalid_request", "hotwords"),
    ({"audio_url": "speech.wav", "hotwords": [["nested"]]}, 400, "invalid_request", "hotwords"),
    ({"audio_url": "speech.wav", "hotwords": ["w"] * 5000}, 400, "too_many_hotwords", "limit of 1000"),
    ({"audio_url": "speech.wav", "hotwords": " ".join(["w"] * 5000)}, 400, "too_many_hotwords", "limit of 1000"),
    ({"audio_url": "speech.wav", "hotwords": ["x" * 20_000]}, 400, "hotwords_too_long", "10000 characters"),
    ({"audio_url": "speech.wav", "sample_rate": -1}, 400, "invalid_request", "greater than or equal to 8000"),
    ({"audio_url": "speech.wav", "sample_rate": 8000}, 400, "sample_rate_mismatch", "16000 Hz"),
    ({"audio_url": "speech.wav", "sample_rate": 10**30}, 400, "invalid_request", "less than or equal to 192000"),
    ({"audio_url": "speech.wav", "sample_rate": 16000.0}, 400, "invalid_request", "sample_rate"),
    ({"audio_url": "speech.wav", "sample_rate": True}, 400, "invalid_request", "sample_rate"),
    ({"audio_url": "speech.wav", "session_id": "s" * 129}, 400, "invalid_request", "session_id"),
    ({"audio_url": "speech.wav", "session_id": 12}, 400, "invalid_request", "session_id"),
    ({"audio_url": "speech.wav", "extra": 1}, 400, "invalid_request", "extra"),
    ({"audio_url": "x" * 2_000_000}, 413, "payload_too_large", "limit of 1048576 bytes"),
    ("[" * 100_000 + "]" * 100_000, 400, "invalid_request", "error parsing the body"),
    ('{"audio_url": "speech.wav", "hotwords": ' + "[" * 50_000 + "]" * 50_000 + "}", 400, "invalid_request", "error parsing the body"),
    (b"\xff\xfe\x00garbage", 400, "invalid_request", "JSON"),
]


@pytest.mark.parametrize(("body", "status", "code", "fragment"), RESPONSES_BODIES)
def test_hostile_responses_bodies(gateway, body, status, code, fragment):
    server, _ = gateway

    assert_error(post_json(server, "/v1/responses", body), status, code, fragment)


def test_thousand_hotwords_accepted(gateway):
    server, _ = gateway

    response = server.transcribe(audio_url="speech.wav", hotwords=[f"w{i}" for i in range(1000)])

    assert response.status_code == 200, response.text


SESSION_BODIES = [
    ({"session_id": ""}, 400, "invalid_session_id", "1 to 128 characters"),
    ({"session_id": "s" * 129}, 400, "invalid_session_id", "1 to 128 characters"),
    ({"session_id": "../../etc"}, 400, "invalid_session_id", "'../../etc'"),
    ({"session_id": "a b"}, 400, "invalid_session_id", "'a b'"),
    ({"session_id": "ü"}, 400, "invalid_session_id", "1 to 128 characters"),
    ({"session_id": "a\nb"}, 400, "invalid_session_id", "1 to 128 characters"),
    ({"session_id": 5}, 400, "invalid_request", "session_id"),
    ({"sample_rate": 0}, 400, "invalid_sample_rate", "8000 to 192000 Hz"),
    ({"sample_rate": 10**12}, 400, "invalid_sample_rate", "8000 to 192000 Hz"),
    ({"sample_rate": "16000"}, 400, "invalid_request", "sample_rate"),
    ({"sample_rate": None}, 400, "invalid_request", "sample_rate"),
    ({"model": "no-such-model"}, 404, "model_not_found", "no-such-model"),
    ({"model": ["paraformer-tiny"]}, 400, "invalid_request", "model"),
    ({"unknown": 1}, 400, "invalid_request", "unknown"),
    ([1, 2], 400, "invalid_request", "body"),
    ("[" * 100_000 + "]" * 100_000, 400, "invalid_request", "error parsing the body"),
]


@pytest.mark.parametrize(("body", "status", "code", "fragment"), SESSION_BODIES)
def test_hostile_session_bodies(gateway, body, status, code, fragment):
    server, _ = gateway

    assert_error(post_json(server, "/v1/sessions", body), status, code, fragment)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/v1/sessions/" + "s" * 129 + "/chunks", 400, "invalid_session_id"),
        ("POST", "/v1/sessions/a%20b/chunks", 400, "invalid_session_id"),
        ("POST", "/v1/sessions/..%2F..%2Fetc/chunks", 404, "not_found"),
        ("POST", "/v1/sessions/%C3%BC/close", 400, "invalid_session_id"),
        ("DELETE", "/v1/sessions/never-opened", 404, "session_not_found"),
        ("GET", "/v1/sessions/x/chunks", 405, "method_not_allowed"),
        ("GET", "/no/such/path", 404, "not_found"),
        ("PUT", "/v1/responses", 405, "method_not_allowed"),
    ],
)
def test_hostile_paths_and_methods(gateway, method, path, status, code):
    server, _ = gateway

    response = httpx.request(method, server.url + path, content=b"\x00\x00", timeout=30)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


# -- forms ----------------------------------------------------------------------


FORM_CASES = [
    ({}, None, 400, "invalid_request", "file"),
    ({"file": "not a file"}, None, 400, "invalid_request", "file"),
    ({"response_format": "xml"}, SPEECH_WAV, 400, "invalid_response_format", "'xml'"),
    ({"response_format": "x" * 100_000}, SPEECH_WAV, 400, "invalid_response_format", "json, text, verbose_json"),
    ({"language": "x" * 65}, SPEECH_WAV, 400, "invalid_request", "language"),
    ({"prompt": "x" * 10_001}, SPEECH_WAV, 400, "invalid_request", "prompt"),
    ({"prompt": " ".join(["w"] * 1001)}, SPEECH_WAV, 400, "too_many_hotwords", "limit of 1000"),
    ({"model": "m" * 100_000}, SPEECH_WAV, 200, None, None),
    ({"model": "whisper-1", "response_format": "text"}, SPEECH_WAV, 200, None, None),
]


@pytest.mark.parametrize(("fields", "file", "status", "code", "fragment"), FORM_CASES)
def test_hostile_forms(gateway, fields, file, status, code, fragment):
    server, _ = gateway
    files = {"file": ("speech.wav", file)} if file is not None else None

    response = httpx.post(server.url + "/v1/audio/transcriptions", data=fields, files=files, timeout=60)

    assert_error(response, status, code, fragment)


def test_form_with_many_fields(gateway):
    server, _ = gateway
    fields = [(f"field{i}", "v") for i in range(5000)]

    response = httpx.post(
        server.url + "/v1/audio/transcriptions", data=dict(fields), files={"file": ("speech.wav", SPEECH_WAV)}, timeout=60
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"


# -- request bodies over the limit, and slow ones ---------------------------------


def raw_exchange(
    server, head: bytes, body_parts: list[bytes] = (), read_timeout_s: float = 30.0, pause_s: float = 0.0
) -> bytes:
    """Send ``head`` and the body parts on one raw connection, ``pause_s`` apart; return what came back."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout_s) as connection:
        connection.sendall(head)
        for part in body_parts:
            time.sleep(pause_s)
            # Stop sending once the gateway has responded: more data after its close would make it reset the connection.
            if select.select([connection], [], [], 0)[0]:
                break
            try:
                connection.sendall(part)
            except OSError:
                break
        received = b""
        while True:
            try:
                block = connection.recv(65536)
            except OSError:
                break
            if not block:
                break
            received += block
        return received


def status_line(reply: bytes) -> str:
    return reply.split(b"\r\n", 1)[0].decode("latin-1")


def test_declared_oversized_upload_rejected_before_body(gateway):
    server, _ = gateway
    head = (
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {10 * MAX_UPLOAD_BYTES}\r\n\r\n"
    ).encode()

    reply = raw_exchange(server, head)

    assert status_line(reply) == "HTTP/1.1 413 Request Entity Too Large", reply[:300]
    assert b"payload_too_large" in reply
    assert b"--max-upload-bytes" in reply


def test_streamed_oversized_upload_cut_off(gateway):
    server, _ = gateway
    head = (
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    part = b"\x00" * (1 << 20)
    chunk = f"{len(part):x}\r\n".encode() + part + b"\r\n"
    chunks = [b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"]
    chunks = [f"{len(chunks[0]):x}\r\n".encode() + chunks[0] + b"\r\n"] + [chunk] * 80

    reply = raw_exchange(server, head, chunks)

    assert status_line(reply) == "HTTP/1.1 413 Request Entity Too Large", reply[:300]
    assert f"limit of {MAX_UPLOAD_BYTES + 65536} bytes".encode() in reply


def test_slow_body_times_out(gateway):
    server, _ = gateway
    body = json.dumps({"audio_url": "speech.wav"}).encode()
    head = (
        f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    # Half the body, then nothing: the upload timeout (2 s here) ends the wait.
    reply = raw_exchange(server, head, [body[: len(body) // 2]])

    assert status_line(reply) == "HTTP/1.1 408 Request Timeout", reply[:300]
    assert b"upload_timeout" in reply
    assert b"--upload-timeout-s" in reply


def test_trickled_upload_times_out(gateway):
    server, _ = gateway
    head = (
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    opening = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
    # One byte every 50 ms for at most 10 s: the body keeps moving but never completes within the 2 s timeout.
    trickle = [SPEECH_WAV[index:index + 1] for index in range(200)]

    reply = raw_exchange(server, head, [opening, *trickle], pause_s=0.05)

    assert status_line(reply) == "HTTP/1.1 408 Request Timeout", reply[:300]


def test_hostile_input_leaves_nothing_behind(gateway):
    server, baseline = gateway

    assert_at_rest(server, baseline, "hostile input (audio, JSON, forms, bodies)")
