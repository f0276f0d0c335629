"""Workers profile: saturate the worker pool, read the status meanwhile, stop, and watch the pool drain.

Timeline, in seconds after the test started:

1. ``0 .. SOAK_LOAD_S``: every user sends long transcriptions back to back,
   more at once than the gateway has workers plus queue places. Each gives
   up after ``SOAK_CLIENT_TIMEOUT_S`` and sends the next, as the incident's
   clients did. A 503 (the queue is full) is followed by a short pause.
2. At ``SOAK_SATURATE_AFTER_S``: ``SOAK_STATUS_CALLS`` concurrent
   ``GET /v1/status`` calls. A fixed gateway responds at once, because the
   status never waits on a worker. The leaky pool blocks the event loop while
   a task runs, so each call waits behind the transcriptions in flight.
3. ``SOAK_LOAD_S``: users send nothing more. Once the last client timeout
   has passed, no request of the load is in flight ("load stopped").
4. The status is read every ``SOAK_POLL_INTERVAL_S`` until the active
   workers and the queue are at 0, for at most ``SOAK_RECOVERY_WATCH_S``;
   then the test stops.

Steps 2 to 4 run once per test, in the Locust process that owns it (the only
process, or the master in distributed mode); the users run wherever Locust
puts them. The phases and readings go to ``events.jsonl``, the calls to
``requests.jsonl`` under their own names.

Settings (environment variables): ``SOAK_AUDIO_URL`` (default
``speech-60s.wav``, which ``soak media`` writes), ``SOAK_LOAD_S`` (25),
``SOAK_SATURATE_AFTER_S`` (8), ``SOAK_STATUS_CALLS`` (20),
``SOAK_STATUS_TIMEOUT_S`` (60), ``SOAK_CLIENT_TIMEOUT_S`` (2),
``SOAK_RECOVERY_WATCH_S`` (90), ``SOAK_POLL_INTERVAL_S`` (0.5).
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from gevent.pool import Group
from locust import HttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

from profiles import webui  # noqa: F401  (adds the Gateway tab to the web UI)
from profiles.common import env_float, env_int, env_str, log_event, process_role
from profiles.control import owns_the_test, request_stop
from profiles.status import StatusReader, reading_fields

AUDIO_URL = env_str("SOAK_AUDIO_URL", "speech-60s.wav")
LOAD_S = env_float("SOAK_LOAD_S", 25.0, minimum=1.0)
SATURATE_AFTER_S = env_float("SOAK_SATURATE_AFTER_S", 8.0)
STATUS_CALLS = env_int("SOAK_STATUS_CALLS", 20)
STATUS_TIMEOUT_S = env_float("SOAK_STATUS_TIMEOUT_S", 60.0, minimum=0.1)
CLIENT_TIMEOUT_S = env_float("SOAK_CLIENT_TIMEOUT_S", 2.0, minimum=0.1)
RECOVERY_WATCH_S = env_float("SOAK_RECOVERY_WATCH_S", 90.0, minimum=1.0)
POLL_INTERVAL_S = env_float("SOAK_POLL_INTERVAL_S", 0.5, minimum=0.05)
# After a 503 the user waits this long, or the Retry-After if that is shorter.
REJECTED_PAUSE_S = 0.5
# Each read during the recovery watch gives up after this long and the watch goes on.
RECOVERY_READ_TIMEOUT_S = 10.0

if SATURATE_AFTER_S >= LOAD_S:
    raise ValueError(f"SOAK_SATURATE_AFTER_S ({SATURATE_AFTER_S}) must be below SOAK_LOAD_S ({LOAD_S})")


class _LoadClock:
    """This process's test start, and its count of transcriptions in flight."""

    started_s = time.time()
    in_flight = 0
    conductor: gevent.Greenlet | None = None


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    _LoadClock.started_s = time.time()
    _LoadClock.in_flight = 0
    # Every process that runs users says how many transcriptions it had in flight when the status calls went out.
    gevent.spawn_later(SATURATE_AFTER_S, lambda: log_event("load_in_flight", process=process_role(environment), in_flight=_LoadClock.in_flight))
    if owns_the_test(environment):
        _LoadClock.conductor = gevent.spawn(conduct, environment)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    # A test stopped from the web UI ends the conductor too.
    conductor = _LoadClock.conductor
    if conductor is not None and not conductor.dead and gevent.getcurrent() is not conductor:
        conductor.kill(block=False)
    _LoadClock.conductor = None


