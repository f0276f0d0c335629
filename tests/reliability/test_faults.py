"""Injected faults: broken models, inference that raises or hangs, and clients that vanish.

Faults come from real broken inputs (a corrupt or missing model.pt) or from
the gateway's test-only failpoints (files in GATEWAY_FAILPOINTS_DIR). After
each case the gateway must be at rest: no worker busy or stuck, no queue,
no session, models within the bound and RSS near its post-warm-up level.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import socket

import httpx
import psutil
import pytest

from tests.conftest import DATA
from tests.reliability.conftest import SPEECH_WAV, assert_at_rest, rss_baseline, wait_until
from tests.servers import GatewayServer

WAIT_S = 60.0


@pytest.fixture(scope="module")
def broken_models_dir(models_dir, tmp_path_factory):
    """A models folder with the tiny preset, the VAD, a model with corrupt weights and one without weights."""
    folder = tmp_path_factory.mktemp("broken-models")
    for name in ("fsmn-vad", "paraformer-tiny"):
        shutil.copytree(models_dir / name, folder / name)
    corrupt = folder / "paraformer-corrupt"
    shutil.copytree(models_dir / "paraformer-tiny", corrupt)
    (corrupt / "model.pt").write_bytes(b"this is not a torch checkpoint" * 100)
    truncated = folder / "paraformer-truncated"
    shutil.copytree(models_dir / "paraformer-tiny", truncated)
    weights = (models_dir / "paraformer-tiny" / "model.pt").read_bytes()
    (truncated / "model.pt").write_bytes(weights[: len(weights) // 2])
    missing = folder / "paraformer-missing"
    shutil.copytree(models_dir / "paraformer-tiny", missing)
    (missing / "model.pt").unlink()
    return folder


@pytest.fixture
def failpoints(tmp_path):
    folder = tmp_path / "failpoints"
    folder.mkdir()
    return folder


@pytest.fixture
def start_with_failpoints(start_gateway, failpoints):
    def start(*extra: str) -> GatewayServer:
        return start_gateway(*extra, env={"GATEWAY_FAILPOINTS_DIR": str(failpoints)})

    return start


def hung_markers(failpoints) -> list:
    return sorted(failpoints.glob("hung-*"))


def release_hung(failpoints) -> None:
    for marker in hung_markers(failpoints):
        marker.unlink()


# -- model loads ------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_gateway(broken_models_dir, tmp_path_factory):
    server = GatewayServer(broken_models_dir, DATA, tmp_path_factory.mktemp("logs") / "gateway.log", [], {})
    server.start()
    try:
        server.wait_ready()
        yield server, rss_baseline(server)
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["paraformer-corrupt", "paraformer-truncated"])
def test_failed_model_load_caches_nothing(broken_gateway, name):
    server, baseline = broken_gateway
    loads_before = server.status()["model_loads_total"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as clients:
        broken = list(clients.map(lambda _: server.transcribe(audio_url="speech.wav", model=name), range(2)))
    status = server.status()
    good = server.transcribe(audio_url="speech.wav")
    again = server.transcribe(audio_url="speech.wav", model=name)

    for response in broken + [again]:
        assert response.status_code == 500, response.text
        error = response.json()["error"]
        assert error["code"] == "model_load_failed"
        assert name in error["message"]
        assert "model.pt" in error["message"]
    assert status["models_cached"] == 1
    assert status["model_loads_total"] == loads_before
    assert status["models_loading"] == 0
    assert name not in status["cached_identities"]
    assert good.status_code == 200, good.text
    assert_at_rest(server, baseline, f"model load fails ({name})")


def test_missing_weights_is_not_found(broken_gateway):
    server, _ = broken_gateway
    loads_before = server.status()["model_loads_total"]

    response = server.transcribe(audio_url="speech.wav", model="paraformer-missing")

    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert "config.yaml and model.pt" in error["message"]
    assert server.status()["model_loads_total"] == loads_before


def test_broken_default_model_degrades(broken_models_dir, tmp_path):
    server = GatewayServer(broken_models_dir, DATA, tmp_path / "gateway.log", ["--model", "paraformer-corrupt"], {})
    server.start()
    try:
        wait_until(lambda: bool(status_or_empty(server).get("reasons")), message="default model failure reported")

        status = server.status()
        readiness = httpx.get(server.url + "/readyz", timeout=10)
        request = server.transcribe(audio_url="speech.wav")
        other = server.transcribe(audio_url="speech.wav", model="paraformer-tiny")

        assert status["status"] == "DEGRADED"
        assert "default model failed to load" in status["reasons"][0]
        assert status["models_cached"] == 0
        assert readiness.status_code == 503
        # The default model's identity resolved, so each request tries the load again and reports its error.
        assert request.status_code == 500
        assert request.json()["error"]["code"] == "model_load_failed"
        assert other.status_code == 200, other.text
    finally:
        server.stop()


def status_or_empty(server: GatewayServer) -> dict:
    try:
        return server.status()
    except httpx.HTTPError:
        return {}


# -- inference that raises or hangs ---------------------------------------------------


def test_inference_error_is_500_and_pool_recovers(start_with_failpoints, failpoints):
    server = start_with_failpoints()
    baseline = rss_baseline(server)
    (failpoints / "raise").touch()

    failed = [server.transcribe(audio_url="speech.wav") for _ in range(3)]
    (failpoints / "raise").unlink()
    recovered = server.transcribe(audio_url="speech.wav")

    for response in failed:
        assert response.status_code == 500, response.text
        assert response.json()["error"]["code"] == "internal_error"
        assert "the gateway logged the traceback" in response.json()["error"]["message"]
    assert recovered.status_code == 200, recovered.text
    status = assert_at_rest(server, baseline, "inference raises")
    assert status["requests_failed_total"] == 3
    assert "FailpointError" in server.log_tail(100_000)


def test_hung_inference_times_out_and_degrades(start_with_failpoints, failpoints):
    server = start_with_failpoints("--workers", "2", "--task-timeout-s", "1", "--stuck-after-timeouts", "2")
    baseline = rss_baseline(server)
    (failpoints / "hang").touch()

    hung = server.transcribe(audio_url="speech.wav")
    wait_until(lambda: server.status()["workers_stuck"] == 1, message="hung task counted as stuck")
    degraded = server.status()
    served = [server.transcribe(audio_url="speech.wav") for _ in range(3)]
    during = server.status()
    release_hung(failpoints)
    wait_until(lambda: server.status()["workers_active"] == 0, message="hung worker returned")
    recovered = server.status()

    assert hung.status_code == 504, hung.text
    assert hung.json()["error"]["code"] == "task_timeout"
    assert "--task-timeout-s" in hung.json()["error"]["message"]
    assert degraded["status"] == "DEGRADED"
    assert "1 worker(s) stuck" in degraded["reasons"][0]
    assert degraded["workers_active"] == 1
    assert degraded["requests_timed_out_total"] == 1
    assert [response.status_code for response in served] == [200, 200, 200]
    assert during["workers_stuck"] == 1
    assert recovered["status"] == "OK"
    assert recovered["workers_stuck"] == 0
    assert_at_rest(server, baseline, "inference hangs past the timeout")


def test_all_workers_hung_rejects_fast(start_with_failpoints, failpoints):
    server = start_with_failpoints("--workers", "1", "--max-queue", "1", "--task-timeout-s", "1")
    baseline = rss_baseline(server)
    (failpoints / "hang").touch()

    hung = server.transcribe(audio_url="speech.wav")
    queued_then_timed_out = server.transcribe(audio_url="speech.wav")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as clients:
        waiting = clients.submit(server.transcribe, audio_url="speech.wav")
        wait_until(lambda: server.status()["queue_depth"] == 1, message="one request queued behind the hung worker")
        rejected = server.transcribe(audio_url="speech.wav")
        waited = waiting.result(timeout=WAIT_S)
    release_hung(failpoints)

    assert hung.status_code == 504
    assert queued_then_timed_out.status_code == 504
    assert waited.status_code == 504
    assert rejected.status_code == 503, rejected.text
    assert rejected.json()["error"]["code"] == "overloaded"
    assert int(rejected.headers["Retry-After"]) >= 1
    assert_at_rest(server, baseline, "every worker hung, queue full")


# -- clients that vanish -------------------------------------------------------------------


def open_fds(server: GatewayServer) -> int:
    return psutil.Process(server.process.pid).num_fds()


def send(server: GatewayServer, payload: bytes) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    connection.sendall(payload)
    return connection


def vanish(connection: socket.socket) -> None:
    """Reset the connection (RST, not FIN) without reading the response, as a crashed client would."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    connection.close()


