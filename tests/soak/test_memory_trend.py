"""Slope per hour, memory limit and projection; the findings added for profiles without their own."""

from __future__ import annotations

import json

import pytest

from soak.analysis import RunData
from soak.criteria import load_criteria
from soak.diagnosis import DIAGNOSIS
from soak.evaluate import evaluate_run
from soak.findings import add_memory_findings
from soak.memory_trend import describe_projection, format_duration, memory_limit, memory_trend
from tests.soak.builders import MIB, fixed_rss, leaky_rss, write_run_folder

HOST_BYTES = 16 * 1024 * MIB
LIMIT_TEXT = "the machine's total memory, because the gateway reported no memory limit"


def test_limit_prefers_gateway_status():
    samples = [{"status": {"memory_limit_bytes": 2048 * MIB, "memory_limit_source": "cgroup"}}]

    limit, source, text = memory_limit(samples, {"host": {"memory_total_bytes": HOST_BYTES}})

    assert limit == 2048 * MIB
    assert source == "gateway"
    assert text == "the gateway's memory limit (cgroup)"


def test_limit_falls_back_to_host_memory():
    limit, source, text = memory_limit([{"status": {"memory_limit_bytes": None}}], {"host": {"memory_total_bytes": HOST_BYTES}})

    assert limit == HOST_BYTES
    assert source == "host"
    assert text == LIMIT_TEXT


def test_limit_unknown_without_either():
    assert memory_limit([], {})[0] is None


def test_projection_of_rising_rss():
    text = describe_projection(1000 * MIB, 2000 * MIB, LIMIT_TEXT, 500 * MIB, 1000 * MIB, 7200.0, 3600.0)

    assert text == (
        "At +500.0 MiB/h, RSS (1,000 MiB) would reach the limit of 2,000 MiB in 2.0 h "
        "(60 min at the interval's upper bound, +1,000.0 MiB/h). The limit is " + LIMIT_TEXT + "."
    )


def test_projection_of_flat_and_full_rss():
    flat = describe_projection(1000 * MIB, 2000 * MIB, LIMIT_TEXT, -1 * MIB, 2 * MIB, None, None)
    full = describe_projection(2100 * MIB, 2000 * MIB, LIMIT_TEXT, 5 * MIB, 6 * MIB, 0.0, 0.0)

    assert flat.startswith("RSS is not rising over time (-1.0 MiB/h)")
    assert full.startswith("RSS (2,100 MiB) is already at or above the limit of 2,000 MiB")


@pytest.mark.parametrize(("seconds", "text"), [(59 * 60, "59 min"), (3 * 3600, "3.0 h"), (5 * 86400, "5 days")])
def test_duration_units(seconds, text):
    assert format_duration(seconds) == text


def test_trend_per_hour_of_steady_growth():
    times = [float(second) for second in range(0, 600, 10)]
    rss = [800 * MIB + second * 10240 for second in times]
    samples = [{"rss_bytes": value, "status": {}} for value in rss]

    trend = memory_trend(times, rss, {"verdict": "FAIL", "slope": 1.0}, samples,
                         {"host": {"memory_total_bytes": HOST_BYTES}}, load_criteria(None, "memory"))

    assert trend.per_hour_verdict == "FAIL"
    assert trend.per_hour_bytes == pytest.approx(3600 * 10240)
    assert trend.time_to_limit_s == pytest.approx((HOST_BYTES - rss[-1]) / 10240)
    assert trend.per_hour_criterion is None


def test_memory_run_trend_is_per_request_criterion(tmp_path):
    folder = write_run_folder(tmp_path / "run", leaky_rss(20), leaks="all", models_cached=[index + 2 for index in range(20)])

    trend = evaluate_run(folder).trend

    assert trend.per_request_criterion == "rss_growth_per_request"
    assert trend.per_request_verdict == "FAIL"
    assert trend.per_request_bytes == pytest.approx(8 * MIB)
    assert trend.per_hour_bytes == pytest.approx(8 * MIB * 3600)


def test_findings_fill_in_for_other_profiles(tmp_path):
    count = 20
    buffered = [index * 200_000 for index in range(count)]
    folder = write_run_folder(tmp_path / "run", [600 * MIB + value for value in buffered], models_cached=[3] * count)
    rows = folder.read_jsonl("samples.jsonl")
    request_rows = [row for row in rows if row["trigger"] == "request"]
    for row, value in zip(request_rows, buffered):
        row["status"]["sessions_buffered_bytes"] = value
        row["status"]["sessions_open"] = value // 200_000
    rows[-1]["status"]["sessions_buffered_bytes"] = buffered[-1]
    rows[0]["status"]["models_cached"] = 3
    folder.file("samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    folder.write_json(DIAGNOSIS, {"retention_paths": [
        {"root": "gateway.leaky.sessions._BUFFERS", "holds": {"buffer_bytes": buffered[-1]}, "bytes": buffered[-1]},
    ]})
    data = RunData.load(folder)
    result = evaluate_run(folder)
    result.trend = None
    result.diagnosis = None

    add_memory_findings(result, data, None)

    assert result.trend.per_hour_bytes is not None
    assert result.trend.per_request_verdict is None
    assert result.diagnosis.grown_gauge == "sessions_buffered_bytes"
    assert result.diagnosis.holder.root == "gateway.leaky.sessions._BUFFERS"
    assert result.diagnosis.window == "From the gateway's readiness to the end of the run"


def test_findings_skip_runs_with_errors(tmp_path):
    folder = write_run_folder(tmp_path / "run", fixed_rss(20), error="the gateway was not ready within 180 s")
    data = RunData.load(folder)
    result = evaluate_run(folder)

    add_memory_findings(result, data, None)

    assert result.trend is None
    assert result.diagnosis is None
