"""Criteria and helpers that every profile's judgement shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soak.analysis import RunData, gauge_series, summarize_latency
from soak.criteria import Criteria, load_criteria
from soak.results import CriterionResult, RunResult, RunSeries

MIB = 1024 * 1024

TIMEOUT_RATE = "timeout_rate"
REQUESTS_COMPLETED = "requests_completed"
THREADS = "threads_recovered"
OPEN_FILES = "open_files_recovered"

TIMEOUT_STATUS = 504
# Locust's usage monitor warns at this CPU share of one core; above it the
# load generator's own timings (latency, pacing) stop being reliable.
LOCUST_CPU_SATURATED_PERCENT = 90.0


def profile_criteria(data: RunData, criteria_path: Path | None, profile: str) -> Criteria:
    """Load the criteria the run used, unless ``criteria_path`` overrides them."""
    settings = data.manifest.get("settings", {})
    if criteria_path is None and settings.get("criteria_path"):
        criteria_path = Path(settings["criteria_path"])
    return load_criteria(criteria_path, profile)


def new_result(data: RunData, profile: str, requests_planned: int, rows: list[dict[str, Any]] | None = None) -> RunResult:
    """Start a run's result with its counts, latency and the warnings every profile shares; no criteria yet.

    ``rows`` are the requests that the counts and latency cover (default: the planned, indexed requests).
    """
    rows = data.requests if rows is None else rows
    manifest = data.manifest
    settings = manifest.get("settings", {})
    times = manifest.get("times", {})
    return RunResult(
        profile=profile,
        leaks=settings.get("leaks", "unknown"),
        model=settings.get("model", "unknown"),
        run_dir=data.folder.path.name,
        verdict="ERROR",
        criteria=[],
        requests_planned=requests_planned,
        requests_completed=len(rows),
        requests_failed=sum(1 for row in rows if not row.get("ok")),
        latency=summarize_latency(rows),
        started_at=times.get("started_at"),
        ended_at=times.get("ended_at"),
        error=manifest.get("error"),
        warnings=shared_warnings(data),
        manifest=manifest,
    )


def tracing_was_on(data: RunData) -> bool:
    """Return whether the gateway traced Python allocations during the run, which slows inference several times."""
    if (data.manifest.get("settings") or {}).get("tracemalloc_frames"):
        return True
    return any((row.get("status") or {}).get("tracemalloc_traced_bytes") is not None for row in data.samples)


def timing_not_applicable(key: str, title: str, unit: str) -> CriterionResult:
    reason = (
        "tracemalloc traced the gateway's allocations during this run, which slows inference several times, "
        "so timing criteria do not apply."
    )
    return CriterionResult(key, title, "NOT_APPLICABLE", None, None, unit, reason)


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
    data: RunData, warm_sample: dict[str, Any] | None, warm_label: str, field: str, key: str, title: str, criteria: Criteria
) -> CriterionResult:
    """Compare a process count (threads, open files) at the end with its post-warm-up value plus the tolerance.

    ``warm_sample`` is the sample that gives the post-warm-up count and
    ``warm_label`` describes in words when it was taken ("after the warm-up requests").
    """
    noun = field.replace("_", " ")
    if not criteria.thread_and_file_counts_return:
        reason = "The criteria file turns this check off (thread_and_file_counts_return = false)."
        return CriterionResult(key, title, "NOT_APPLICABLE", None, None, "count", reason)
    with_field = [row for row in data.samples if row.get(field) is not None]
    if not with_field:
        reason = f"The gateway's process was not sampled, so its {noun} are unknown."
        return CriterionResult(key, title, "NOT_APPLICABLE", None, None, "count", reason)
    if warm_sample is None or warm_sample.get(field) is None:
        reason = f"No sample was taken {warm_label}, so the post-warm-up count of {noun} is unknown."
        return CriterionResult(key, title, "INCONCLUSIVE", None, None, "count", reason)

    warm = warm_sample[field]
    limit = warm + criteria.thread_and_file_count_tolerance
    end = with_field[-1][field]
    details = {
        "post_warmup": warm,
        "post_warmup_time_s": warm_sample.get("time_s"),
        "tolerance": criteria.thread_and_file_count_tolerance,
        "end": end,
        "peak": max(row[field] for row in with_field),
    }
    if end <= limit:
        reason = f"{end} {noun} at the end, {warm} {warm_label}."
        return CriterionResult(key, title, "PASS", end, limit, "count", reason, details)
    reason = f"{end} {noun} at the end, {end - warm} more than the {warm} {warm_label}."
    return CriterionResult(key, title, "FAIL", end, limit, "count", reason, details)


def judge_counts_recovered(
    data: RunData, warm_sample: dict[str, Any] | None, warm_label: str, criteria: Criteria
) -> list[CriterionResult]:
    """Judge threads and open files, both against the same post-warm-up sample."""
    return [
        judge_count_recovered(data, warm_sample, warm_label, "threads", THREADS, "Threads back to the post-warm-up count", criteria),
        judge_count_recovered(
            data, warm_sample, warm_label, "open_files", OPEN_FILES, "Open files back to the post-warm-up count", criteria
        ),
    ]


def first_sample_after(samples: list[dict[str, Any]], time_s: float) -> dict[str, Any] | None:
    for row in samples:
        if row["time_s"] >= time_s:
            return row
    return None


def status_readings(data: RunData, event_name: str, *keys: str) -> list[tuple[float, dict[str, Any]]]:
    """Return every successful status reading with ``keys``, as (answered time, figures), oldest first.

    Readings come from two independent readers: the sampler (``samples.jsonl``,
    a 0.5 s timeout) and the profile itself (``event_name`` rows of
    ``events.jsonl``, with a longer timeout). A reading counts at the time its
    answer arrived, because a blocked gateway answers late.
    """
    readings = []
    for row in data.samples:
        status = row.get("status")
        if status and all(status.get(key) is not None for key in keys):
            answered_s = row["time_s"] + (row.get("status_latency_ms") or 0.0) / 1000
            readings.append((answered_s, {key: status[key] for key in keys}))
    for row in data.events_named(event_name):
        if row.get("error") is None and all(row.get(key) is not None for key in keys):
            readings.append((row.get("answered_s", row["time_s"]), {key: row[key] for key in keys}))
    return sorted(readings, key=lambda reading: reading[0])


def shared_warnings(data: RunData) -> list[str]:
    """List what makes any run's measurements less reliable than usual."""
    warnings = []
    manifest = data.manifest

    failed_status = [row for row in data.samples if row.get("status_error")]
    if failed_status:
        warnings.append(
            f"{len(failed_status)} of {len(data.samples)} status reads failed; the first: {failed_status[0]['status_error']}."
        )

    rss_source = (manifest.get("target") or {}).get("rss_source")
    if rss_source == "status":
        warnings.append(
            "The runner did not start this gateway and had no PID to sample, so RSS came from the gateway's own "
            "rss_bytes figure in GET /v1/status; thread, open-file and per-process figures are missing."
        )

    locust = manifest.get("locust") or {}
    peak_cpu = locust.get("cpu_percent_max")
    if locust.get("cpu_saturated") or locust.get("cpu_warning"):
        figure = f" (peak {peak_cpu:.0f} % of a core)" if peak_cpu is not None else ""
        warnings.append(
            f"The load generator was CPU-saturated{figure}: Locust's latency figures and request pacing "
            "may be inflated; run it with --processes or on a less loaded machine."
        )

    gateway = manifest.get("gateway") or {}
    if gateway.get("exited_before_stop"):
        warnings.append(f"The gateway exited by itself during the run, with status {gateway.get('exit_code')}.")

    if tracing_was_on(data):
        warnings.append(
            "tracemalloc was on: inference was several times slower than untraced, so timing criteria are "
            "not applicable and RSS includes tracemalloc's own bookkeeping."
        )
    return warnings


def build_series(
    data: RunData,
    request_index: list[int],
    request_end_time_s: list[float],
    request_rss_bytes: list[int],
    *,
    rss_limit_bytes: float | None = None,
    growth_fit: tuple[int, float, float] | None = None,
) -> RunSeries:
    """Build the plotted series; times become seconds since the gateway was ready."""
    origin = data.ready_time_s
    return RunSeries(
        request_index=request_index,
        request_end_s=[round(time_s - origin, 3) for time_s in request_end_time_s],
        request_rss_bytes=request_rss_bytes,
        sample_time_s=[round(row["time_s"] - origin, 3) for row in data.samples],
        sample_rss_bytes=[row.get("rss_bytes") for row in data.samples],
        gauges=gauge_series(data.samples),
        rss_limit_bytes=rss_limit_bytes,
        growth_fit=growth_fit,
    )
