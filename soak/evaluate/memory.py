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
from typing import Any

from soak.analysis import RequestRss, RunData, gauge_series, nearest_status, rss_after_requests, summarize_latency
from soak.criteria import Criteria, load_criteria
from soak.results import CriterionResult, RunResult, RunSeries, combine_statuses
from soak.rundir import RunFolder, RunFolderError
from soak.verdict import leak_verdict

MIB = 1024 * 1024

GROWTH = "rss_growth_per_request"
RSS_AFTER = "rss_after_profile"
TIMEOUT_RATE = "timeout_rate"
REQUESTS_COMPLETED = "requests_completed"
THREADS = "threads_recovered"
OPEN_FILES = "open_files_recovered"

TIMEOUT_STATUS = 504


def evaluate_run(folder: RunFolder, criteria_path: Path | None = None) -> RunResult:
    """Judge the run saved in ``folder``.

    ``criteria_path`` overrides the criteria file recorded in the manifest;
    with neither, the packaged defaults apply.
    """
    data = RunData.load(folder)
    manifest = data.manifest
    profile = manifest.get("profile")
    if profile != "memory":
        raise RunFolderError(f"{folder.path} contains a run of profile {profile!r}, but soak can judge only memory-profile runs so far")

    settings = manifest.get("settings", {})
    if criteria_path is None and settings.get("criteria_path"):
        criteria_path = Path(settings["criteria_path"])
    criteria = load_criteria(criteria_path, "memory")

    result = RunResult(
        profile="memory",
        leaks=settings.get("leaks", "unknown"),
        model=settings.get("model", "unknown"),
        run_dir=folder.path.name,
        verdict="ERROR",
        criteria=[],
        requests_planned=int(settings.get("requests", 0)),
        requests_completed=len(data.requests),
        requests_failed=sum(1 for row in data.requests if not row.get("ok")),
        latency=summarize_latency(data.requests),
        started_at=manifest.get("times", {}).get("started_at"),
        ended_at=manifest.get("times", {}).get("ended_at"),
        error=manifest.get("error"),
        manifest=manifest,
    )
    points = rss_after_requests(data.requests, data.samples)
    result.warnings = collect_warnings(data, points)

    if result.error is not None:
        result.series = build_series(data, points, rss_limit_bytes=None, growth_fit=None)
        return result

    model_bytes = int(manifest["models"][result.model]["instance_bytes"])
    cache_bound = int(settings["cache_max_models"])

    counts_warmup = counts_warmup_point(points, int(settings.get("users", 1)))
    growth, growth_fit = judge_growth(points, cache_bound, model_bytes, criteria)
    rss_after = judge_rss_after(data, points, cache_bound, model_bytes, criteria)
    result.criteria = [
        growth,
        rss_after,
        judge_timeout_rate(data.requests, criteria),
        judge_requests_completed(data.requests, result.requests_planned),
        judge_count_recovered(data, counts_warmup, "threads", THREADS, "Threads back to the post-warm-up count", criteria),
        judge_count_recovered(
            data, counts_warmup, "open_files", OPEN_FILES, "Open files back to the post-warm-up count", criteria
        ),
    ]
    result.verdict = combine_statuses(result.criteria)
    if growth.tolerated:
        result.warnings.append(
            "The growth verdict is INCONCLUSIVE and does not decide the run (fail_on_inconclusive_leak_verdict "
            "is false); the RSS limit after the profile still applies."
        )
    result.series = build_series(data, points, rss_limit_bytes=rss_after.limit, growth_fit=growth_fit)
    return result


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
    (imports, the VAD and what the first inference leaves allocated).
    """
    title = "RSS after the memory profile"
    rss_samples = data.rss_samples()
    if not points or not rss_samples:
        reason = "No RSS sample follows a completed request, so there is no base to compare with."
        return CriterionResult(RSS_AFTER, title, "INCONCLUSIVE", None, None, "bytes", reason)

    warmup = points[0]
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


def judge_timeout_rate(requests: list[dict[str, Any]], criteria: Criteria) -> CriterionResult:
    """Count requests that ended in HTTP 504 or a client-side timeout."""
    title = "Timeout rate"
    limit_percent = criteria.max_timeout_rate_percent
    if not requests:
        return CriterionResult(TIMEOUT_RATE, title, "INCONCLUSIVE", None, limit_percent, "percent", "No request completed.")

    timed_out = [row for row in requests if is_timeout(row)]
    rate = 100.0 * len(timed_out) / len(requests)
    details = {"timed_out": len(timed_out), "requests": len(requests)}
    if rate <= limit_percent:
        reason = f"{len(timed_out)} of {len(requests)} requests timed out."
        return CriterionResult(TIMEOUT_RATE, title, "PASS", rate, limit_percent, "percent", reason, details)
    reason = f"{len(timed_out)} of {len(requests)} requests timed out ({rate:.1f} %), above the {limit_percent:g} % limit."
    return CriterionResult(TIMEOUT_RATE, title, "FAIL", rate, limit_percent, "percent", reason, details)


def is_timeout(row: dict[str, Any]) -> bool:
    if row.get("status") == TIMEOUT_STATUS:
        return True
    error = (row.get("error") or "").lower()
    return row.get("status", 0) == 0 and ("timeout" in error or "timed out" in error)


def judge_requests_completed(requests: list[dict[str, Any]], planned: int) -> CriterionResult:
    """Check that every planned request got a 2xx response.

    Without this, a run whose requests all failed would show flat memory and pass.
    """
    title = "Requests completed"
    succeeded = sum(1 for row in requests if row.get("ok"))
    failures: dict[str, int] = {}
    for row in requests:
        if not row.get("ok"):
            label = f"HTTP {row['status']}" if row.get("status") else "no response"
            failures[label] = failures.get(label, 0) + 1
    details = {"succeeded": succeeded, "sent": len(requests), "planned": planned, "failures": failures}

    if succeeded >= planned:
        reason = f"All {planned} planned requests succeeded."
        return CriterionResult(REQUESTS_COMPLETED, title, "PASS", succeeded, planned, "count", reason, details)

    parts = [f"{succeeded} of {planned} planned requests succeeded"]
    if failures:
        parts.append("failures: " + ", ".join(f"{label} x{count}" for label, count in sorted(failures.items())))
    if len(requests) < planned:
        parts.append(f"{planned - len(requests)} were never sent before the run's time limit")
    reason = "; ".join(parts) + "."
    return CriterionResult(REQUESTS_COMPLETED, title, "FAIL", succeeded, planned, "count", reason, details)


def judge_count_recovered(
    data: RunData, warmup: RequestRss | None, field: str, key: str, title: str, criteria: Criteria
) -> CriterionResult:
    """Compare a process count (threads, open files) at the end with its post-warm-up value plus the tolerance."""
    noun = field.replace("_", " ")
    if not criteria.thread_and_file_counts_return:
        reason = "The criteria file turns this check off (thread_and_file_counts_return = false)."
        return CriterionResult(key, title, "NOT_APPLICABLE", None, None, "count", reason)
    with_field = [row for row in data.samples if row.get(field) is not None]
    if not with_field:
        reason = f"The gateway's process was not sampled, so its {noun} are unknown."
        return CriterionResult(key, title, "NOT_APPLICABLE", None, None, "count", reason)
    if warmup is None or warmup.sample.get(field) is None:
        reason = f"No sample follows the warm-up requests, so the post-warm-up count of {noun} is unknown."
        return CriterionResult(key, title, "INCONCLUSIVE", None, None, "count", reason)

    warm = warmup.sample[field]
    limit = warm + criteria.thread_and_file_count_tolerance
    end = with_field[-1][field]
    details = {
        "post_warmup": warm,
        "post_warmup_request_index": warmup.index,
        "tolerance": criteria.thread_and_file_count_tolerance,
        "end": end,
        "peak": max(row[field] for row in with_field),
    }
    if end <= limit:
        reason = f"{end} {noun} at the end, {warm} after the warm-up requests."
        return CriterionResult(key, title, "PASS", end, limit, "count", reason, details)
    reason = f"{end} {noun} at the end, {end - warm} more than the {warm} after the warm-up requests."
    return CriterionResult(key, title, "FAIL", end, limit, "count", reason, details)


def counts_warmup_point(points: list[RequestRss], users: int) -> RequestRss | None:
    """Return the point after the first ``users`` requests completed.

    The worker pool starts its threads lazily, up to the load's concurrency,
    so the post-warm-up counts are taken once every user has had a request served.
    """
    if len(points) < users:
        return None
    return sorted(points, key=lambda point: point.end_time_s)[users - 1]


def collect_warnings(data: RunData, points: list[RequestRss]) -> list[str]:
    """List what makes this run's measurements less reliable than usual."""
    warnings = []
    late = [point.index for point in points if point.late]
    if late:
        warnings.append(
            f"{len(late)} of {len(points)} per-request RSS samples were taken after the next request had started "
            f"(requests {', '.join(map(str, late[:10]))}{'...' if len(late) > 10 else ''}); "
            "their RSS may include that request's allocations."
        )

    failed_status = [row for row in data.samples if row.get("status_error")]
    if failed_status:
        warnings.append(
            f"{len(failed_status)} of {len(data.samples)} status reads failed; the first: {failed_status[0]['status_error']}."
        )

    locust = data.manifest.get("locust", {})
    if locust.get("cpu_warning"):
        warnings.append("Locust reported CPU usage above 90 %, so its latency figures may be inflated.")

    gateway = data.manifest.get("gateway", {})
    if gateway.get("exited_before_stop"):
        warnings.append(f"The gateway exited by itself during the run, with status {gateway.get('exit_code')}.")
    return warnings


def build_series(
    data: RunData,
    points: list[RequestRss],
    *,
    rss_limit_bytes: float | None,
    growth_fit: tuple[int, float, float] | None,
) -> RunSeries:
    origin = data.ready_time_s
    return RunSeries(
        request_index=[point.index for point in points],
        request_end_s=[round(point.end_time_s - origin, 3) for point in points],
        request_rss_bytes=[point.rss_bytes for point in points],
        sample_time_s=[round(row["time_s"] - origin, 3) for row in data.samples],
        sample_rss_bytes=[row.get("rss_bytes") for row in data.samples],
        gauges=gauge_series(data.samples),
        rss_limit_bytes=rss_limit_bytes,
        growth_fit=growth_fit,
    )
