"""Synthetic run folders and results with fixed numbers, for tests that need no gateway."""

from __future__ import annotations

from pathlib import Path

from soak.baseline import BaselineComparison, FigureComparison
from soak.diagnosis import Diagnosis, GaugeGrowth, HeapReading, Holder
from soak.memory_trend import MemoryTrend
from soak.results import ComparisonResult, CriterionResult, LatencySummary, RunResult, RunSeries
from soak.rundir import MANIFEST, REQUESTS, SAMPLES, RunFolder

MIB = 1024 * 1024
MODEL_BYTES = 8 * MIB
READY_S = 1_800_000_000.0
BASE_RSS = 500 * MIB


def write_run_folder(
    path: Path,
    rss_after_request: list[int],
    *,
    leaks: str = "none",
    cache_bound: int = 3,
    statuses: list[int] | None = None,
    models_cached: list[int] | None = None,
    threads: list[int] | None = None,
    error: str | None = None,
) -> RunFolder:
    """Write a memory-profile run folder: one request per second, a sample 0.1 s after each.

    ``rss_after_request[i]`` is the RSS sampled right after request ``i``.
    ``statuses``, ``models_cached`` and ``threads`` give per-request values
    (defaults: 200, min(i + 1, cache_bound), 5).
    """
    count = len(rss_after_request)
    statuses = statuses or [200] * count
    models_cached = models_cached or [min(index + 1, cache_bound) for index in range(count)]
    threads = threads or [5] * count
    folder = RunFolder.at(path)

    folder.write_json(
        MANIFEST,
        {
            "kind": "run",
            "profile": "memory",
            "settings": {
                "profile": "memory",
                "leaks": leaks,
                "model": "paraformer-50mb",
                "requests": count,
                "users": 1,
                "cache_max_models": cache_bound,
                "criteria_path": None,
            },
            "models": {"paraformer-50mb": {"path": "/models/paraformer-50mb", "instance_bytes": MODEL_BYTES}},
            "model_identities": ["paraformer-50mb"],
            "times": {"ready_s": READY_S, "started_at": "2027-01-15T08:00:00.000Z", "ended_at": "2027-01-15T08:01:00.000Z"},
            "error": error,
        },
    )

    with folder.jsonl_writer(SAMPLES) as samples, folder.jsonl_writer(REQUESTS) as requests:
        samples.write(sample_row(READY_S, BASE_RSS, "start", models_cached=1, threads=4))
        for index, rss_bytes in enumerate(rss_after_request):
            start_s = READY_S + 1.0 + index
            end_s = start_s + 0.4
            requests.write(
                {
                    "index": index,
                    "time_s": start_s,
                    "end_time_s": end_s,
                    "request_type": "POST",
                    "name": "POST /v1/responses",
                    "status": statuses[index],
                    "ok": 200 <= statuses[index] < 300,
                    "latency_ms": 400.0 + index,
                    "response_bytes": 800,
                    "model": "paraformer-50mb",
                    "config_id": f"config{index:02d}",
                    "error": None if statuses[index] < 400 else f"HTTPError: {statuses[index]}",
                    "error_code": None,
                }
            )
            samples.write(
                sample_row(end_s + 0.1, rss_bytes, "request", models_cached=models_cached[index], threads=threads[index])
            )
        final_s = READY_S + count + 3.0
        samples.write(sample_row(final_s, rss_after_request[-1], "final", models_cached=models_cached[-1], threads=threads[-1]))
    return folder


def sample_row(time_s: float, rss_bytes: int, trigger: str, *, models_cached: int, threads: int) -> dict:
    return {
        "time_s": time_s,
        "monotonic_s": time_s - READY_S,
        "trigger": trigger,
        "pid": 4242,
        "processes": [{"pid": 4242, "rss_bytes": rss_bytes, "threads": threads, "open_files": 2}],
        "rss_bytes": rss_bytes,
        "uss_bytes": rss_bytes - 40 * MIB,
        "threads": threads,
        "fds": 9,
        "open_files": 2,
        "connections": 1,
        "cpu_percent": 50.0,
        "process_error": None,
        "status": {"models_cached": models_cached, "retained_futures": 0, "workers_active": 0, "queue_depth": 0,
                   "sessions_open": 0, "sessions_buffered_bytes": 0},
        "status_error": None,
        "status_latency_ms": 3.0,
    }


def leaky_rss(count: int = 20) -> list[int]:
    """RSS after each request when every request loads one more model instance."""
    return [BASE_RSS + (index + 2) * MODEL_BYTES for index in range(count)]


def fixed_rss(count: int = 20) -> list[int]:
    """RSS after each request of a bounded cache: it fills, then stays flat with a little noise."""
    noise = [0, 40, -30, 10, -20, 30, -10, 20, -40, 0]
    return [BASE_RSS + min(index + 1, 3) * MODEL_BYTES + noise[index % len(noise)] * 1024 for index in range(count)]


