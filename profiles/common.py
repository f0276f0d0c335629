"""Shared parts of the Locust profiles: settings from the environment, and the logs they write.

The soak runner starts Locust as a subprocess and passes its settings as
``SOAK_*`` environment variables. The same profiles run by hand in Locust's
web UI with the defaults, or with the variables set in the shell, and in
Locust's distributed mode (``--master`` with ``--worker`` processes, or
``--processes``).

Three logs, each written only when its variable names a file:

- ``SOAK_REQUESTS_LOG``: one ``requests.jsonl`` row per request.
- ``SOAK_EVENTS_LOG``: the profile's phases and its own status readings
  (``events.jsonl``), which the runner's judgement lines up with the samples.
- ``SOAK_LOCUST_USAGE_LOG``: Locust's own CPU and memory per Locust process,
  from its usage monitor (every 10 s).

Every Locust process of a run appends to the same files. Each row is one
``write`` of a whole line to a file opened for appending, so rows from
different processes do not interleave.

Locust monkey-patches the standard library with gevent, so this package must
import neither torch nor funasr (doing so in a process that runs Locust fails
with a RecursionError).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

REQUESTS_LOG_ENV = "SOAK_REQUESTS_LOG"
EVENTS_LOG_ENV = "SOAK_EVENTS_LOG"
USAGE_LOG_ENV = "SOAK_LOCUST_USAGE_LOG"
LOG_SCHEMA_VERSION = 1
ERROR_MESSAGE_MAX_CHARS = 500


class ProfileSettingsError(ValueError):
    """A SOAK_* environment variable has an invalid value."""


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProfileSettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ProfileSettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ProfileSettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ProfileSettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str) -> list[str]:
    """Read a comma-separated list; unset or empty reads as no items."""
    raw = os.environ.get(name, "")
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_str(name: str, default: str) -> str:
    return os.environ.get(name) or default


def configuration_id(model: str | None, options: dict[str, Any]) -> str:
    """Return a short stable hash of a model name and request options.

    Two requests with the same id would share one entry of a model cache
    keyed by model and options, so the id shows how many distinct entries a
    run asked for.
    """
    canonical = json.dumps({"model": model, "options": options}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def process_role(environment: Environment) -> str:
    """Name this Locust process: "local", "master" or "worker <index>"."""
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, WorkerRunner):
        return f"worker {runner.worker_index}"
    return "local"


class JsonlLog:
    """Appends one JSON row per line to a file, flushed after each row so that readers see it at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps({"schema_version": LOG_SCHEMA_VERSION, **row}, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class RequestLog(JsonlLog):
    """Writes one ``requests.jsonl`` row per Locust request event.

    Request context keys ``index``, ``config_id``, ``model``, ``phase`` and
    ``lag_s`` (passed with ``context=`` on the request) are copied into the row, and
    ``process`` names the Locust process that sent it. The row is written
    when the response has arrived, so a reader watching the file (the
    sampler) notices each completion at once.
    """

    def __init__(self, path: Path, environment: Environment | None = None) -> None:
        super().__init__(path)
        self.environment = environment

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        response: Any = None,
        context: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        end_time_s = time.time()
        context = context or {}
        status = getattr(response, "status_code", None) or 0
        self.write(
            {
                "index": context.get("index"),
                "time_s": round(start_time if start_time is not None else end_time_s - response_time / 1000, 4),
                "end_time_s": round(end_time_s, 4),
                "request_type": request_type,
                "name": name,
                "status": status,
                "ok": exception is None,
                "latency_ms": round(response_time, 1),
                "response_bytes": response_length,
                "model": context.get("model"),
                "config_id": context.get("config_id"),
                "phase": context.get("phase"),
                "lag_s": context.get("lag_s"),
                "process": process_role(self.environment) if self.environment is not None else None,
                "error": describe_error(exception),
                "error_code": error_code(response) if status >= 400 else None,
            }
        )


class EventLog(JsonlLog):
    """Writes the profile's phase changes and its own status readings (``events.jsonl``)."""

    def event(self, name: str, **fields: Any) -> None:
        self.write({"time_s": round(time.time(), 4), "event": name, **fields})


class _NoEventLog:
    def event(self, name: str, **fields: Any) -> None:
        return None


_event_log: EventLog | _NoEventLog = _NoEventLog()


def log_event(name: str, **fields: Any) -> None:
    """Record a profile event when ``SOAK_EVENTS_LOG`` is set; otherwise do nothing."""
    _event_log.event(name, **fields)


def describe_error(exception: BaseException | None) -> str | None:
    if exception is None:
        return None
    message = f"{type(exception).__name__}: {exception}"
    return message[:ERROR_MESSAGE_MAX_CHARS]


def error_code(response: Any) -> str | None:
    """Return the gateway's machine-readable error code from an error body, if it has one."""
    try:
        body = response.json()
    except Exception:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def install_request_log(environment: Environment) -> RequestLog | None:
    """Register a request log on the environment's events when ``SOAK_REQUESTS_LOG`` is set."""
    path = os.environ.get(REQUESTS_LOG_ENV)
    if not path:
        return None
    log = RequestLog(Path(path), environment)
    environment.events.request.add_listener(log.on_request)
    environment.events.quitting.add_listener(lambda **_: log.close())
    return log


def install_event_log(environment: Environment) -> None:
    global _event_log
    path = os.environ.get(EVENTS_LOG_ENV)
    if not path:
        return
    log = EventLog(Path(path))
    _event_log = log
    environment.events.quitting.add_listener(lambda **_: log.close())


def install_usage_log(environment: Environment) -> None:
    """Record Locust's own CPU and memory, as its usage monitor measures them, when ``SOAK_LOCUST_USAGE_LOG`` is set."""
    path = os.environ.get(USAGE_LOG_ENV)
    if not path:
        return
    log = JsonlLog(Path(path))

    def on_usage(environment: Environment, cpu_usage: float, memory_usage: int, **_: Any) -> None:
        log.write(
            {
                "time_s": round(time.time(), 4),
                "process": process_role(environment),
                "pid": os.getpid(),
                "cpu_percent": round(cpu_usage, 1),
                "memory_bytes": memory_usage,
            }
        )

    environment.events.usage_monitor.add_listener(on_usage)
    environment.events.quitting.add_listener(lambda **_: log.close())


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    install_request_log(environment)
    install_event_log(environment)
    install_usage_log(environment)
