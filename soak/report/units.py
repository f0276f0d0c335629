"""Formatting of measured values and limits, shared by every report writer."""

from __future__ import annotations

MIB = 1024 * 1024


def format_value(value: float | None, unit: str) -> str:
    """Format a criterion's measured value or limit in its unit; ``None`` becomes an en dash."""
    if value is None:
        return "–"
    if unit == "bytes":
        return f"{value / MIB:,.1f} MiB"
    if unit == "bytes/request":
        return f"{value / MIB:+,.2f} MiB/request" if value < 0 else f"{value / MIB:,.2f} MiB/request"
    if unit == "bytes/hour":
        return f"{value / MIB:+,.1f} MiB/h" if value < 0 else f"{value / MIB:,.1f} MiB/h"
    if unit == "s":
        return f"{value:,.1f} s"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "percent":
        return f"{value:g} %"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:g} {unit}"


def format_mib(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / MIB:,.1f} MiB"


def format_interval(low: float | None, high: float | None, unit: str) -> str:
    """Format a confidence interval as "low to high unit"; an open bound reads "unbounded"."""
    if low is None and high is None:
        return "–"
    if high is None:
        return f"{format_value(low, unit)} to unbounded"
    low_text = "unbounded" if low is None else format_value(low, unit).split(" ")[0]
    return f"{low_text} to {format_value(high, unit)}"
