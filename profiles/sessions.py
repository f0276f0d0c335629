"""Sessions profile: streaming sessions that end every way a client can end them, then a wait for cleanup.

Each planned session streams PCM16 chunks of the speech file and then ends
in one of six ways, chosen by its index (``index % 6``):

====  ==============  =========================================================
 0    ``close``       HTTP chunks, then ``POST /v1/sessions/{id}/close`` (transcribes)
 1    ``delete``      HTTP chunks, then ``DELETE /v1/sessions/{id}``
 2    ``abandon``     HTTP chunks, then the client goes away without a word
 3    ``cut``         HTTP chunks, then a chunk upload reset in the middle of its body
 4    ``ws-end``      WebSocket frames, ``{"event": "end"}``, the final result
 5    ``ws-drop``     WebSocket frames, then the TCP connection is reset
====  ==============  =========================================================

A fixed gateway releases ``close``, ``delete`` and both WebSocket endings at
once and the other two after its idle TTL, at the next sweep. The leaky one
keeps the buffers of every session that was not closed explicitly.

After the last session, the owning Locust process reads the status every
second until no session and no buffered byte is left, for at most
``SOAK_SESSION_TTL_S + SOAK_SWEEP_INTERVAL_S + SOAK_CLEANUP_GRACE_S`` plus
``CLEANUP_WATCH_MARGIN_S``; then the test stops. Those settings must match the
gateway's ``--session-ttl-s`` and ``--sweep-interval-s`` (defaults 300 and 60).

Settings (environment variables): ``SOAK_SESSIONS`` (36), ``SOAK_AUDIO_PATH``
(the local WAV file to stream, PCM16 mono; default the repository's speech
fixture), ``SOAK_CHUNK_BYTES`` (32000, one second at 16 kHz),
``SOAK_CHUNKS_PER_SESSION`` (6), ``SOAK_CHUNK_PAUSE_S`` (0.05),
``SOAK_SESSION_TTL_S`` (300), ``SOAK_SWEEP_INTERVAL_S`` (60),
``SOAK_CLEANUP_GRACE_S`` (5), ``SOAK_REQUEST_TIMEOUT_S`` (60).
"""

from __future__ import annotations

import os
import time
import uuid
import wave
from pathlib import Path

import gevent
from locust import HttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

from profiles import webui  # noqa: F401  (adds the Gateway tab to the web UI)
from profiles.common import env_float, env_int, log_event
from profiles.control import RequestBudget
from profiles.status import StatusReader, reading_fields
from profiles.streaming import StreamClient, StreamError, cut_chunk_upload

FATES = ("close", "delete", "abandon", "cut", "ws-end", "ws-drop")
DEFAULT_AUDIO = Path(__file__).resolve().parent.parent / "tests" / "data" / "speech.wav"

SESSIONS = env_int("SOAK_SESSIONS", 36)
AUDIO_PATH = Path(os.environ.get("SOAK_AUDIO_PATH") or DEFAULT_AUDIO)
CHUNK_BYTES = env_int("SOAK_CHUNK_BYTES", 32000, minimum=2)
CHUNKS_PER_SESSION = env_int("SOAK_CHUNKS_PER_SESSION", 6)
CHUNK_PAUSE_S = env_float("SOAK_CHUNK_PAUSE_S", 0.05)
SESSION_TTL_S = env_float("SOAK_SESSION_TTL_S", 300.0)
SWEEP_INTERVAL_S = env_float("SOAK_SWEEP_INTERVAL_S", 60.0)
CLEANUP_GRACE_S = env_float("SOAK_CLEANUP_GRACE_S", 5.0)
REQUEST_TIMEOUT_S = env_float("SOAK_REQUEST_TIMEOUT_S", 60.0, minimum=1.0)
# The watch goes on this long past the cleanup deadline, so that a late cleanup is measured, not cut off.
CLEANUP_WATCH_MARGIN_S = 10.0
POLL_INTERVAL_S = 1.0
STATUS_TIMEOUT_S = 5.0


class _TestToken:
    """The prefix of this test's session ids, new for every test, so that tests against one gateway do not collide."""

    value = uuid.uuid4().hex[:8]


@events.test_start.add_listener
def _on_test_start(**_: object) -> None:
    _TestToken.value = uuid.uuid4().hex[:8]


def read_pcm(path: Path) -> bytes:
    """Return the PCM16 frames of a mono 16-bit WAV file."""
    with wave.open(str(path), "rb") as audio:
        if audio.getsampwidth() != 2 or audio.getnchannels() != 1:
            raise ValueError(f"{path} must be 16-bit mono PCM for streaming, got {audio.getsampwidth() * 8}-bit, {audio.getnchannels()} channels")
        return audio.readframes(audio.getnframes())


PCM = read_pcm(AUDIO_PATH)