def sample_run_result(label: str) -> RunResult:
    """A hand-made run result with every kind of criterion status, for the report writers' tests."""
    leaky = label == "leaky"
    criteria = [
        CriterionResult(
            "rss_growth_per_request", "RSS growth per request after the cache fills",
            "FAIL" if leaky else "PASS", 53.1 * MIB if leaky else 0.12 * MIB, 0.5 * MIB, "bytes/request",
            "RSS grew +53.10 MiB/request (95 % interval +53.00 to +53.20), entirely above the 0.50 MiB/request limit."
            if leaky else "RSS grew +0.12 MiB/request (95 % interval -0.05 to +0.30), entirely below the 0.50 MiB/request limit.",
            {"slope_low": 53.0 * MIB if leaky else -0.05 * MIB, "slope_high": 53.2 * MIB if leaky else 0.3 * MIB,
             "trend_p_value": 1e-9 if leaky else 0.2, "n_used": 27, "warmup_cut": 0},
        ),
        CriterionResult(
            "rss_after_profile", "RSS after the memory profile", "FAIL" if leaky else "PASS",
            2300.0 * MIB if leaky else 720.0 * MIB, 830.0 * MIB, "bytes",
            "RSS at the end was 2300 MiB against a limit of 830 MiB." if leaky else "RSS at the end was 720 MiB against a limit of 830 MiB.",
        ),
        CriterionResult("timeout_rate", "Timeout rate", "PASS", 0.0, 0.0, "percent", "0 of 30 requests timed out."),
        CriterionResult("requests_completed", "Requests completed", "PASS", 30, 30, "count", "All 30 planned requests succeeded."),
        CriterionResult("threads_recovered", "Threads back to the post-warm-up count",
                        "INCONCLUSIVE" if leaky else "PASS", None if leaky else 5, None if leaky else 5, "count",
                        "No sample follows the warm-up requests." if leaky else "5 threads at the end, 5 after the warm-up requests."),
        CriterionResult("open_files_recovered", "Open files back to the post-warm-up count", "NOT_APPLICABLE", None, None,
                        "count", "The criteria file turns this check off."),
    ]
    series = RunSeries(
        request_index=[0, 1, 2, 3],
        request_end_s=[1.0, 2.0, 3.0, 4.0],
        request_rss_bytes=[700 * MIB, 750 * MIB, 800 * MIB, (850 if leaky else 800) * MIB],
        sample_time_s=[0.0, 1.1, 2.1, 3.1, 4.1],
        sample_rss_bytes=[650 * MIB, 700 * MIB, 750 * MIB, 800 * MIB, (850 if leaky else 800) * MIB],
        gauges={"models_cached": [1, 2, 3, 4 if leaky else 3, 4 if leaky else 3]},
        rss_limit_bytes=830.0 * MIB,
        growth_fit=(3, 700.0 * MIB, 50.0 * MIB if leaky else 0.0),
    )
    return RunResult(
        profile="memory",
        leaks="all" if leaky else "none",
        model="paraformer-50mb",
        run_dir=label,
        verdict="FAIL" if leaky else "PASS",
        criteria=criteria,
        requests_planned=30,
        requests_completed=30,
        requests_failed=0,
        latency=LatencySummary(count=30, mean_ms=412.0, p50_ms=398.0, p90_ms=490.0, p95_ms=646.0, p99_ms=729.0, max_ms=762.0),
        started_at="2027-01-15T08:00:00.000Z",
        ended_at="2027-01-15T08:01:00.000Z",
        warnings=["Locust reported CPU usage above 90 %, so its latency figures may be inflated."] if leaky else [],
        manifest={"profile": "memory", "settings": {"leaks": "all" if leaky else "none", "requests": 30, "users": 1},
                  "git": {"revision": "0123456789abcdef", "dirty": False}},
        series=series,
        trend=sample_trend(label),
        diagnosis=sample_diagnosis(label),
    )


