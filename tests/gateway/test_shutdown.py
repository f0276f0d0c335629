"""Graceful shutdown of a real gateway with requests in flight: every request gets an answer."""

from __future__ import annotations

import concurrent.futures
import signal

import httpx

from tests.gateway.test_service import entered, hold, release, wait_until

WAIT_S = 60.0


def test_sigterm_drains_with_requests_in_flight(start_gateway, tmp_path):
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    server = start_gateway("--workers", "1", "--max-queue", "2", env={"GATEWAY_FAILPOINTS_DIR": str(failpoints)})
    hold(failpoints)

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as clients:
        running = clients.submit(server.transcribe, audio_url="speech.wav")
        wait_until(lambda: entered(failpoints) == 1, message="first task running")
        queued = [clients.submit(server.transcribe, audio_url="speech.wav") for _ in range(2)]
        wait_until(lambda: server.status()["queue_depth"] == 2, message="two tasks queued")

        server.process.send_signal(signal.SIGTERM)

        queued_answers = [call.result(timeout=WAIT_S) for call in queued]
        readiness = httpx.get(server.url + "/readyz", timeout=10)
        late = server.transcribe(audio_url="speech.wav")
        status = server.status()
        release(failpoints)
        running_answer = running.result(timeout=WAIT_S)

    assert [answer.status_code for answer in queued_answers] == [503, 503]
    assert all(answer.json()["error"]["code"] == "shutting_down" for answer in queued_answers)
    assert readiness.status_code == 503
    assert readiness.json()["reason"] == "draining"
    assert late.status_code == 503
    assert "draining for shutdown" in status["reasons"]
    assert running_answer.status_code == 200
    assert server.process.wait(timeout=WAIT_S) == 0
    log = server.log_tail(20000)
    for step in ("draining before shutdown", "Draining: readiness is 503", "Running tasks finished",
                 "Stopping the HTTP server", "Session sweeper stopped", "Shutdown complete"):
        assert step in log, step


def test_second_signal_stops_at_once(start_gateway, tmp_path):
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    server = start_gateway("--workers", "1", "--drain-timeout-s", "300", env={"GATEWAY_FAILPOINTS_DIR": str(failpoints)})
    hold(failpoints)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as clients:
        running = clients.submit(server.transcribe, audio_url="speech.wav")
        wait_until(lambda: entered(failpoints) == 1, message="task running")
        server.process.send_signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(server.url + "/readyz", timeout=5).status_code == 503, message="draining")

        server.process.send_signal(signal.SIGINT)
        returncode = server.process.wait(timeout=WAIT_S)
        release(failpoints)
        try:
            answer = running.result(timeout=WAIT_S)
        except httpx.HTTPError as error:
            answer = error

    assert returncode is not None
    assert "again; stopping now" in server.log_tail(20000)
    assert isinstance(answer, (httpx.Response, httpx.HTTPError))