def chunks() -> list[bytes]:
    """Return the session's chunks: consecutive slices of the speech, wrapping around at its end."""
    needed = CHUNK_BYTES * CHUNKS_PER_SESSION
    audio = PCM * (needed // len(PCM) + 1)
    return [audio[start : start + CHUNK_BYTES] for start in range(0, needed, CHUNK_BYTES)]


def watch_cleanup(environment: Environment) -> None:
    """Read the status until no session and no buffered byte is left, or until the deadline plus a margin."""
    load_finished_s = time.time()
    deadline_s = load_finished_s + SESSION_TTL_S + SWEEP_INTERVAL_S + CLEANUP_GRACE_S
    log_event("load_finished", ttl_s=SESSION_TTL_S, sweep_interval_s=SWEEP_INTERVAL_S, grace_s=CLEANUP_GRACE_S)
    reader = StatusReader(environment, STATUS_TIMEOUT_S)
    try:
        while time.time() < deadline_s + CLEANUP_WATCH_MARGIN_S:
            reading = reader.read("GET /v1/status (cleanup)", "cleanup")
            log_event("cleanup_reading", **reading_fields(reading, "sessions_open", "sessions_buffered_bytes"))
            if reading.status is not None and reading.figure("sessions_open") == 0 and reading.figure("sessions_buffered_bytes") == 0:
                log_event("cleaned_up", after_s=round(reading.answered_s - load_finished_s, 3))
                return
            gevent.sleep(POLL_INTERVAL_S)
        log_event("not_cleaned_up", watched_s=round(time.time() - load_finished_s, 3))
    finally:
        reader.close()


budget = RequestBudget("sessions", SESSIONS, after_load=watch_cleanup)


class StreamingSessionUser(HttpUser):
    wait_time = constant(0.1)

    @task
    def stream_one_session(self) -> None:
        grant = budget.take()
        if grant is None:
            raise StopUser()

        index = grant.index
        fate = FATES[index % len(FATES)]
        session_id = f"soak-{_TestToken.value}-{index}"
        context = {"index": index, "phase": fate}
        try:
            if fate.startswith("ws-"):
                self.stream_over_websocket(session_id, fate, context)
            else:
                self.stream_over_http(session_id, fate, context)
        finally:
            budget.complete()

    def stream_over_http(self, session_id: str, fate: str, context: dict) -> None:
        opened = self.client.post(
            "/v1/sessions", json={"session_id": session_id}, name="POST /v1/sessions", timeout=REQUEST_TIMEOUT_S, context=context
        )
        if opened.status_code != 201:
            return

        for chunk in chunks():
            self.client.post(
                f"/v1/sessions/{session_id}/chunks",
                data=chunk,
                headers={"Content-Type": "application/octet-stream"},
                name="POST /v1/sessions/[id]/chunks",
                timeout=REQUEST_TIMEOUT_S,
                context=context,
            )
            gevent.sleep(CHUNK_PAUSE_S)

        if fate == "close":
            self.client.post(
                f"/v1/sessions/{session_id}/close", name="POST /v1/sessions/[id]/close", timeout=REQUEST_TIMEOUT_S, context=context
            )
        elif fate == "delete":
            self.client.delete(f"/v1/sessions/{session_id}", name="DELETE /v1/sessions/[id]", timeout=REQUEST_TIMEOUT_S, context=context)
        elif fate == "cut":
            self.timed("HTTP", "POST /v1/sessions/[id]/chunks (reset mid-body)", context,
                       lambda: cut_chunk_upload(self.host, session_id, chunks()[0]))

    def stream_over_websocket(self, session_id: str, fate: str, context: dict) -> None:
        def stream() -> int:
            client = StreamClient(self.host, session_id, timeout_s=REQUEST_TIMEOUT_S)
            sent_bytes = 0
            try:
                for chunk in chunks():
                    client.send_audio(chunk)
                    sent_bytes += len(chunk)
                    gevent.sleep(CHUNK_PAUSE_S)
                if fate == "ws-drop":
                    client.drop()
                    return sent_bytes
                final = client.finish()
                if final is None:
                    raise StreamError(f"the stream closed with code {client.close_code} before the final result")
                client.close()
            except BaseException:
                client.drop()
                raise
            return sent_bytes

        self.timed("WS", f"WS /v1/sessions/[id]/stream ({fate})", context, stream)

    def timed(self, request_type: str, name: str, context: dict, action) -> None:
        """Run ``action`` and report it to Locust as one request of ``name``; its return value is the byte count."""
        started_s = time.time()
        started = time.perf_counter()
        length = 0
        error: BaseException | None = None
        try:
            length = action()
        except (OSError, StreamError) as exc:
            error = exc
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            response=None,
            context=context,
            exception=error,
            start_time=started_s,
        )
