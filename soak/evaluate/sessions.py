"""Judge a sessions-profile run: every session ends, one way or another, and nothing stays buffered.

- Session cleanup: after the last session, a status reading shows 0 open
  sessions and 0 buffered bytes within TTL + sweep interval + grace. The
  clock starts when the last session finished, which is at or after the last
  activity of every abandoned session.
- Sessions carried out: every planned session was opened and streamed as
  planned (its requests succeeded), so that "0 sessions" cannot come from
  sessions that never opened.
- Timeout rate, threads and open files as in the other profiles.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from soak.analysis import RunData
from soak.criteria import Criteria
from soak.evaluate.common import (
    MIB,
    build_series,
    first_sample_after,
    judge_counts_recovered,
    judge_timeout_rate,
    new_result,
    profile_criteria,
    status_readings,
)
from soak.results import CriterionResult, RunResult, combine_statuses

CLEANUP = "session_cleanup"
CARRIED_OUT = "sessions_carried_out"


def evaluate_sessions(data: RunData, criteria_path: Path | None = None) -> RunResult:
    criteria = profile_criteria(data, criteria_path, "sessions")
    settings = data.manifest.get("settings", {})
    result = new_result(data, "sessions", int(settings.get("sessions", 0)))
    result.series = build_series(data, [], [], [])
    if result.error is not None:
        return result

    finished = data.events_named("load_finished")
    warm_sample = first_sample_after(data.samples, finished[0]["time_s"]) if finished else None
    result.criteria = [
        judge_cleanup(data, criteria),
        judge_carried_out(data, int(settings.get("sessions", 0))),
        judge_timeout_rate(data.requests, criteria),
        *judge_counts_recovered(data, warm_sample, "when the last session finished", criteria),
    ]
    result.verdict = combine_statuses(result.criteria)
    return result


def judge_cleanup(data: RunData, criteria: Criteria) -> CriterionResult:
    """Measure how long after the last session the gateway held no session and no buffered byte."""
    title = "Sessions and buffers released within TTL + sweep interval"
    settings = data.manifest.get("settings", {})
    finished = data.events_named("load_finished")
    if finished:
        anchor_s = finished[0]["time_s"]
    elif data.all_requests:
        anchor_s = max(row["end_time_s"] for row in data.all_requests)
    else:
        return CriterionResult(CLEANUP, title, "INCONCLUSIVE", None, None, "s", "No session was streamed.")

    ttl_s = float(settings.get("session_ttl_s") or 0.0)
    sweep_s = float(settings.get("sweep_interval_s") or 0.0)
    limit_s = criteria.session_cleanup_deadline_s(ttl_s, sweep_s)
    keys = ("sessions_open", "sessions_buffered_bytes")
    readings = [(time_s, figures) for time_s, figures in status_readings(data, "cleanup_reading", *keys) if time_s >= anchor_s]
    peak = max((row["status"]["sessions_buffered_bytes"] for row in data.samples
                if (row.get("status") or {}).get("sessions_buffered_bytes") is not None), default=None)
    details: dict[str, Any] = {"ttl_s": ttl_s, "sweep_interval_s": sweep_s, "grace_s": criteria.session_cleanup_grace_s,
                               "readings": len(readings), "peak_buffered_bytes": peak}

    clean = [(time_s, figures) for time_s, figures in readings if figures["sessions_open"] == 0 and figures["sessions_buffered_bytes"] == 0]
    if clean:
        cleanup_s = clean[0][0] - anchor_s
        details["cleaned_up_s"] = round(cleanup_s, 3)
        status = "PASS" if cleanup_s <= limit_s else "FAIL"
        verb = "within" if status == "PASS" else "later than"
        reason = (
            f"No session and no buffered byte was left {cleanup_s:.1f} s after the last session, {verb} the "
            f"{limit_s:g} s limit (TTL {ttl_s:g} s + sweep interval {sweep_s:g} s + grace {criteria.session_cleanup_grace_s:g} s)."
        )
        return CriterionResult(CLEANUP, title, status, cleanup_s, limit_s, "s", reason, details)

    if not readings:
        reason = "No status read succeeded after the last session, so the cleanup could not be observed."
        return CriterionResult(CLEANUP, title, "INCONCLUSIVE", None, limit_s, "s", reason, details)
    last_s, figures = readings[-1]
    details["left_sessions"] = figures["sessions_open"]
    details["left_buffered_bytes"] = figures["sessions_buffered_bytes"]
    reason = (
        f"{last_s - anchor_s:.0f} s after the last session, past the {limit_s:g} s limit, the gateway still held "
        f"{figures['sessions_open']} sessions with {figures['sessions_buffered_bytes'] / MIB:.2f} MiB of buffered audio."
    )
    return CriterionResult(CLEANUP, title, "FAIL", last_s - anchor_s, limit_s, "s", reason, details)


def judge_carried_out(data: RunData, planned: int) -> CriterionResult:
    """Count the planned sessions whose every request succeeded."""
    title = "Sessions carried out as planned"
    by_session: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in data.requests:
        by_session[row["index"]].append(row)
    carried_out = [index for index, rows in by_session.items() if all(row.get("ok") for row in rows)]
    by_fate: dict[str, dict[str, int]] = defaultdict(lambda: {"planned": 0, "carried_out": 0})
    for index, rows in by_session.items():
        fate = rows[0].get("phase") or "unknown"
        by_fate[fate]["planned"] += 1
        by_fate[fate]["carried_out"] += index in carried_out
    details = {"by_ending": dict(by_fate), "sessions_seen": len(by_session)}

    if len(carried_out) >= planned:
        reason = f"All {planned} sessions were opened, streamed and ended as planned."
        return CriterionResult(CARRIED_OUT, title, "PASS", len(carried_out), planned, "count", reason, details)
    failed = [row for rows in by_session.values() for row in rows if not row.get("ok")]
    reason = f"{len(carried_out)} of {planned} sessions were carried out as planned"
    if failed:
        reason += f"; the first failed request: {failed[0]['name']} ({failed[0].get('error') or 'HTTP ' + str(failed[0].get('status'))})"
    if len(by_session) < planned:
        reason += f"; {planned - len(by_session)} never started"
    return CriterionResult(CARRIED_OUT, title, "FAIL", len(carried_out), planned, "count", reason + ".", details)