def send_and_vanish(server: GatewayServer, payload: bytes) -> None:
    vanish(send(server, payload))


def multipart_head(length: int) -> bytes:
    return (
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_client_vanishing_mid_upload(start_gateway):
    server = start_gateway()
    baseline = rss_baseline(server)
    fds_before = open_fds(server)
    opening = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"

    for _ in range(20):
        send_and_vanish(server, multipart_head(10 * len(SPEECH_WAV)) + opening + SPEECH_WAV)

    wait_until(lambda: open_fds(server) <= fds_before, message="upload connections and temporary files closed")
    assert_at_rest(server, baseline, "client vanishes mid-upload (20 times)")
    assert server.transcribe(audio_url="speech.wav").status_code == 200


def json_request(body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def test_client_vanishing_while_queued_frees_slot(start_with_failpoints, failpoints):
    server = start_with_failpoints("--workers", "1", "--max-queue", "2")
    baseline = rss_baseline(server)
    completed_before = server.status()["requests_completed_total"]
    (failpoints / "hang").touch()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as clients:
        running = clients.submit(server.transcribe, audio_url="speech.wav")
        wait_until(lambda: len(hung_markers(failpoints)) == 1, message="first task hung on the only worker")
        queued = [send(server, json_request({"audio_url": "speech.wav"})) for _ in range(2)]
        wait_until(lambda: server.status()["queue_depth"] == 2, message="two requests queued")
        for connection in queued:
            vanish(connection)
        wait_until(lambda: server.status()["queue_depth"] == 0, message="queue slots of vanished clients released")
        while_hung = server.status()
        release_hung(failpoints)
        assert running.result(timeout=WAIT_S).status_code == 200

    status = assert_at_rest(server, baseline, "client vanishes while queued (2 clients)")
    assert while_hung["workers_active"] == 1
    assert status["requests_completed_total"] == completed_before + 1
    assert "client disconnected before the response" in server.log_tail(100_000)


def test_client_vanishing_while_running(start_with_failpoints, failpoints):
    server = start_with_failpoints("--workers", "1")
    baseline = rss_baseline(server)
    (failpoints / "hang").touch()

    connection = send(server, json_request({"audio_url": "speech.wav"}))
    wait_until(lambda: len(hung_markers(failpoints)) == 1, message="task of the client running")
    vanish(connection)
    release_hung(failpoints)

    assert_at_rest(server, baseline, "client vanishes while its task runs")
    assert server.transcribe(audio_url="speech.wav").status_code == 200


def websocket_handshake(session_id: str) -> bytes:
    return (
        f"GET /v1/sessions/{session_id}/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def masked_binary_frame(payload: bytes) -> bytes:
    """One client-to-server WebSocket binary frame (mask key 0, so the payload goes as is)."""
    length = len(payload)
    if length < 126:
        header = bytes([0x82, 0x80 | length])
    elif length < 65536:
        header = bytes([0x82, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload


def test_client_vanishing_mid_stream(start_gateway):
    server = start_gateway("--stream-partial-interval-s", "100")
    baseline = rss_baseline(server)
    pcm = SPEECH_WAV[44:44 + 64000]

    for index in range(10):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(websocket_handshake(f"vanish-{index}"))
            assert b" 101 " in connection.recv(4096).split(b"\r\n", 1)[0]
            for start in range(0, len(pcm), 16000):
                connection.sendall(masked_binary_frame(pcm[start:start + 16000]))
            wait_until(lambda: server.status()["sessions_buffered_bytes"] == len(pcm), message="chunks buffered")
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    wait_until(lambda: server.status()["sessions_open"] == 0, message="sessions of vanished streams released")
    assert_at_rest(server, baseline, "client vanishes mid-stream (10 streams)")
    assert "client disconnected" in server.log_tail(100_000)


def test_http_session_client_vanishing_on_close(start_with_failpoints, failpoints):
    server = start_with_failpoints("--workers", "1")
    baseline = rss_baseline(server)
    opened = httpx.post(server.url + "/v1/sessions", json={"session_id": "vanish-close"}, timeout=10)
    assert opened.status_code == 201
    appended = httpx.post(server.url + "/v1/sessions/vanish-close/chunks", content=SPEECH_WAV[44:64044], timeout=10)
    assert appended.status_code == 200
    (failpoints / "hang").touch()

    connection = send(server, b"POST /v1/sessions/vanish-close/close HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    wait_until(lambda: len(hung_markers(failpoints)) == 1, message="close task running")
    vanish(connection)
    release_hung(failpoints)

    assert_at_rest(server, baseline, "client vanishes while its session closes")


def test_failpoints_off_without_environment(start_gateway, tmp_path):
    assert "GATEWAY_FAILPOINTS_DIR" not in os.environ
    server = start_gateway()
    for name in ("hang", "raise", "hold"):
        (tmp_path / name).touch()

    response = server.transcribe(audio_url="speech.wav", hotwords=["hang", "raise", "hold"])

    assert response.status_code == 200, response.text
    assert "Test failpoints enabled" not in server.log_tail(100_000)