class SaturatingUser(HttpUser):
    wait_time = constant(0)

    @task
    def transcribe(self) -> None:
        if time.time() >= _LoadClock.started_s + LOAD_S:
            raise StopUser()

        _LoadClock.in_flight += 1
        try:
            with self.client.post(
                "/v1/responses",
                json={"audio_url": AUDIO_URL},
                name="POST /v1/responses (load)",
                timeout=CLIENT_TIMEOUT_S,
                context={"phase": "load"},
                catch_response=True,
            ) as response:
                rejected = response.status_code == 503
                if rejected:
                    response.failure("503: the worker pool and its queue are full")
        finally:
            _LoadClock.in_flight -= 1

        if rejected:
            gevent.sleep(min(REJECTED_PAUSE_S, retry_after_s(response.headers.get("Retry-After"))))


def retry_after_s(header: str | None) -> float:
    try:
        return max(0.0, float(header)) if header else REJECTED_PAUSE_S
    except ValueError:
        return REJECTED_PAUSE_S


def conduct(environment: Environment) -> None:
    """Fire the concurrent status calls, wait for the load to stop, then watch the pool drain."""
    started_s = _LoadClock.started_s
    burst_reader = StatusReader(environment, STATUS_TIMEOUT_S)
    recovery_reader = StatusReader(environment, RECOVERY_READ_TIMEOUT_S)
    try:
        sleep_until(started_s + SATURATE_AFTER_S)
        # The calls may stall behind the load; the timeline goes on without waiting for them.
        burst = gevent.spawn(fire_status_calls, burst_reader)

        sleep_until(started_s + LOAD_S)
        log_event("load_stopping")
        sleep_until(started_s + LOAD_S + CLIENT_TIMEOUT_S)
        log_event("load_stopped")

        watch_recovery(recovery_reader, time.time())
        burst.join(timeout=STATUS_TIMEOUT_S + 10)
    finally:
        burst_reader.close()
        recovery_reader.close()
    request_stop(environment, "the workers profile finished watching the pool drain")


def fire_status_calls(reader: StatusReader) -> None:
    log_event("status_calls_started", calls=STATUS_CALLS)
    group = Group()
    readings = [group.spawn(reader.read, "GET /v1/status (pool saturated)", "saturated") for _ in range(STATUS_CALLS)]
    group.join(timeout=STATUS_TIMEOUT_S + 5)
    for greenlet in readings:
        if greenlet.successful():
            log_event("status_call", **reading_fields(greenlet.value, "workers_active", "workers_max", "queue_depth", "queue_limit"))
    log_event("status_calls_finished", calls=STATUS_CALLS, answered=sum(1 for greenlet in readings if greenlet.successful()))


def watch_recovery(reader: StatusReader, load_stopped_s: float) -> None:
    """Read the status until no worker is active and the queue is empty, for at most RECOVERY_WATCH_S."""
    deadline_s = load_stopped_s + RECOVERY_WATCH_S
    while time.time() < deadline_s:
        reading = reader.read("GET /v1/status (recovery)", "recovery")
        log_event("recovery_reading", **reading_fields(reading, "workers_active", "queue_depth"))
        if reading.status is not None and reading.figure("workers_active") == 0 and reading.figure("queue_depth") == 0:
            log_event("recovered", after_s=round(reading.answered_s - load_stopped_s, 3))
            return
        gevent.sleep(POLL_INTERVAL_S)
    log_event("not_recovered", watched_s=RECOVERY_WATCH_S)


def sleep_until(wall_time_s: float) -> None:
    delay_s = wall_time_s - time.time()
    if delay_s > 0:
        gevent.sleep(delay_s)
