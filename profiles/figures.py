"""Text for the web UI's Gateway table: figures in their units and sparklines.

Kept apart from ``profiles.webui``, which imports Locust and with it gevent's
monkey-patching of the standard library. This module imports nothing, so
tests can use it in an ordinary process.
"""

from __future__ import annotations

from typing import Any

SPARK_LEVELS = "▁▂▃▄▅▆▇█"
MIB = 1024 * 1024


def status_text(reading: dict[str, Any]) -> str:
    if not reading:
        return "no reading yet"
    if reading.get("error"):
        return reading["error"]
    leaks = reading.get("leaks") or []
    return f"{reading.get('status')}, leaks: {', '.join(leaks) if leaks else 'none'}"


def with_limit(text: str, reading: dict[str, Any], key: str) -> str:
    limit_key = {"workers_active": "workers_max", "queue_depth": "queue_limit"}.get(key)
    if limit_key and text and reading.get(limit_key) is not None:
        return f"{text} of {reading[limit_key]}"
    return text


def format_figure(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "MiB":
        return f"{value / MIB:,.1f} MiB"
    if unit == "ms":
        return f"{value:,.0f} ms"
    return f"{value:,.0f}"


def sparkline(values: list[float]) -> str:
    """Draw values as a line of block characters, lowest to highest."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return SPARK_LEVELS[0] * len(values)
    steps = len(SPARK_LEVELS) - 1
    return "".join(SPARK_LEVELS[round((value - low) / (high - low) * steps)] for value in values)
