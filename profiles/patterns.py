"""Patterns profile: request sequences that made speech services leak in the field, in one run.

One user (``fixed_count = 1``, so one in the whole test, also in distributed
mode) runs four phases in order. Every request carries its phase in
``requests.jsonl`` and the phase boundaries go to ``events.jsonl``:

1. ``burst``: ``SOAK_BURST_SIZE`` simultaneous first requests for one model
   identity that is not loaded yet (``SOAK_BURST_MODEL``). A cache with
   single-flight loading loads it once; without it, every request builds its
   own instance. The status's ``model_loads_total`` before and after tells.
2. ``varying``: one request per file of ``SOAK_VARYING_AUDIO_URLS``, each a
   different length. Every new input shape can grow oneDNN's primitive cache
   on CPU unless its capacity is bounded.
3. ``long``: ``SOAK_LONG_FILES`` requests with a long file
   (``SOAK_LONG_AUDIO_URL``, two minutes by default), one at a time.
4. ``short``: ``SOAK_SHORT_FILES`` requests with the short speech file.
   Memory that the long files raised should not keep growing here.

Settings (environment variables): ``SOAK_BURST_MODEL`` (unset: the
gateway's default model, which is already loaded, so the burst proves
nothing; the runner passes an unused model identity), ``SOAK_BURST_SIZE``
(8), ``SOAK_VARYING_AUDIO_URLS`` (the 30 files ``soak media`` writes),
``SOAK_LONG_AUDIO_URL`` (``speech-120s.wav``), ``SOAK_LONG_FILES`` (3),
``SOAK_SHORT_AUDIO_URL`` (``speech.wav``), ``SOAK_SHORT_FILES`` (20),
``SOAK_PAUSE_S`` (0.3), ``SOAK_REQUEST_TIMEOUT_S`` (360).
"""

from __future__ import annotations

import itertools

import gevent
from gevent.event import Event
from gevent.pool import Group
from locust import HttpUser, constant, task

from profiles import webui  # noqa: F401  (adds the Gateway tab to the web UI)
from profiles.common import env_float, env_int, env_list, env_str, log_event
from profiles.control import request_stop
from profiles.status import StatusReader, reading_fields

VARYING_FILES = 30
BURST_MODEL = env_str("SOAK_BURST_MODEL", "")
BURST_SIZE = env_int("SOAK_BURST_SIZE", 8)
# The files ``soak media`` writes, shortest first: the longest is sent first, so that the high-water mark
# of the longest decode is set during the leak verdict's warm-up; the others follow in steps of 7 of 29.
_BY_LENGTH = [f"speech-var-{number:02d}.wav" for number in range(VARYING_FILES)]
DEFAULT_VARYING_ORDER = [_BY_LENGTH[-1]] + [_BY_LENGTH[(position * 7) % (VARYING_FILES - 1)] for position in range(VARYING_FILES - 1)]
VARYING_AUDIO_URLS = env_list("SOAK_VARYING_AUDIO_URLS") or DEFAULT_VARYING_ORDER
LONG_AUDIO_URL = env_str("SOAK_LONG_AUDIO_URL", "speech-120s.wav")
LONG_FILES = env_int("SOAK_LONG_FILES", 3, minimum=0)
SHORT_AUDIO_URL = env_str("SOAK_SHORT_AUDIO_URL", "speech.wav")
SHORT_FILES = env_int("SOAK_SHORT_FILES", 20, minimum=0)
PAUSE_S = env_float("SOAK_PAUSE_S", 0.3)
REQUEST_TIMEOUT_S = env_float("SOAK_REQUEST_TIMEOUT_S", 360.0, minimum=1.0)
STATUS_TIMEOUT_S = 10.0
PLANNED = BURST_SIZE + len(VARYING_AUDIO_URLS) + LONG_FILES + SHORT_FILES


class PatternsUser(HttpUser):
    fixed_count = 1
    wait_time = constant(0)

    def on_start(self) -> None:
        self._index = itertools.count()
        self._status = StatusReader(self.environment, STATUS_TIMEOUT_S)

    def on_stop(self) -> None:
        self._status.close()

    @task
    def run_patterns(self) -> None:
        self.burst_of_first_requests()
        self.one_at_a_time("varying", VARYING_AUDIO_URLS)
        self.one_at_a_time("long", [LONG_AUDIO_URL] * LONG_FILES)
        self.one_at_a_time("short", [SHORT_AUDIO_URL] * SHORT_FILES)
        log_event("patterns_finished", planned=PLANNED)
        request_stop(self.environment, "the patterns profile ran every phase")
        # Wait here until the stop reaches this user, so the phases never run twice.
        gevent.sleep(REQUEST_TIMEOUT_S)

    def burst_of_first_requests(self) -> None:
        before = self._status.read("GET /v1/status (patterns)", "burst")
        log_event("burst_started", model=BURST_MODEL or None, size=BURST_SIZE,
                  **reading_fields(before, "model_loads_total", "cached_identities", "models_cached"))
        release = Event()
        group = Group()
        for _ in range(BURST_SIZE):
            group.spawn(self.burst_request, release, next(self._index))
        # Every request waits at the same Event, so they leave within one scheduler pass of each other.
        gevent.sleep(0.2)
        release.set()
        group.join(timeout=REQUEST_TIMEOUT_S + 10)

        after = self._status.read("GET /v1/status (patterns)", "burst")
        log_event("burst_finished", **reading_fields(after, "model_loads_total", "cached_identities", "models_cached"))

    def burst_request(self, release: Event, index: int) -> None:
        release.wait()
        payload: dict[str, object] = {"audio_url": SHORT_AUDIO_URL}
        if BURST_MODEL:
            payload["model"] = BURST_MODEL
        self.client.post("/v1/responses", json=payload, name="POST /v1/responses (burst)", timeout=REQUEST_TIMEOUT_S,
                         context={"index": index, "phase": "burst", "model": BURST_MODEL or None})

    def one_at_a_time(self, phase: str, audio_urls: list[str]) -> None:
        log_event("phase_started", phase=phase, requests=len(audio_urls))
        for audio_url in audio_urls:
            self.client.post("/v1/responses", json={"audio_url": audio_url}, name=f"POST /v1/responses ({phase})",
                             timeout=REQUEST_TIMEOUT_S, context={"index": next(self._index), "phase": phase})
            gevent.sleep(PAUSE_S)
        log_event("phase_finished", phase=phase)
