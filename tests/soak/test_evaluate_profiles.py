"""The workers, sessions, soak and patterns judgements on synthetic run folders with known outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.evaluate import evaluate_run
from soak.rundir import EVENTS, MANIFEST, REQUESTS, SAMPLES, RunFolder

MIB = 1024 * 1024
T0 = 1_800_000_000.0
MODEL_BYTES = 50 * MIB


def write_folder(
    path: Path,
    profile: str,
    *,
    settings: dict | None = None,
    samples: list[dict] | None = None,
    requests: list[dict] | None = None,
    events: list[dict] | None = None,
    status_at_ready: dict | None = None,
) -> RunFolder:
    folder = RunFolder.at(path)
    folder.write_json(
        MANIFEST,
        {
            "kind": "run",
            "profile": profile,
            "settings": {"profile": profile, "leaks": "none", "model": "paraformer-50mb", "users": 1,
                         "cache_max_models": 3, "criteria_path": None, **(settings or {})},
            "models": {"paraformer-50mb": {"instance_bytes": MODEL_BYTES}},
            "target": {"status_at_ready": status_at_ready or {}},
            "times": {"ready_s": T0, "load_started_s": T0, "started_at": "2027-01-15T08:00:00.000Z",
                      "ended_at": "2027-01-15T08:10:00.000Z"},
            "error": None,
        },
    )
    for name, rows in ((SAMPLES, samples or []), (REQUESTS, requests or []), (EVENTS, events or [])):
        with folder.jsonl_writer(name) as writer:
            for row in rows:
                writer.write(row)
    return folder


def sample(time_s: float, rss_bytes: int = 700 * MIB, threads: int = 6, **status: object) -> dict:
    return {"time_s": time_s, "rss_bytes": rss_bytes, "threads": threads, "open_files": 2,
            "status": {"models_cached": 1, **status}, "status_error": None, "status_latency_ms": 2.0}


def request(index: int | None, start_s: float, *, status: int = 200, phase: str | None = None, latency_s: float = 0.2) -> dict:
    return {"index": index, "time_s": start_s, "end_time_s": start_s + latency_s, "name": "POST /v1/responses",
            "status": status, "ok": 200 <= status < 300, "latency_ms": latency_s * 1000, "phase": phase, "error": None}


def statuses_of(result) -> dict[str, str]:
    return {criterion.key: criterion.status for criterion in result.criteria}


# --- workers ---------------------------------------------------------------------------------


def workers_events(latency_ms: float, recovered_after_s: float | None) -> list[dict]:
    events = [
        {"time_s": T0 + 8, "event": "load_in_flight", "process": "local", "in_flight": 12},
        {"time_s": T0 + 8, "event": "status_calls_started", "calls": 3},
    ]
    events += [
        {"time_s": T0 + 8 + latency_ms / 1000, "event": "status_call", "sent_s": T0 + 8, "answered_s": T0 + 8 + latency_ms / 1000,
         "latency_ms": latency_ms, "error": None, "workers_active": 2, "workers_max": 2, "queue_depth": 2, "queue_limit": 2}
        for _ in range(3)
    ]
    events += [
        {"time_s": T0 + 9 + latency_ms / 1000, "event": "status_calls_finished", "calls": 3, "answered": 3},
        {"time_s": T0 + 27, "event": "load_stopped"},
    ]
    if recovered_after_s is not None:
        answered = T0 + 27 + recovered_after_s
        events.append({"time_s": answered, "event": "recovery_reading", "sent_s": answered - 0.01, "answered_s": answered,
                       "latency_ms": 10.0, "error": None, "workers_active": 0, "queue_depth": 0})
    return events


def workers_samples() -> list[dict]:
    return [sample(T0 + second, workers_active=2, queue_depth=2) for second in range(0, 27)]


def test_workers_fixed_run_passes(tmp_path):
    folder = write_folder(tmp_path / "run", "workers", samples=workers_samples(), events=workers_events(120.0, 1.5),
                          status_at_ready={"workers_max": 2, "queue_limit": 2})

    result = evaluate_run(folder)

    assert statuses_of(result) == {"status_calls_under_saturation": "PASS", "pool_saturated": "PASS", "worker_recovery": "PASS",
                                   "threads_recovered": "PASS", "open_files_recovered": "PASS"}
    assert result.criterion("worker_recovery").measured == pytest.approx(1.5)


def test_workers_stalled_status_and_slow_drain_fail(tmp_path):
    folder = write_folder(tmp_path / "run", "workers", samples=workers_samples(), events=workers_events(5400.0, 75.0),
                          status_at_ready={"workers_max": 2, "queue_limit": 0})

    result = evaluate_run(folder)

    calls = result.criterion("status_calls_under_saturation")
    assert calls.status == "FAIL"
    assert calls.measured == pytest.approx(5.4)
    assert "waited behind the transcriptions" in calls.reason
    recovery = result.criterion("worker_recovery")
    assert recovery.status == "FAIL"
    assert recovery.measured == pytest.approx(75.0)
    assert result.verdict == "FAIL"


def test_workers_recovery_from_sampler_when_profile_reads_failed(tmp_path):
    samples = workers_samples() + [sample(T0 + 30, workers_active=0, queue_depth=0)]
    folder = write_folder(tmp_path / "run", "workers", samples=samples, events=workers_events(100.0, None),
                          status_at_ready={"workers_max": 2, "queue_limit": 2})

    recovery = evaluate_run(folder).criterion("worker_recovery")

    assert recovery.status == "PASS"
    assert recovery.measured == pytest.approx(3.002)


def test_workers_never_drained_fails(tmp_path):
    events = workers_events(100.0, None) + [{"time_s": T0 + 117, "event": "not_recovered", "watched_s": 90.0}]
    folder = write_folder(tmp_path / "run", "workers", samples=workers_samples(), events=events,
                          status_at_ready={"workers_max": 2, "queue_limit": 2})

    recovery = evaluate_run(folder).criterion("worker_recovery")

    assert recovery.status == "FAIL"
    assert "No status read succeeded after the load stopped" in recovery.reason
    assert "watched for 90.0 s" in recovery.reason


# --- sessions --------------------------------------------------------------------------------


def sessions_run(path: Path, left_sessions: int) -> RunFolder:
    requests = [request(index, T0 + index, phase=("close", "abandon")[index % 2]) for index in range(4)]
    events = [{"time_s": T0 + 5, "event": "load_finished", "ttl_s": 5.0, "sweep_interval_s": 1.0, "grace_s": 5.0}]
    samples = [sample(T0 + second, sessions_open=2 if second < 12 else left_sessions,
                      sessions_buffered_bytes=64000 if second < 12 else left_sessions * 32000) for second in range(0, 30)]
    return write_folder(path, "sessions", settings={"sessions": 4, "session_ttl_s": 5.0, "sweep_interval_s": 1.0},
                        samples=samples, requests=requests, events=events)


def test_sessions_released_in_time_pass(tmp_path):
    result = evaluate_run(sessions_run(tmp_path / "run", left_sessions=0))

    cleanup = result.criterion("session_cleanup")
    assert cleanup.status == "PASS"
    assert cleanup.measured == pytest.approx(7.002)
    assert cleanup.limit == 11.0
    assert result.criterion("sessions_carried_out").status == "PASS"
    assert result.verdict == "PASS"


def test_sessions_left_behind_fail(tmp_path):
    cleanup = evaluate_run(sessions_run(tmp_path / "run", left_sessions=2)).criterion("session_cleanup")

    assert cleanup.status == "FAIL"
    assert "still held 2 sessions with 0.06 MiB of buffered audio" in cleanup.reason
    assert cleanup.details["left_buffered_bytes"] == 64000


def test_sessions_that_never_opened_fail(tmp_path):
    folder = sessions_run(tmp_path / "run", left_sessions=0)
    rows = folder.read_jsonl(REQUESTS)
    rows[1] = {**rows[1], "status": 429, "ok": False}
    (folder.path / REQUESTS).unlink()
    with folder.jsonl_writer(REQUESTS) as writer:
        for row in rows:
            writer.write(row)

    carried_out = evaluate_run(folder).criterion("sessions_carried_out")

    assert carried_out.status == "FAIL"
    assert carried_out.measured == 3


# --- soak ------------------------------------------------------------------------------------


def soak_run(path: Path, growth_per_request: int) -> RunFolder:
    count = 240
    requests = [request(index, T0 + index * 0.5) for index in range(count)]
    samples = [sample(T0 + second, rss_bytes=700 * MIB + int(second * 2 * growth_per_request) + (second % 3) * 40_000)
               for second in range(0, count // 2 + 3)]
    settings = {"soak_minutes": 80, "requests_per_min": 3, "compress": 60, "users": 1}
    return write_folder(path, "soak", settings=settings, samples=samples, requests=requests)


def test_flat_soak_passes(tmp_path):
    result = evaluate_run(soak_run(tmp_path / "run", growth_per_request=0))

    assert result.criterion("soak_growth").status == "PASS"
    assert result.criterion("rss_trend_over_time").status in ("PASS", "INCONCLUSIVE")
    assert result.criterion("requests_completed").status == "PASS"
    assert result.verdict == "PASS"


def test_growing_soak_fails_on_simulated_time(tmp_path):
    # 4 MiB per request, 2 requests per real second, compressed 60 times.
    result = evaluate_run(soak_run(tmp_path / "run", growth_per_request=4 * MIB))

    growth = result.criterion("soak_growth")
    assert growth.status == "FAIL"
    trend = result.criterion("rss_trend_over_time")
    assert trend.status == "FAIL"
    # 8 MiB per real second is 8 MiB per 60 simulated seconds, 480 MiB per simulated hour.
    assert trend.measured == pytest.approx(480 * MIB, rel=0.02)
    assert result.trend is not None


# --- patterns --------------------------------------------------------------------------------


def patterns_run(path: Path, loads_after: int, cached_before: list[str] | None = None) -> RunFolder:
    requests, samples, index = [], [], 0
    for phase, count in (("burst", 4), ("varying", 12), ("long", 2), ("short", 12)):
        for _ in range(count):
            start = T0 + index
            requests.append(request(index, start, phase=phase))
            rss = 800 * MIB + (40 * MIB if phase in ("long", "short") and index >= 18 else 0) + (index % 3) * 30_000
            samples.append(sample(start + 0.3, rss_bytes=rss))
            index += 1
    events = [
        {"time_s": T0 - 1, "event": "burst_started", "model": "paraformer-50mb-copy1", "size": 4, "error": None,
         "model_loads_total": 1, "cached_identities": cached_before or ["paraformer-50mb"]},
        {"time_s": T0 + 4, "event": "burst_finished", "error": None, "model_loads_total": loads_after},
        {"time_s": T0 + index, "event": "patterns_finished", "planned": index},
    ]
    return write_folder(path, "patterns", samples=samples, requests=requests, events=events)


def test_patterns_single_load_passes(tmp_path):
    result = evaluate_run(patterns_run(tmp_path / "run", loads_after=2))

    assert result.criterion("single_flight_loads").status == "PASS"
    short = result.criterion("short_after_long_growth")
    assert short.status in ("PASS", "INCONCLUSIVE")
    assert short.details["retained_bytes"] == pytest.approx(40 * MIB, abs=MIB)
    assert "RSS was 40 MiB above its level before the long files" in short.reason
    assert result.criterion("requests_completed").status == "PASS"


def test_patterns_duplicate_loads_fail(tmp_path):
    single_flight = evaluate_run(patterns_run(tmp_path / "run", loads_after=5)).criterion("single_flight_loads")

    assert single_flight.status == "FAIL"
    assert single_flight.measured == 4


def test_patterns_burst_on_loaded_identity_inconclusive(tmp_path):
    folder = patterns_run(tmp_path / "run", loads_after=1, cached_before=["paraformer-50mb", "paraformer-50mb-copy1"])

    single_flight = evaluate_run(folder).criterion("single_flight_loads")

    assert single_flight.status == "INCONCLUSIVE"
    assert "already loaded" in single_flight.reason
