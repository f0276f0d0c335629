"""Judge a memory-profile run against its exit criteria, from the run folder alone.

The criteria, with the reasoning behind "base" and the limits, are described
in docs/soak-harness.md. In short:

- RSS growth per request after the cache fills: the leak verdict over
  (request index, RSS right after the request), skipping the first
  ``cache bound`` requests, against 1 % of a model instance per request.
- RSS after the profile: the last sample's RSS must stay within
  ``base + (cache bound + 0.5) x model``, where base is the RSS after the
  first request minus the model instances cached at that moment.
- Timeout rate: no request ended in HTTP 504 or a client timeout.
- Requests completed: every planned request got a 2xx response.
- Threads and open files: back to their post-warm-up count at the end.
"""

from __future__ import annotations

from pathlib import Path

from soak.analysis import RequestRss, RunData, nearest_status, rss_after_requests
from soak.criteria import Criteria
from soak.diagnosis import diagnose
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
from soak.results import CriterionResult, RunResult, RunSeries, combine_statuses
from soak.verdict import leak_verdict

GROWTH = "rss_growth_per_request"
RSS_AFTER = "rss_after_profile"


def evaluate_memory(data: RunData, criteria_path: Path | None = None) -> RunResult:
    """Judge a memory-profile run; ``criteria_path`` overrides the criteria file recorded in the manifest."""
    manifest = data.manifest
    settings = manifest.get("settings", {})
    criteria = profile_criteria(data, criteria_path, "memory")
    result = new_result(data, "memory", int(settings.get("requests", 0)))
    points = rss_after_requests(data.requests, data.samples)
    result.warnings = late_sample_warnings(points) + result.warnings

    if result.error is not None:
        result.series = series_of(data, points, rss_limit_bytes=None, growth_fit=None)
        return result

    model_bytes = (manifest.get("models", {}).get(result.model) or {}).get("instance_bytes")
    cache_bound = int(settings["cache_max_models"])
    if model_bytes is None:
        growth, growth_fit = model_size_unknown(GROWTH, "RSS growth per request after the cache fills", "bytes/request"), None
        rss_after = model_size_unknown(RSS_AFTER, "RSS after the memory profile", "bytes")
    else:
        growth, growth_fit = judge_growth(points, cache_bound, int(model_bytes), criteria)
        rss_after = judge_rss_after(data, points, cache_bound, int(model_bytes), criteria)

    counts_warmup = counts_warmup_point(points, int(settings.get("users", 1)))
    result.criteria = [
        growth,
        rss_after,
        judge_timeout_rate(data.requests, criteria),
        judge_requests_completed(data.requests, result.requests_planned),
        *judge_counts_recovered(data, counts_warmup.sample if counts_warmup else None, "after the warm-up requests", criteria),
    ]
    result.verdict = combine_statuses(result.criteria)
    if growth.tolerated:
        result.warnings.append(
            "The growth verdict is INCONCLUSIVE and does not decide the run (fail_on_inconclusive_leak_verdict "
            "is false); the RSS limit after the profile still applies."
        )
    result.series = series_of(data, points, rss_limit_bytes=rss_after.limit, growth_fit=growth_fit)

    # The slope per hour, the time to the memory limit and the diagnosis use
    # the same window as the growth criterion: the samples after the cache filled.
    after_fill = [point for point in points if point.index >= cache_bound]
    result.trend = memory_trend(
        [point.sample["time_s"] for point in after_fill],
        [point.rss_bytes for point in after_fill],
        growth.details,
        data.samples,
        manifest,
        criteria,
        # A memory-profile run lasts minutes, far too short to resolve the
        # minimum leak rate per hour, so only the per-request slope decides.
        per_request_criterion=GROWTH,
    )
    rows = [point.sample for point in after_fill]
    final = data.rss_samples()[-1:]
    if final and (not rows or final[0] is not rows[-1]):
        rows += final
    result.diagnosis = diagnose(
        data.folder.path,
        rows,
        model_bytes=model_bytes,
        window=f"From the sample after request {cache_bound}, when the cache is full, to the end of the run",
        leak_verdict=growth.status,
        manifest_diagnosis=manifest.get("diagnosis"),
    )
    return result


def model_size_unknown(key: str, title: str, unit: str) -> CriterionResult:
    reason = (
        "The model's instance size is unknown, so this limit cannot be computed; pass --model-bytes, or "
        "--models-dir with the folder the gateway serves its models from."
    )
    return CriterionResult(key, title, "INCONCLUSIVE", None, None, unit, reason)


def series_of(
    data: RunData,
    points: list[RequestRss],
    *,
    rss_limit_bytes: float | None,
    growth_fit: tuple[int, float, float] | None,
) -> RunSeries:
    return build_series(
        data,
        [point.index for point in points],
        [point.end_time_s for point in points],
        [point.rss_bytes for point in points],
        rss_limit_bytes=rss_limit_bytes,
        growth_fit=growth_fit,
    )


