"""Judge a workers-profile run: the status endpoint responds while the pool is saturated, and the pool drains.

- Status calls while saturated: every one of the profile's concurrent
  ``GET /v1/status`` calls returned 200 within ``status_call_limit_s``.
- Pool saturated: the calls went out while the pool really was full,
  otherwise a quick answer proves nothing. Any of three signs counts: a
  status answer with every worker busy and the queue full, more
  transcriptions in flight on the client side than workers plus queue
  places, or a 503 (queue full) around the calls.
- Worker recovery: after the load stopped, a status reading shows no active
  worker and an empty queue within ``worker_recovery_s``.
- Threads and open files back to their count after the pool filled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soak.analysis import RunData
from soak.criteria import Criteria
from soak.evaluate.common import (
    build_series,
    first_sample_after,
    judge_counts_recovered,
    new_result,
    profile_criteria,
    status_readings,
    timing_not_applicable,
    tracing_was_on,
)
from soak.results import CriterionResult, RunResult, combine_statuses

STATUS_CALLS = "status_calls_under_saturation"
SATURATED = "pool_saturated"
RECOVERY = "worker_recovery"
REJECTED_STATUS = 503
# 503s this close to the status calls show that the queue was full while they went out.
REJECTION_WINDOW_S = 2.0


def evaluate_workers(data: RunData, criteria_path: Path | None = None) -> RunResult:
    criteria = profile_criteria(data, criteria_path, "workers")
    result = new_result(data, "workers", len(data.all_requests), rows=data.all_requests)
    result.series = build_series(data, [], [], [])
    if result.error is not None:
        return result

    traced = tracing_was_on(data)
    calls = judge_status_calls(data, criteria)
    recovery = judge_recovery(data, criteria)
    if traced:
        calls = timing_not_applicable(STATUS_CALLS, calls.title, "s")
        recovery = timing_not_applicable(RECOVERY, recovery.title, "s")
    finished = data.events_named("status_calls_finished")
    warm_sample = first_sample_after(data.samples, finished[0]["time_s"]) if finished else None
    result.criteria = [
        calls,
        judge_saturation(data),
        recovery,
        *judge_counts_recovered(data, warm_sample, "after the pool filled", criteria),
    ]
    result.verdict = combine_statuses(result.criteria)
    return result


def judge_status_calls(data: RunData, criteria: Criteria) -> CriterionResult:
    """Check that every status call made during saturation succeeded within the limit."""
    title = "Status calls while the pool is saturated"
    limit_s = criteria.status_call_limit_s
    started = data.events_named("status_calls_started")
    if not started:
        reason = "The profile never made its status calls (the load ended before them, or Locust stopped early)."
        return CriterionResult(STATUS_CALLS, title, "INCONCLUSIVE", None, limit_s, "s", reason)

    fired = int(started[0].get("calls") or 0)
    calls = data.events_named("status_call")
    failed = [row for row in calls if row.get("error")]
    latencies_s = [row["latency_ms"] / 1000 for row in calls]
    slowest_s = max(latencies_s, default=None)
    details: dict[str, Any] = {
        "fired": fired,
        "answered": len(calls) - len(failed),
        "failed": len(failed),
        "latency_s": sorted(round(value, 3) for value in latencies_s),
    }
    if len(calls) < fired:
        reason = f"Only {len(calls)} of {fired} status calls ended before the profile stopped; the others never returned."
        return CriterionResult(STATUS_CALLS, title, "FAIL", slowest_s, limit_s, "s", reason, details)
    if failed:
        reason = f"{len(failed)} of {fired} status calls failed; the first: {failed[0]['error']}."
        return CriterionResult(STATUS_CALLS, title, "FAIL", slowest_s, limit_s, "s", reason, details)

    slow = [value for value in latencies_s if value > limit_s]
    if slow:
        reason = (
            f"{len(slow)} of {fired} status calls took longer than {limit_s:g} s; the slowest took {slowest_s:.1f} s, "
            "so the status endpoint waited behind the transcriptions."
        )
        return CriterionResult(STATUS_CALLS, title, "FAIL", slowest_s, limit_s, "s", reason, details)
    reason = f"All {fired} status calls returned 200; the slowest took {slowest_s:.3f} s."
    return CriterionResult(STATUS_CALLS, title, "PASS", slowest_s, limit_s, "s", reason, details)


def judge_saturation(data: RunData) -> CriterionResult:
    """Check that the pool was full when the status calls went out."""
    title = "Pool saturated when the status calls went out"
    status = (data.manifest.get("target") or {}).get("status_at_ready") or {}
    workers_max = status.get("workers_max")
    queue_limit = status.get("queue_limit") or 0
    capacity = workers_max + queue_limit if workers_max is not None else None
    started = data.events_named("status_calls_started")
    if not started:
        return CriterionResult(SATURATED, title, "INCONCLUSIVE", None, capacity, "count", "The profile never made its status calls.")

    in_flight = sum(int(row.get("in_flight") or 0) for row in data.events_named("load_in_flight"))
    full_answers = [
        row for row in data.events_named("status_call")
        if row.get("error") is None
        and row.get("workers_active") is not None
        and row["workers_active"] >= (row.get("workers_max") or 0)
        and (row.get("queue_depth") or 0) >= (row.get("queue_limit") or 0)
    ]
    calls_s = started[0]["time_s"]
    finished = data.events_named("status_calls_finished")
    calls_end_s = finished[0]["time_s"] if finished else calls_s
    rejections = [
        row for row in data.all_requests
        if row.get("status") == REJECTED_STATUS and calls_s - REJECTION_WINDOW_S <= row["end_time_s"] <= calls_end_s + REJECTION_WINDOW_S
    ]
    signs = []
    if capacity is not None and in_flight > capacity:
        signs.append(f"{in_flight} transcriptions were in flight on the client side, more than the {capacity} workers and queue places")
    if full_answers:
        signs.append(f"{len(full_answers)} status answers showed every worker busy and the queue full")
    if rejections:
        signs.append(f"{len(rejections)} transcriptions got 503 (queue full) around the calls")
    details = {"in_flight": in_flight, "workers_max": workers_max, "queue_limit": queue_limit,
               "full_status_answers": len(full_answers), "rejections_near_calls": len(rejections),
               "load": load_outcomes(data)}

    if signs:
        return CriterionResult(SATURATED, title, "PASS", in_flight, capacity, "count", "; ".join(signs).capitalize() + ".", details)
    reason = (
        f"No sign that the pool was full when the status calls went out ({in_flight} transcriptions in flight for "
        f"{capacity} workers and queue places, no full status answer, no 503), so the calls prove nothing; "
        "use more users or longer audio."
    )
    return CriterionResult(SATURATED, title, "INCONCLUSIVE", in_flight, capacity, "count", reason, details)


def judge_recovery(data: RunData, criteria: Criteria) -> CriterionResult:
    """Measure how long after the load stopped the pool showed no active worker and an empty queue."""
    title = "Active workers back to 0 after the load stopped"
    limit_s = criteria.worker_recovery_s
    stopped = data.events_named("load_stopped")
    if not stopped:
        reason = "The profile never stopped its load (Locust ended first), so there is no recovery to measure."
        return CriterionResult(RECOVERY, title, "INCONCLUSIVE", None, limit_s, "s", reason)

    stopped_s = stopped[0]["time_s"]
    readings = [(time_s, figures) for time_s, figures in status_readings(data, "recovery_reading", "workers_active", "queue_depth")
                if time_s >= stopped_s]
    idle = [(time_s, figures) for time_s, figures in readings if figures["workers_active"] == 0 and figures["queue_depth"] == 0]
    details: dict[str, Any] = {"load_stopped_s": stopped_s, "readings": len(readings)}
    if idle:
        recovery_s = idle[0][0] - stopped_s
        details["recovered_s"] = round(recovery_s, 3)
        status = "PASS" if recovery_s <= limit_s else "FAIL"
        verb = "within" if status == "PASS" else "later than"
        reason = f"The first status reading with no active worker and an empty queue came {recovery_s:.1f} s after the load stopped, {verb} the {limit_s:g} s limit."
        return CriterionResult(RECOVERY, title, status, recovery_s, limit_s, "s", reason, details)

    last_s = readings[-1][0] - stopped_s if readings else None
    watched = data.events_named("not_recovered")
    if readings:
        figures = readings[-1][1]
        reason = (
            f"No status reading showed an idle pool; the last one, {last_s:.0f} s after the load stopped, had "
            f"{figures['workers_active']} active workers and {figures['queue_depth']} queued tasks."
        )
    else:
        reason = "No status read succeeded after the load stopped: the status endpoint did not answer."
    if watched:
        reason += f" The profile watched for {watched[0].get('watched_s')} s."
    return CriterionResult(RECOVERY, title, "FAIL", last_s, limit_s, "s", reason, details)


def load_outcomes(data: RunData) -> dict[str, int]:
    """Count how the saturating load's transcriptions ended; the overload is on purpose, so these are not judged."""
    load = [row for row in data.all_requests if row.get("phase") == "load"]
    return {
        "sent": len(load),
        "succeeded": sum(1 for row in load if row.get("ok")),
        "rejected_503": sum(1 for row in load if row.get("status") == REJECTED_STATUS),
        "client_timeouts": sum(1 for row in load if row.get("status", 0) == 0),
    }
