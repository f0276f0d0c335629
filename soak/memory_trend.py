"""RSS growth per request and per hour, and the projected time until RSS reaches the memory limit.

The per-request figures are those of the growth criterion. The per-hour
figures come from a second leak verdict over the same samples, against the
seconds since the gateway was ready. They describe the wall-clock time of
this run's load, so a profile that sends requests back to back grows faster
per hour than the same gateway at production rates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from soak.criteria import Criteria
from soak.verdict import leak_verdict, per_hour, projected_time_to_limit_s

MIB = 1024 * 1024

LimitSource = Literal["gateway", "host"]


@dataclass(frozen=True)
class MemoryTrend:
    """A run's RSS slope per request and per hour, and when RSS would reach the memory limit."""

    per_request_verdict: str | None
    per_request_bytes: float | None
    per_request_low_bytes: float | None
    per_request_high_bytes: float | None
    per_request_min_leak_rate_bytes: float | None
    per_hour_verdict: str
    per_hour_bytes: float | None
    per_hour_low_bytes: float | None
    per_hour_high_bytes: float | None
    per_hour_reason: str
    min_leak_rate_bytes_per_hour: float
    rss_end_bytes: float | None
    memory_limit_bytes: float | None
    # "gateway" when the gateway's status reports a limit (a setting or its cgroup), "host" for the machine's memory.
    memory_limit_source: LimitSource | None
    memory_limit_text: str
    # Seconds until RSS reaches the limit at the fitted slope, and at the interval's upper bound.
    time_to_limit_s: float | None
    time_to_limit_earliest_s: float | None
    projection: str
    # Keys of the criteria that these verdicts decide, None where the verdict is for information only.
    per_request_criterion: str | None = None
    per_hour_criterion: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_trend(
    sample_times_s: list[float],
    rss_bytes: list[float],
    per_request: dict[str, Any],
    samples: list[dict[str, Any]],
    manifest: dict[str, Any],
    criteria: Criteria,
    *,
    per_request_criterion: str | None = None,
    per_hour_criterion: str | None = None,
) -> MemoryTrend:
    """Fit RSS over time on the samples that follow requests and project it to the memory limit.

    ``sample_times_s`` and ``rss_bytes`` are the samples behind the growth
    criterion (one per request), ``per_request`` that criterion's leak
    verdict as a dict. ``per_request_criterion`` and ``per_hour_criterion``
    name the criteria that the two verdicts decide. A profile whose criteria
    do not use the hourly slope leaves it None, and the reports then show
    that verdict for information only.
    """
    times, values = _unique_times(sample_times_s, rss_bytes)
    hourly = leak_verdict(
        times,
        values,
        min_leak_rate=criteria.min_leak_rate_bytes_per_s,
        alpha=criteria.leak_alpha,
        min_points=criteria.leak_min_points,
        rate_unit="bytes/s",
    )

    rss_samples = [row["rss_bytes"] for row in samples if row.get("rss_bytes") is not None]
    rss_end = float(rss_samples[-1]) if rss_samples else None
    limit, source, limit_text = memory_limit(samples, manifest)

    slope_per_s = hourly.slope
    earliest_slope_per_s = hourly.slope_high
    time_to_limit = _time_to_limit(rss_end, slope_per_s, limit)
    earliest = _time_to_limit(rss_end, earliest_slope_per_s, limit)
    if earliest is not None and time_to_limit is not None and earliest >= time_to_limit:
        earliest = None

    return MemoryTrend(
        per_request_verdict=per_request.get("verdict"),
        per_request_bytes=per_request.get("slope"),
        per_request_low_bytes=per_request.get("slope_low"),
        per_request_high_bytes=per_request.get("slope_high"),
        per_request_min_leak_rate_bytes=per_request.get("min_leak_rate"),
        per_hour_verdict=hourly.verdict,
        per_hour_bytes=_per_hour(hourly.slope),
        per_hour_low_bytes=_per_hour(hourly.slope_low),
        per_hour_high_bytes=_per_hour(hourly.slope_high),
        per_hour_reason=hourly.reason,
        min_leak_rate_bytes_per_hour=float(criteria.min_leak_rate_bytes_per_hour),
        rss_end_bytes=rss_end,
        memory_limit_bytes=limit,
        memory_limit_source=source,
        memory_limit_text=limit_text,
        time_to_limit_s=time_to_limit,
        time_to_limit_earliest_s=earliest,
        per_request_criterion=per_request_criterion,
        per_hour_criterion=per_hour_criterion,
        projection=describe_projection(rss_end, limit, limit_text, _per_hour(slope_per_s), _per_hour(earliest_slope_per_s),
                                       time_to_limit, earliest),
    )


