"""Judge a patterns-profile run: request sequences that made speech services leak in the field.

- Single-flight loading: the burst of simultaneous first requests for one
  model identity loaded it exactly once (``model_loads_total`` before and
  after the burst).
- Varying lengths: RSS right after each request of the varying-length phase
  does not grow per request beyond 1 % of a model instance (the leak verdict;
  INCONCLUSIVE is tolerated unless the criteria file says otherwise).
- Short files after long ones: RSS does not keep growing over the short
  files. How far RSS stays above its level before the long files (the
  high-water mark they leave) is reported in the details, not judged: glibc
  keeps freed memory of large decodes in its arenas until ``malloc_trim``.
- Timeout rate 0, every planned request completed, threads and open files back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soak.analysis import RequestRss, RunData, rss_after_requests
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
from soak.results import CriterionResult, RunResult, combine_statuses
from soak.verdict import leak_verdict

SINGLE_FLIGHT = "single_flight_loads"
VARYING = "varying_length_growth"
SHORT_AFTER_LONG = "short_after_long_growth"


def evaluate_patterns(data: RunData, criteria_path: Path | None = None) -> RunResult:
    criteria = profile_criteria(data, criteria_path, "patterns")
    planned = int((data.events_named("patterns_finished") or [{}])[0].get("planned") or len(data.requests))
    result = new_result(data, "patterns", planned)
    points = rss_after_requests(data.requests, data.samples)
    result.series = build_series(data, [point.index for point in points], [point.end_time_s for point in points],
                                 [point.rss_bytes for point in points])
    if result.error is not None:
        return result

    phases = {row["index"]: row.get("phase") for row in data.requests}
    by_phase: dict[str, list[RequestRss]] = {}
    for point in points:
        by_phase.setdefault(phases.get(point.index) or "unknown", []).append(point)
    model_bytes = (data.manifest.get("models", {}).get(result.model) or {}).get("instance_bytes")

    varying = judge_per_request_growth(VARYING, "RSS growth per request over varying audio lengths",
                                       by_phase.get("varying", []), model_bytes, criteria)
    short = judge_per_request_growth(SHORT_AFTER_LONG, "RSS growth over short files after long ones",
                                     by_phase.get("short", []), model_bytes, criteria)
    short = with_high_water(short, by_phase)
    burst = by_phase.get("burst", [])
    warm_sample = max(burst, key=lambda point: point.end_time_s).sample if burst else None
    result.criteria = [
        judge_single_flight(data),
        varying,
        short,
        judge_timeout_rate(data.requests, criteria),
        judge_requests_completed(data.requests, planned),
        *judge_counts_recovered(data, warm_sample, "after the burst", criteria),
    ]
    result.verdict = combine_statuses(result.criteria)
    for criterion in (varying, short):
        if criterion.tolerated:
            result.warnings.append(f"{criterion.title}: INCONCLUSIVE and tolerated (fail_on_inconclusive_leak_verdict is false).")
    return result


def judge_single_flight(data: RunData) -> CriterionResult:
    """Count the model loads that the burst of first requests caused."""
    title = "One model load for a burst of first requests"
    started = data.events_named("burst_started")
    finished = data.events_named("burst_finished")
    if not started or not finished:
        return CriterionResult(SINGLE_FLIGHT, title, "INCONCLUSIVE", None, 1, "count", "The profile did not finish its burst.")

    before, after = started[0], finished[0]
    model = before.get("model")
    details = {"model": model, "burst_size": before.get("size"), "loads_before": before.get("model_loads_total"),
               "loads_after": after.get("model_loads_total"), "cached_before": before.get("cached_identities")}
    if not model or model in (before.get("cached_identities") or []):
        reason = (
            f"The burst's model identity ({model or 'the default model'}) was already loaded, so the burst could not "
            "show duplicate loads; give the gateway a model identity that nothing has loaded yet."
        )
        return CriterionResult(SINGLE_FLIGHT, title, "INCONCLUSIVE", None, 1, "count", reason, details)
    if before.get("model_loads_total") is None or after.get("model_loads_total") is None:
        reason = "The status read before or after the burst failed, so the loads could not be counted."
        return CriterionResult(SINGLE_FLIGHT, title, "INCONCLUSIVE", None, 1, "count", reason, details)

    burst_rows = [row for row in data.requests if row.get("phase") == "burst"]
    succeeded = sum(1 for row in burst_rows if row.get("ok"))
    loads = after["model_loads_total"] - before["model_loads_total"]
    text = f"{before.get('size')} simultaneous first requests for {model} ({succeeded} succeeded) caused {loads} model loads"
    if loads == 1:
        return CriterionResult(SINGLE_FLIGHT, title, "PASS", loads, 1, "count", text + ".", details)
    if loads == 0:
        return CriterionResult(SINGLE_FLIGHT, title, "INCONCLUSIVE", loads, 1, "count",
                               text + ", so the identity was never loaded; see the burst's request errors.", details)
    return CriterionResult(SINGLE_FLIGHT, title, "FAIL", loads, 1, "count",
                           text + ": without single-flight loading each concurrent request built its own instance.", details)


def judge_per_request_growth(
    key: str, title: str, points: list[RequestRss], model_bytes: int | None, criteria: Criteria
) -> CriterionResult:
    """Run the per-request leak verdict over one phase's RSS points, against 1 % of a model instance per request."""
    if model_bytes is None:
        reason = "The model's instance size is unknown, so the limit per request cannot be computed; pass --model-bytes."
        return CriterionResult(key, title, "INCONCLUSIVE", None, None, "bytes/request", reason)
    min_rate = criteria.min_growth_per_request_bytes(model_bytes)
    ordered = sorted(points, key=lambda point: point.index)
    verdict = leak_verdict(
        [point.index for point in ordered],
        [point.rss_bytes for point in ordered],
        min_leak_rate=min_rate,
        alpha=criteria.leak_alpha,
        min_points=criteria.leak_min_points,
        rate_unit="bytes/request",
    )
    details: dict[str, Any] = {"points": len(ordered), **verdict.to_dict()}
    if verdict.slope is not None and verdict.slope_low is not None and verdict.slope_high is not None:
        reason = (
            f"RSS grew {verdict.slope / MIB:+.2f} MiB/request (interval {verdict.slope_low / MIB:+.2f} to "
            f"{verdict.slope_high / MIB:+.2f}) against {min_rate / MIB:.2f} MiB/request: {verdict.verdict}."
        )
    else:
        reason = verdict.reason
    tolerated = verdict.verdict == "INCONCLUSIVE" and not criteria.fail_on_inconclusive_leak_verdict
    return CriterionResult(key, title, verdict.verdict, verdict.slope, min_rate, "bytes/request", reason, details, tolerated=tolerated)