def judge_growth(
    points: list[RequestRss], cache_bound: int, model_bytes: int, criteria: Criteria
) -> tuple[CriterionResult, tuple[int, float, float] | None]:
    """Run the leak verdict over RSS per request index, from the first request that has to evict."""
    title = "RSS growth per request after the cache fills"
    min_rate = criteria.min_growth_per_request_bytes(model_bytes)
    # The first `cache_bound` requests may each load an instance into a cache
    # that is not full yet, which is expected growth, not a leak.
    after_fill = [point for point in points if point.index >= cache_bound]
    details: dict[str, Any] = {"first_request_index": cache_bound, "points": len(after_fill)}

    verdict = leak_verdict(
        [point.index for point in after_fill],
        [point.rss_bytes for point in after_fill],
        min_leak_rate=min_rate,
        alpha=criteria.leak_alpha,
        min_points=criteria.leak_min_points,
        rate_unit="bytes/request",
    )
    details.update(verdict.to_dict())
    confidence = f"{(1 - criteria.leak_alpha) * 100:g} %"
    reason = describe_growth(verdict.verdict, confidence, verdict.slope, verdict.slope_low, verdict.slope_high, min_rate, verdict.reason)
    fit = None
    if verdict.slope is not None and verdict.intercept is not None:
        fit = (after_fill[verdict.warmup_cut].index, verdict.intercept, verdict.slope)
    # The criteria file decides whether an undecided leak verdict fails the
    # run. The absolute RSS limit applies either way.
    tolerated = verdict.verdict == "INCONCLUSIVE" and not criteria.fail_on_inconclusive_leak_verdict
    criterion = CriterionResult(
        GROWTH, title, verdict.verdict, verdict.slope, min_rate, "bytes/request", reason, details, tolerated=tolerated
    )
    return criterion, fit


def describe_growth(
    status: str,
    confidence: str,
    slope: float | None,
    slope_low: float | None,
    slope_high: float | None,
    min_rate: float,
    verdict_reason: str,
) -> str:
    """Write the growth criterion's reason in MiB, falling back to the verdict's own sentence."""
    if slope is None or slope_low is None or slope_high is None:
        return verdict_reason
    measured = f"RSS grew {slope / MIB:+.2f} MiB/request ({confidence} interval {slope_low / MIB:+.2f} to {slope_high / MIB:+.2f})"
    limit = f"{min_rate / MIB:.2f} MiB/request"
    if status == "FAIL":
        return f"{measured}, entirely above the {limit} limit, with a significant upward trend."
    if status == "PASS":
        return f"{measured}, entirely below the {limit} limit."
    if slope_low > min_rate:
        return f"{measured}, above the {limit} limit, but the trend is not significant once autocorrelation is allowed for."
    return f"{measured}: the interval contains the {limit} limit, so the data cannot decide; run more requests."


def judge_rss_after(
    data: RunData, points: list[RequestRss], cache_bound: int, model_bytes: int, criteria: Criteria
) -> CriterionResult:
    """Compare the last RSS sample with ``base + (cache bound + 0.5) x model``.

    Base is the RSS after the first request minus the model instances the
    cache held then. That is the process without models, after its warm-up
    (imports, the VAD and what the first inference leaves allocated). When the
    next request had already started at that sample, the sample's RSS and its
    cached-model count may disagree, so the first request measured at rest is used.
    """
    title = "RSS after the memory profile"
    rss_samples = data.rss_samples()
    if not points or not rss_samples:
        reason = "No RSS sample follows a completed request, so there is no base to compare with."
        return CriterionResult(RSS_AFTER, title, "INCONCLUSIVE", None, None, "bytes", reason)

    # The first point whose sample no later request overlapped: its RSS and its status figures agree.
    warmup = next((point for point in points if not point.late), points[0])
    status = warmup.sample.get("status") or nearest_status(data.samples, warmup.sample["time_s"])
    models_cached = status.get("models_cached") if status else None
    if models_cached is None:
        reason = "No status reading gives the number of cached models after the first request, so base is unknown."
        return CriterionResult(RSS_AFTER, title, "INCONCLUSIVE", None, None, "bytes", reason)

    base_bytes = warmup.rss_bytes - models_cached * model_bytes
    limit = criteria.rss_limit_bytes(base_bytes, model_bytes, cache_bound)
    end = rss_samples[-1]
    measured = end["rss_bytes"]
    details = {
        "warmup_request_index": warmup.index,
        "warmup_rss_bytes": warmup.rss_bytes,
        "models_cached_after_warmup": models_cached,
        "base_bytes": base_bytes,
        "model_bytes": model_bytes,
        "cache_bound": cache_bound,
        "end_sample_trigger": end.get("trigger"),
        "peak_rss_bytes": max(row["rss_bytes"] for row in rss_samples),
    }
    comparison = f"{measured / MIB:.0f} MiB against a limit of {limit / MIB:.0f} MiB"
    formula = f"base {base_bytes / MIB:.0f} MiB + ({cache_bound} + 0.5) x {model_bytes / MIB:.1f} MiB"
    if measured <= limit:
        reason = f"RSS at the end was {comparison} ({formula})."
        return CriterionResult(RSS_AFTER, title, "PASS", measured, limit, "bytes", reason, details)
    excess_bytes = measured - limit
    reason = (
        f"RSS at the end was {comparison} ({formula}): {excess_bytes / MIB:.0f} MiB over, "
        f"the size of {excess_bytes / model_bytes:.1f} model instances."
    )
    return CriterionResult(RSS_AFTER, title, "FAIL", measured, limit, "bytes", reason, details)


def counts_warmup_point(points: list[RequestRss], users: int) -> RequestRss | None:
    """Return the point after the first ``users`` requests completed.

    The worker pool starts its threads lazily, up to the load's concurrency,
    so the post-warm-up counts are taken once every user has had a request served.
    """
    if len(points) < users:
        return None
    return sorted(points, key=lambda point: point.end_time_s)[users - 1]




def late_sample_warnings(points: list[RequestRss]) -> list[str]:
    late = [point.index for point in points if point.late]
    if not late:
        return []
    return [
        f"{len(late)} of {len(points)} per-request RSS samples were taken after the next request had started "
        f"(requests {', '.join(map(str, late[:10]))}{'...' if len(late) > 10 else ''}); "
        "their RSS may include that request's allocations."
    ]
