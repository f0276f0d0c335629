"""Integration tests: a real uvicorn gateway with real FunASR models on loopback."""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATA, TINY_COPIES

WAIT_S = 60.0
SPEECH = json.loads((DATA / "speech.json").read_text())


def wait_until(predicate, timeout_s: float = WAIT_S, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{message} not reached within {timeout_s} s")


def overlaps(segment: dict, interval: list[int]) -> bool:
    return segment["start_ms"] < interval[1] and interval[0] < segment["end_ms"]


def test_transcription_segments_match_known_speech(start_gateway):
    server = start_gateway()

    response = server.transcribe(audio_url="speech.wav", hotwords=["fox"], language="en")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["duration_ms"] == pytest.approx(11175, abs=5)
    assert body["model"]["name"] == "paraformer-tiny"
    assert "meaningless" in body["model"]["note"]
    for interval in SPEECH["speech_ms"]:
        assert any(overlaps(segment, interval) for segment in body["segments"]), (interval, body["segments"])
    for segment in body["segments"]:
        assert 0 <= segment["start_ms"] < segment["end_ms"] <= body["duration_ms"]


def test_status_reports_fixed_figures(start_gateway):
    server = start_gateway()

    status = server.status()

    assert status["status"] == "OK"
    assert status["leaks"] == []
    assert status["retained_futures"] == 0
    assert status["models_cache_limit"] == 3
    assert status["models_cached"] == 1
    assert status["rss_bytes"] > 50 * 2**20
    assert f"paraformer-tiny-copy{TINY_COPIES}" in status["models_available"]


def hold(failpoints: Path) -> None:
    (failpoints / "hold").touch()


def release(failpoints: Path) -> None:
    (failpoints / "hold").unlink()


def entered(failpoints: Path) -> int:
    return len(list(failpoints.glob("entered-*")))


def test_status_answers_while_workers_busy(start_gateway, tmp_path):
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    server = start_gateway("--workers", "2", env={"GATEWAY_FAILPOINTS_DIR": str(failpoints)})
    hold(failpoints)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as clients:
        calls = [clients.submit(server.transcribe, audio_url="speech.wav") for _ in range(2)]
        wait_until(lambda: entered(failpoints) == 2, message="both workers held")

        statuses = [server.status(timeout_s=5.0) for _ in range(20)]

        release(failpoints)
        results = [call.result(timeout=WAIT_S) for call in calls]

    assert all(status["workers_active"] == 2 for status in statuses)
    assert [result.status_code for result in results] == [200, 200]
    wait_until(lambda: server.status()["workers_active"] == 0, message="workers idle")


def test_leaky_pool_blocks_status(start_gateway, tmp_path):
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    server = start_gateway("--leaks", "worker-futures", env={"GATEWAY_FAILPOINTS_DIR": str(failpoints)})
    hold(failpoints)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as clients:
        call = clients.submit(server.transcribe, audio_url="speech.wav")
        wait_until(lambda: entered(failpoints) == 1, message="worker held")

        # The loop waits on future.result() until the task is released, so
        # the status call cannot be answered, however long it waits.
        with pytest.raises(httpx.TimeoutException):
            server.status(timeout_s=3.0)

        release(failpoints)
        assert call.result(timeout=WAIT_S).status_code == 200

    status = server.status()
    assert status["retained_futures"] == 1
    assert status["leaks"] == ["worker-futures"]


def model_names() -> list[str]:
    return ["paraformer-tiny"] + [f"paraformer-tiny-copy{i}" for i in range(1, TINY_COPIES + 1)]


@pytest.mark.parametrize(("leaks", "expected_cached"), [("none", 3), ("model-cache", 1 + 2 * (TINY_COPIES + 1))])
def test_cache_size_per_option_combination(start_gateway, leaks, expected_cached):
    server = start_gateway("--leaks", leaks, "--cache-max-models", "3")

    for round_index in range(2):
        for name in model_names():
            response = server.transcribe(audio_url="speech.wav", model=name, hotwords=[f"w{round_index}-{name}"])
            assert response.status_code == 200, response.text

    assert server.status()["models_cached"] == expected_cached


@pytest.mark.parametrize(("leaks", "expected_open"), [("none", 0), ("session-buffers", 3)])
def test_abandoned_sessions(start_gateway, leaks, expected_open):
    server = start_gateway("--leaks", leaks, "--session-ttl-s", "1", "--sweep-interval-s", "0.2")
    chunk = (DATA / "speech.wav").read_bytes()[44:44 + 32000]

    for index in range(3):
        opened = httpx.post(server.url + "/v1/sessions", json={"session_id": f"abandoned-{index}"}, timeout=10)
        assert opened.status_code == 201, opened.text
        appended = httpx.post(server.url + f"/v1/sessions/abandoned-{index}/chunks", content=chunk, timeout=10)
        assert appended.status_code == 200, appended.text
    assert server.status()["sessions_buffered_bytes"] == 3 * len(chunk)

    if expected_open == 0:
        wait_until(lambda: server.status()["sessions_open"] == 0, timeout_s=30, message="sessions swept")
    else:
        # TTL 1 s + sweep 0.2 s: three TTLs later a fixed store would be empty.
        time.sleep(3.0)

    status = server.status()
    assert status["sessions_open"] == expected_open
    assert status["sessions_buffered_bytes"] == expected_open * len(chunk)


def test_session_close_transcribes_buffer(start_gateway):
    server = start_gateway()
    pcm = (DATA / "speech.wav").read_bytes()[44:]

    opened = httpx.post(server.url + "/v1/sessions", json={}, timeout=10).json()
    session_id = opened["session_id"]
    for start in range(0, len(pcm), 64000):
        response = httpx.post(server.url + f"/v1/sessions/{session_id}/chunks", content=pcm[start:start + 64000], timeout=10)
        assert response.status_code == 200, response.text
    closed = httpx.post(server.url + f"/v1/sessions/{session_id}/close", timeout=60)

    assert closed.status_code == 200, closed.text
    assert closed.json()["session_id"] == session_id
    assert any(overlaps(s, SPEECH["speech_ms"][0]) for s in closed.json()["segments"])
    assert server.status()["sessions_open"] == 0
    assert httpx.delete(server.url + f"/v1/sessions/{session_id}", timeout=10).status_code == 404
