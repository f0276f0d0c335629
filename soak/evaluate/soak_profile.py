"""Judge a soak-profile run: a working day of steady load must not grow the gateway.

- RSS growth over the soak: the last sample's RSS minus the RSS after the
  first 5 % of the requests (the post-warm-up level) stays below
  ``soak_growth_bytes``.
- Leak verdict over time: Theil-Sen and Mann-Kendall over RSS against
  simulated time, against ``min_leak_rate_bytes_per_hour`` per simulated
  hour; only FAIL fails the run. A compressed run's x axis is the simulated
  clock (real seconds since the load started times ``compress``), so the
  threshold keeps its meaning per hour of service.
- Timeout rate 0, every planned request completed, threads and open files back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soak.analysis import RunData, rss_after_requests
from soak.criteria import Criteria
from soak.evaluate.common import (
    MIB,
    build_series,
    judge_counts_recovered,
    judge_requests_completed,
    judge_timeout_rate,
    new_result,
    profile_criteria,
)
from soak.memory_trend import memory_trend
from soak.results import CriterionResult, RunResult, combine_statuses
from soak.verdict import leak_verdict, per_hour

GROWTH = "soak_growth"
# The post-warm-up level is taken after this share of the planned requests (24 simulated minutes of 480).
# Thread pools start their threads lazily, and a paced load reaches its full concurrency only when
# requests happen to overlap, which the first few requests rarely do.
WARM_UP_FRACTION = 0.05
LEAK_VERDICT = "rss_trend_over_time"
SECONDS_PER_HOUR = 3600.0


def evaluate_soak(data: RunData, criteria_path: Path | None = None) -> RunResult:
    criteria = profile_criteria(data, criteria_path, "soak")
    settings = data.manifest.get("settings", {})
    planned = round(float(settings.get("soak_minutes", 0)) * float(settings.get("requests_per_min", 0)))
    result = new_result(data, "soak", planned)
    points = rss_after_requests(data.requests, data.samples)
    result.series = build_series(data, [point.index for point in points], [point.end_time_s for point in points],
                                 [point.rss_bytes for point in points])
    if result.error is not None:
        return result

    warm_sample = warm_up_sample(data, max(int(settings.get("users") or 1), round(planned * WARM_UP_FRACTION)))
    compress = float(settings.get("compress") or 1.0)
    x_s, rss = simulated_series(data, warm_sample, compress)
    trend = judge_trend(x_s, rss, compress, criteria)
    growth = judge_growth(data, warm_sample, criteria)
    result.criteria = [
        growth,
        trend,
        judge_timeout_rate(data.requests, criteria),
        judge_requests_completed(data.requests, planned),
        *judge_counts_recovered(data, peak_counts_sample(data, warm_sample), "at most over the first half of the soak", criteria),
    ]
    result.verdict = combine_statuses(result.criteria)
    if x_s:
        # The slope per hour and the time to the memory limit, on the simulated clock like the verdict.
        origin_s = float(data.manifest["times"]["load_started_s"])
        result.trend = memory_trend([origin_s + value for value in x_s], rss, {}, data.samples, data.manifest, criteria,
                                    per_hour_criterion=LEAK_VERDICT)
    result.warnings += schedule_warnings(data, compress, float(settings.get("requests_per_min") or 1.0))
    if trend.tolerated:
        result.warnings.append(
            "The leak verdict over time is INCONCLUSIVE and does not decide the run (fail_on_inconclusive_leak_verdict "
            "is false); the growth limit still applies."
        )
    return result


def warm_up_sample(data: RunData, requests: int) -> dict[str, Any] | None:
    """Return the first RSS sample after the first ``requests`` requests ended."""
    ends = sorted(row["end_time_s"] for row in data.requests)
    if not ends:
        return None
    after = ends[min(requests, len(ends)) - 1]
    return next((row for row in data.rss_samples() if row["time_s"] >= after), None)


def peak_counts_sample(data: RunData, warm_sample: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return a stand-in sample with the highest thread and open-file counts from the post-warm-up sample to mid-run.

    Over hours, short-lived threads come and go (one appeared and left
    every few tens of seconds in a fixed run), so a single post-warm-up
    sample would make one such thread at the end look like a leak. A thread
    or file kept per request still ends above this level.
    """
    if warm_sample is None:
        return None
    with_counts = [row for row in data.samples if row.get("threads") is not None and row["time_s"] >= warm_sample["time_s"]]
    if not with_counts:
        return warm_sample
    first_half = with_counts[: max(1, len(with_counts) // 2)]
    return {
        "time_s": warm_sample["time_s"],
        "threads": max(row["threads"] for row in first_half),
        "open_files": max((row.get("open_files") or 0) for row in first_half),
    }


def judge_growth(data: RunData, warm_sample: dict[str, Any] | None, criteria: Criteria) -> CriterionResult:
    title = "RSS growth over the soak"
    limit = criteria.soak_growth_bytes
    rss_samples = data.rss_samples()
    if warm_sample is None or not rss_samples:
        return CriterionResult(GROWTH, title, "INCONCLUSIVE", None, limit, "bytes", "No RSS sample follows the first requests.")

    end = rss_samples[-1]
    growth = end["rss_bytes"] - warm_sample["rss_bytes"]
    details = {
        "post_warmup_rss_bytes": warm_sample["rss_bytes"],
        "end_rss_bytes": end["rss_bytes"],
        "peak_rss_bytes": max(row["rss_bytes"] for row in rss_samples),
    }
    text = (
        f"RSS went from {warm_sample['rss_bytes'] / MIB:,.0f} MiB after the first requests to "
        f"{end['rss_bytes'] / MIB:,.0f} MiB at the end: {growth / MIB:+,.1f} MiB against a limit of {limit / MIB:,.0f} MiB."
    )
    status = "PASS" if growth < limit else "FAIL"
    return CriterionResult(GROWTH, title, status, growth, limit, "bytes", text, details)


def simulated_series(data: RunData, warm_sample: dict[str, Any] | None, compress: float) -> tuple[list[float], list[int]]:
    """Return (simulated seconds since the load started, RSS) for every sample from the post-warm-up one on.

    Samples can share a timestamp at the rounding of ``time_s``; the verdict
    needs a strictly increasing x, so the later of two such samples wins.
    """
    load_started_s = (data.manifest.get("times") or {}).get("load_started_s")
    if warm_sample is None or load_started_s is None:
        return [], []
    series: dict[float, int] = {}
    for row in data.rss_samples():
        if row["time_s"] >= warm_sample["time_s"]:
            series[(row["time_s"] - load_started_s) * compress] = row["rss_bytes"]
    x_s = sorted(series)
    return x_s, [series[value] for value in x_s]


def judge_trend(x_s: list[float], rss: list[int], compress: float, criteria: Criteria) -> CriterionResult:
    """Run the leak verdict over RSS against simulated time, against the minimum leak rate per simulated hour."""
    title = "Leak verdict on RSS over simulated time"
    min_rate_per_s = criteria.min_leak_rate_bytes_per_s
    limit_per_hour = per_hour(min_rate_per_s)
    if not x_s:
        reason = "No RSS sample follows the first requests, so there is no series to judge."
        return CriterionResult(LEAK_VERDICT, title, "INCONCLUSIVE", None, limit_per_hour, "bytes/hour", reason)

    verdict = leak_verdict(
        x_s,
        rss,
        min_leak_rate=min_rate_per_s,
        alpha=criteria.leak_alpha,
        min_points=criteria.leak_min_points,
        rate_unit="bytes per simulated second",
    )
    details: dict[str, Any] = {"compress": compress, **verdict.to_dict()}
    slope_per_hour = per_hour(verdict.slope) if verdict.slope is not None else None
    if slope_per_hour is not None:
        low = per_hour(verdict.slope_low) / MIB if verdict.slope_low is not None else None
        high = per_hour(verdict.slope_high) / MIB if verdict.slope_high is not None else None
        interval = f"interval {low:+,.1f} to {high:+,.1f} MiB/h" if low is not None and high is not None else "interval unbounded"
        reason = (
            f"RSS changed by {slope_per_hour / MIB:+,.1f} MiB per simulated hour ({interval}) against a minimum leak "
            f"rate of {limit_per_hour / MIB:,.0f} MiB/h: {verdict.verdict}. {verdict.reason}"
        )
    else:
        reason = verdict.reason
    tolerated = verdict.verdict == "INCONCLUSIVE" and not criteria.fail_on_inconclusive_leak_verdict
    return CriterionResult(LEAK_VERDICT, title, verdict.verdict, slope_per_hour, limit_per_hour, "bytes/hour",
                           reason, details, tolerated=tolerated)


def schedule_warnings(data: RunData, compress: float, requests_per_min: float) -> list[str]:
    """Warn when requests went out later than due, so the run compressed the day less than it claims."""
    lags_s = sorted(row["lag_s"] for row in data.requests if row.get("lag_s") is not None)
    if not lags_s:
        return []
    interval_s = 60.0 / (requests_per_min * compress)
    median_s = lags_s[len(lags_s) // 2]
    if median_s <= interval_s:
        return []
    return [
        f"The schedule fell behind: the median request went out {median_s:.1f} s after it was due (the longest "
        f"{lags_s[-1]:.1f} s), against {interval_s:.2f} s between due times. The gateway or the machine could not "
        f"keep up with --compress {compress:g}; the run covered the simulated day at a lower rate."
    ]