def sample_trend(label: str) -> MemoryTrend:
    """A hand-made memory trend: the leaky run reaches the host's memory in hours, the fixed one never."""
    leaky = label == "leaky"
    return MemoryTrend(
        per_request_verdict="FAIL" if leaky else "PASS",
        per_request_bytes=53.1 * MIB if leaky else 0.12 * MIB,
        per_request_low_bytes=53.0 * MIB if leaky else -0.05 * MIB,
        per_request_high_bytes=53.2 * MIB if leaky else 0.3 * MIB,
        per_request_min_leak_rate_bytes=0.5 * MIB,
        per_hour_verdict="FAIL" if leaky else "INCONCLUSIVE",
        per_hour_bytes=90_000.0 * MIB if leaky else -3.0 * MIB,
        per_hour_low_bytes=88_000.0 * MIB if leaky else -40.0 * MIB,
        per_hour_high_bytes=92_000.0 * MIB if leaky else 35.0 * MIB,
        per_hour_reason="",
        min_leak_rate_bytes_per_hour=10 * MIB,
        rss_end_bytes=2300.0 * MIB if leaky else 720.0 * MIB,
        memory_limit_bytes=24_000.0 * MIB,
        memory_limit_source="host",
        memory_limit_text="the machine's total memory, because the gateway reported no memory limit",
        time_to_limit_s=868.0 if leaky else None,
        time_to_limit_earliest_s=849.0 if leaky else None,
        projection=(
            "At +90,000.0 MiB/h, RSS (2,300 MiB) would reach the limit of 24,000 MiB in 14 min. The limit is the "
            "machine's total memory, because the gateway reported no memory limit."
            if leaky else
            "RSS is not rising over time (-3.0 MiB/h), so it does not approach the limit of 24,000 MiB, the "
            "machine's total memory, because the gateway reported no memory limit."
        ),
        per_request_criterion="rss_growth_per_request",
    )


def sample_diagnosis(label: str) -> Diagnosis:
    """A hand-made diagnosis: the leaky run's cached models, held by the leaky cache's module dict."""
    leaky = label == "leaky"
    models = GaugeGrowth("models_cached", "cached model instances", 3, 30 if leaky else 3, 27 if leaky else 0,
                         0.99 if leaky else None, MODEL_BYTES if leaky else None,
                         "the model's instance size, as models prepare measured it" if leaky else None,
                         "measured" if leaky else None, 27 * MODEL_BYTES if leaky else None, 0.96 if leaky else None)
    futures = GaugeGrowth("retained_futures", "retained futures", 0, 0, 0, None, None, None, None, None, None)
    holders = [
        Holder("gateway.leaky.model_cache._MODELS", "gateway.leaky.model_cache", "_MODELS", {"LoadedModel": 30}, 0)
        if leaky else
        Holder("gateway.model_cache.ModelCache._entries", "gateway.model_cache.ModelCache", "_entries", {"LoadedModel": 3}, 0),
        Holder("gateway.sessions.SessionStore._sessions", "gateway.sessions.SessionStore", "_sessions",
               {"Session": 2, "buffer_bytes": 64000}, 64000),
    ]
    return Diagnosis(
        window="From the sample after request 3, when the cache is full, to the end of the run",
        sample_count=28,
        rss_growth_bytes=27 * 8.3 * MIB if leaky else 1.5 * MIB,
        gauges=[models, futures],
        grown_gauge="models_cached" if leaky else None,
        holder=holders[0] if leaky else None,
        holders=holders,
        live_objects={"LoadedModel": 30 if leaky else 3, "Future": 0},
        retention_note=None,
        snapshots=[],
        allocation_sites=[],
        allocation_note="No tracemalloc snapshots: the gateway did not trace Python allocations in this run.",
        heap=HeapReading("not_traced", None, None, "tracemalloc was off."),
        conclusion=(
            "RSS changed by +224.1 MiB over the window. The cached model instances grew by 27, at 8.00 MiB each, "
            "which accounts for 96 % of it. They are held by _MODELS in module gateway.leaky.model_cache (30 LoadedModel)."
            if leaky else
            "The growth verdict is PASS, so there is no leak to attribute. RSS changed by +1.5 MiB over the window."
        ),
    )


def sample_baseline() -> BaselineComparison:
    """A hand-made comparison of the fixed run with a baseline in which one figure regressed."""
    figures = [
        FigureComparison("verdict", "Verdict", "verdict", None, None, None, 0.0, "OK", "The verdict is PASS, as in the baseline."),
        FigureComparison("rss_after_profile", "RSS after the memory profile", "bytes", 650.0 * MIB, 720.0 * MIB,
                         733.0 * MIB, 0.1, "OK", "Differs from the baseline by at most 10 % of the limit."),
        FigureComparison("latency_p95_ms", "Latency p95", "ms", 400.0, 646.0, 600.0, 0.5, "REGRESSED",
                         "Worse than the baseline by more than 50 % of the baseline value."),
    ]
    return BaselineComparison(
        path="reports/baselines/memory-paraformer-50mb-2cpu.json",
        baseline_run_dir="20270101T000000Z-memory-none",
        baseline_verdict="PASS",
        baseline_started_at="2027-01-01T00:00:00.000Z",
        current_verdict="PASS",
        figures=figures,
        warnings=["The baseline ran 60 requests and this run 30, so absolute figures differ."],
    )


def sample_comparison() -> ComparisonResult:
    fixed = sample_run_result("fixed")
    fixed.baseline = sample_baseline()
    return ComparisonResult("memory", "20270115T080000Z-memory-compare", sample_run_result("leaky"), fixed)