def with_high_water(criterion: CriterionResult, by_phase: dict[str, list[RequestRss]]) -> CriterionResult:
    """Add the high-water mark the long files left to the short-phase criterion's details and reason."""
    before = sorted(by_phase.get("varying", []), key=lambda point: point.index)
    long_points = by_phase.get("long", [])
    short = sorted(by_phase.get("short", []), key=lambda point: point.index)
    if not before or not long_points or not short:
        return criterion
    before_bytes = before[-1].rss_bytes
    peak_bytes = max(point.rss_bytes for point in long_points)
    end_bytes = short[-1].rss_bytes
    details = {**criterion.details, "rss_before_long_bytes": before_bytes, "rss_peak_long_bytes": peak_bytes,
               "rss_after_short_bytes": end_bytes, "retained_bytes": end_bytes - before_bytes}
    retained_mib = (end_bytes - before_bytes) / MIB
    direction = "above" if retained_mib >= 0 else "below"
    reason = (
        f"{criterion.reason} After the short files RSS was {abs(retained_mib):.0f} MiB {direction} its level before "
        f"the long files ({before_bytes / MIB:.0f} MiB before, {peak_bytes / MIB:.0f} MiB at the peak, "
        f"{end_bytes / MIB:.0f} MiB after the short files)."
    )
    return CriterionResult(criterion.key, criterion.title, criterion.status, criterion.measured, criterion.limit,
                           criterion.unit, reason, details, tolerated=criterion.tolerated)
