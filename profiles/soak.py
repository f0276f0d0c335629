"""Soak profile: 3 requests per simulated minute for 480 simulated minutes, in real time or compressed.

A gateway that serves a steady trickle of requests for a working day must
not grow. The plan is ``SOAK_DURATION_MIN x SOAK_REQUESTS_PER_MIN``
transcriptions (1,440 by default). Request ``i`` is due ``i / rate``
simulated minutes after the start; ``SOAK_COMPRESS`` divides every interval,
so ``SOAK_COMPRESS=60`` runs the 8 simulated hours in 8 real minutes. Each
request is sent when it is due, by whichever of the ``SOAK_USERS`` users is
free, so a slow response delays no other request.

``SoakShape`` (a Locust ``LoadTestShape``) keeps those users running for the
simulated duration. The test stops when every request has finished, or at
the latest ``SOAK_DRAIN_S`` after 1.5 times the time the last one was due.
A request that goes out after its due time records how late it was
(``lag_s`` in ``requests.jsonl``), so a schedule that fell behind shows.

Requests cycle through three fixed hotword lists, as a service's regular
clients would send, so the model cache sees a handful of configurations, not
a new one per request (the memory profile covers that case).

Note that this module's name equals the ``soak`` package's: Locust imports a
profile under its file name, so in the Locust process ``soak`` is this
profile. Nothing in ``profiles/`` imports the ``soak`` package.

Settings (environment variables): ``SOAK_DURATION_MIN`` (480),
``SOAK_REQUESTS_PER_MIN`` (3), ``SOAK_COMPRESS`` (1), ``SOAK_USERS`` (4),
``SOAK_AUDIO_URL`` (``speech.wav``), ``SOAK_MODELS`` (unset: the default
model), ``SOAK_REQUEST_TIMEOUT_S`` (360), ``SOAK_DRAIN_S`` (60).
"""

from __future__ import annotations

import time

from locust import HttpUser, LoadTestShape, constant, task
from locust.exception import StopUser

from profiles import webui  # noqa: F401  (adds the Gateway tab to the web UI)
from profiles.common import configuration_id, env_float, env_int, env_list, env_str, log_event
from profiles.control import RequestBudget, wait_until

DURATION_MIN = env_float("SOAK_DURATION_MIN", 480.0, minimum=1.0)
REQUESTS_PER_MIN = env_float("SOAK_REQUESTS_PER_MIN", 3.0, minimum=0.01)
COMPRESS = env_float("SOAK_COMPRESS", 1.0, minimum=1.0)
USERS = env_int("SOAK_USERS", 4)
AUDIO_URL = env_str("SOAK_AUDIO_URL", "speech.wav")
MODELS = env_list("SOAK_MODELS")
REQUEST_TIMEOUT_S = env_float("SOAK_REQUEST_TIMEOUT_S", 360.0, minimum=1.0)
DRAIN_S = env_float("SOAK_DRAIN_S", 60.0)

HOTWORD_LISTS = (["fox"], ["river", "bank"], [])
LATE_SCHEDULE_FACTOR = 1.5
PLANNED = round(DURATION_MIN * REQUESTS_PER_MIN)
# Real seconds between two due times.
INTERVAL_S = 60.0 / (REQUESTS_PER_MIN * COMPRESS)

budget = RequestBudget("soak", PLANNED, interval_s=INTERVAL_S)


class SoakUser(HttpUser):
    wait_time = constant(0)

    @task
    def transcribe_when_due(self) -> None:
        grant = budget.take()
        if grant is None:
            raise StopUser()
        wait_until(grant.due_s)
        lag_s = max(0.0, time.time() - grant.due_s) if grant.due_s is not None else None

        index = grant.index
        model = MODELS[index % len(MODELS)] if MODELS else None
        options = {"hotwords": HOTWORD_LISTS[index % len(HOTWORD_LISTS)]}
        payload: dict[str, object] = {"audio_url": AUDIO_URL, **options}
        if model is not None:
            payload["model"] = model
        context = {"index": index, "model": model, "config_id": configuration_id(model, options), "phase": "soak",
                   "lag_s": round(lag_s, 3) if lag_s is not None else None}
        try:
            self.client.post("/v1/responses", json=payload, name="POST /v1/responses", timeout=REQUEST_TIMEOUT_S, context=context)
        finally:
            budget.complete()


class SoakShape(LoadTestShape):
    """Run ``SOAK_USERS`` users for the simulated duration; stop the test when the drain time after the last due request ran out."""

    def tick(self) -> tuple[int, float] | None:
        run_time_s = self.get_run_time()
        last_due_s = (PLANNED - 1) * INTERVAL_S
        # The budget stops the test after the last request. This bound covers requests that never finish,
        # and leaves a schedule that fell behind (a slow gateway, a busy machine) half its length again.
        if run_time_s > last_due_s * LATE_SCHEDULE_FACTOR + DRAIN_S:
            log_event("soak_drain_expired", completed=budget.completed, planned=PLANNED)
            return None
        return USERS, USERS
