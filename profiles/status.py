"""The profiles' own reads of the gateway's ``GET /v1/status``, recorded as Locust requests.

A profile reads the status to drive its phases (has the pool drained? are
the sessions gone?) and to measure how fast the status endpoint responds
under load. Each read fires Locust's request event, so it shows in Locust's
statistics and in ``requests.jsonl`` like any other request, under its own
name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests
from locust.env import Environment


@dataclass(frozen=True)
class StatusReading:
    """One status read: when it was sent and answered (Unix seconds), and the body or the error."""

    sent_s: float
    answered_s: float
    status: dict[str, Any] | None
    error: str | None

    @property
    def latency_s(self) -> float:
        return self.answered_s - self.sent_s

    def figure(self, key: str) -> Any:
        return (self.status or {}).get(key)


class StatusReader:
    """Reads one gateway's status with a timeout; every read is reported as a Locust request."""

    def __init__(self, environment: Environment, timeout_s: float) -> None:
        self.environment = environment
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.trust_env = False

    def read(self, name: str, phase: str) -> StatusReading:
        host = (self.environment.host or "").rstrip("/")
        sent_s = time.time()
        started = time.perf_counter()
        response = None
        status: dict[str, Any] | None = None
        error: BaseException | None = None
        try:
            response = self._session.get(f"{host}/v1/status", timeout=self.timeout_s)
            response.raise_for_status()
            status = response.json()
        except (requests.RequestException, ValueError) as exc:
            error = exc
        elapsed_ms = (time.perf_counter() - started) * 1000

        self.environment.events.request.fire(
            request_type="GET",
            name=name,
            response_time=elapsed_ms,
            response_length=len(response.content) if response is not None else 0,
            response=response,
            context={"phase": phase},
            exception=error,
            start_time=sent_s,
        )
        return StatusReading(
            sent_s=sent_s,
            answered_s=sent_s + elapsed_ms / 1000,
            status=status,
            error=f"{type(error).__name__}: {error}"[:300] if error is not None else None,
        )

    def close(self) -> None:
        self._session.close()


def reading_fields(reading: StatusReading, *keys: str) -> dict[str, Any]:
    """Return the fields of an events.jsonl row for one reading: its times, latency, error and chosen figures."""
    return {
        "sent_s": round(reading.sent_s, 4),
        "answered_s": round(reading.answered_s, 4),
        "latency_ms": round(reading.latency_s * 1000, 1),
        "error": reading.error,
        **{key: reading.figure(key) for key in keys},
    }