def memory_limit(samples: list[dict[str, Any]], manifest: dict[str, Any]) -> tuple[float | None, LimitSource | None, str]:
    """Return the gateway's memory limit from its status, else the machine's total memory, with a label."""
    for row in reversed(samples):
        status = row.get("status") or {}
        limit = status.get("memory_limit_bytes")
        if limit:
            origin = status.get("memory_limit_source") or "setting"
            return float(limit), "gateway", f"the gateway's memory limit ({origin})"

    total = (manifest.get("host") or {}).get("memory_total_bytes")
    if total:
        return float(total), "host", "the machine's total memory, because the gateway reported no memory limit"
    return None, None, "unknown, because neither the gateway nor the manifest gives a memory limit"


def describe_projection(
    rss_end: float | None,
    limit: float | None,
    limit_text: str,
    slope_per_hour: float | None,
    high_per_hour: float | None,
    time_to_limit_s: float | None,
    earliest_s: float | None,
) -> str:
    """Write the projection as one sentence."""
    if limit is None or rss_end is None:
        return f"No time to the limit is projected: the memory limit is {limit_text}."
    if slope_per_hour is None:
        return "No time to the limit is projected, because the slope per hour could not be estimated."
    if rss_end >= limit:
        return f"RSS ({rss_end / MIB:,.0f} MiB) is already at or above the limit of {limit / MIB:,.0f} MiB, {limit_text}."
    if slope_per_hour <= 0 or time_to_limit_s is None:
        return (
            f"RSS is not rising over time ({slope_per_hour / MIB:+,.1f} MiB/h), so it does not approach the limit of "
            f"{limit / MIB:,.0f} MiB, {limit_text}."
        )

    sentence = (
        f"At {slope_per_hour / MIB:+,.1f} MiB/h, RSS ({rss_end / MIB:,.0f} MiB) would reach the limit of "
        f"{limit / MIB:,.0f} MiB in {format_duration(time_to_limit_s)}"
    )
    if earliest_s is not None and high_per_hour is not None and format_duration(earliest_s) != format_duration(time_to_limit_s):
        sentence += f" ({format_duration(earliest_s)} at the interval's upper bound, {high_per_hour / MIB:+,.1f} MiB/h)"
    return f"{sentence}. The limit is {limit_text}."


def format_duration(seconds: float) -> str:
    """Format a duration as minutes below 2 hours, hours below 2 days, else days."""
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.0f} days"


def _time_to_limit(current: float | None, slope_per_s: float | None, limit: float | None) -> float | None:
    if current is None or slope_per_s is None or limit is None:
        return None
    return projected_time_to_limit_s(current, slope_per_s, limit)


def _per_hour(slope_per_s: float | None) -> float | None:
    return None if slope_per_s is None else per_hour(slope_per_s)


def _unique_times(times: list[float], values: list[float]) -> tuple[list[float], list[float]]:
    """Keep the first value at each time, because two requests that end together share one sample."""
    unique_times: list[float] = []
    unique_values: list[float] = []
    for time_s, value in sorted(zip(times, values), key=lambda pair: pair[0]):
        if unique_times and time_s <= unique_times[-1]:
            continue
        unique_times.append(time_s)
        unique_values.append(value)
    return unique_times, unique_values
