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
    if unit == "percent":
        return f"{value:g} %"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:g} {unit}"


def format_mib(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / MIB:,.1f} MiB"
