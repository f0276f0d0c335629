"""Shared parts of the Locust profiles: settings from the environment and the request log.

The soak runner starts Locust as a subprocess and passes its settings as
``SOAK_*`` environment variables. The same profiles run by hand in Locust's
web UI with the defaults, or with the variables set in the shell.

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

# Path of the requests.jsonl to write; unset means no request log.
REQUESTS_LOG_ENV = "SOAK_REQUESTS_LOG"
REQUESTS_LOG_SCHEMA_VERSION = 1
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


class RequestLog:
    """Writes one ``requests.jsonl`` row per Locust request event.

    Request context keys ``index``, ``config_id`` and ``model`` (passed with
    ``context=`` on the request) are copied into the row. The row is written
    and flushed when the response has arrived, so a reader watching the file
    (the sampler) sees each completion at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = path.open("a", encoding="utf-8")

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
        if self._file is None:
            return
        end_time_s = time.time()
        context = context or {}
        status = getattr(response, "status_code", None) or 0
        row = {
            "schema_version": REQUESTS_LOG_SCHEMA_VERSION,
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
            "error": describe_error(exception),
            "error_code": error_code(response) if status >= 400 else None,
        }
        self._file.write(json.dumps(row, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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
    log = RequestLog(Path(path))
    environment.events.request.add_listener(log.on_request)
    environment.events.quitting.add_listener(lambda **_: log.close())
    return log


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    install_request_log(environment)
