"""Regressions against a stored baseline summary, and ``soak report --baseline``."""

from __future__ import annotations

import json

import pytest

from soak.baseline import (
    DEFAULT_TOLERANCE,
    BaselineError,
    compare_figure,
    compare_with_baseline,
    load_baseline,
    parse_tolerances,
)
from soak.cli import main
from tests.soak.builders import MIB, fixed_rss, write_run_folder


def summary_with(rss_after_bytes: float, verdict: str = "PASS", p95_ms: float = 400.0) -> dict:
    return {
        "schema_version": 1,
        "kind": "run",
        "profile": "memory",
        "leaks": "none",
        "model": "paraformer-50mb",
        "run_dir": "base",
        "verdict": verdict,
        "requests": {"planned": 60},
        "latency_ms": {"p50_ms": 300.0, "p95_ms": p95_ms},
        "criteria": [
            {"key": "rss_after_profile", "title": "RSS after the memory profile", "unit": "bytes",
             "measured": rss_after_bytes, "limit": 1000.0 * MIB},
            {"key": "requests_completed", "title": "Requests completed", "unit": "count", "measured": 60, "limit": 60},
        ],
    }


def figure(comparison, key):
    return next(item for item in comparison.figures if item.key == key)


def test_tolerances_parse_default_and_keys():
    tolerance = parse_tolerances(["5%", "rss_after_profile=2", "latency_p95_ms=80 %"])

    assert tolerance.default == 0.05
    assert tolerance.for_key("rss_after_profile") == 0.02
    assert tolerance.for_key("latency_p95_ms") == 0.8
    assert tolerance.for_key("latency_p50_ms") == 1.0
    assert tolerance.for_key("rss_growth_per_request") == 0.5
    assert parse_tolerances([]).default == DEFAULT_TOLERANCE


def test_invalid_tolerance_names_value():
    with pytest.raises(BaselineError, match="Invalid tolerance 'ten percent'"):
        parse_tolerances(["ten percent"])


def test_figure_margin_uses_larger_of_baseline_and_limit():
    # 10 % of the 0.5 MiB limit, not of the 0.1 MiB baseline slope.
    within = compare_figure("growth", "Growth", "bytes/request", 0.14 * MIB, 0.1 * MIB,
                            limit=0.5 * MIB, tolerance=0.1, lower_is_worse=False)
    beyond = compare_figure("growth", "Growth", "bytes/request", 0.16 * MIB, 0.1 * MIB,
                            limit=0.5 * MIB, tolerance=0.1, lower_is_worse=False)

    assert within.status == "OK"
    assert within.allowed == pytest.approx(0.15 * MIB)
    assert beyond.status == "REGRESSED"


def test_fewer_completed_requests_regress():
    comparison = compare_figure("requests_completed", "Requests completed", "count", 50, 60,
                                limit=60, tolerance=0.1, lower_is_worse=True)

    assert comparison.status == "REGRESSED"
    assert comparison.allowed == pytest.approx(54)


def test_comparison_flags_rss_and_verdict(tmp_path):
    baseline = summary_with(800 * MIB)
    current = summary_with(950 * MIB, verdict="FAIL")

    comparison = compare_with_baseline(current, baseline, tmp_path / "base.json", parse_tolerances(["10"]))

    assert comparison.regressed
    assert figure(comparison, "verdict").status == "REGRESSED"
    assert figure(comparison, "rss_after_profile").status == "REGRESSED"
    assert figure(comparison, "rss_after_profile").allowed == pytest.approx(900 * MIB)
    assert figure(comparison, "requests_completed").status == "OK"
    assert figure(comparison, "latency_p95_ms").status == "OK"


def test_comparison_within_tolerance_passes(tmp_path):
    comparison = compare_with_baseline(summary_with(850 * MIB), summary_with(800 * MIB), tmp_path / "base.json",
                                       parse_tolerances([]))

    assert not comparison.regressed
    assert comparison.warnings == []


def test_other_profile_is_rejected(tmp_path):
    baseline = summary_with(800 * MIB)
    baseline["profile"] = "sessions"

    with pytest.raises(BaselineError, match="Compare runs of the same profile"):
        compare_with_baseline(summary_with(800 * MIB), baseline, tmp_path / "base.json", parse_tolerances([]))


def test_baseline_of_comparison_uses_fixed_run(tmp_path):
    path = tmp_path / "summary.json"
    fixed = summary_with(800 * MIB)
    path.write_text(json.dumps({"schema_version": 1, "kind": "comparison", "runs": {"leaky": {}, "fixed": fixed}}))

    assert load_baseline(path) == fixed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{", "could not be read as JSON"),
        ('{"schema_version": 2}', "has schema version 2"),
        ('{"schema_version": 1, "kind": "run"}', "has no run summary with criteria"),
    ],
)
def test_invalid_baseline_says_why(tmp_path, content, message):
    path = tmp_path / "summary.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(BaselineError, match=message):
        load_baseline(path)


def test_report_with_own_baseline_exits_0(tmp_path, capsys):
    folder = write_run_folder(tmp_path / "run", fixed_rss(20))
    assert main(["report", str(folder.path)]) == 0
    baseline = tmp_path / "baseline.json"
    baseline.write_text(folder.file("summary.json").read_text())

    exit_status = main(["report", str(folder.path), "--baseline", str(baseline)])

    summary = json.loads(folder.file("summary.json").read_text())
    assert exit_status == 0
    assert summary["baseline"]["regressed"] is False
    assert summary["exit_code"] == 0
    assert "no regression" in capsys.readouterr().out


def test_report_regression_exits_1(tmp_path, capsys):
    folder = write_run_folder(tmp_path / "run", fixed_rss(20))
    assert main(["report", str(folder.path)]) == 0
    summary = json.loads(folder.file("summary.json").read_text())
    rss_after = next(row for row in summary["criteria"] if row["key"] == "rss_after_profile")
    rss_after["measured"] = rss_after["measured"] * 0.5
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(summary))

    exit_status = main(["report", str(folder.path), "--baseline", str(baseline), "--tolerance", "5"])

    summary = json.loads(folder.file("summary.json").read_text())
    assert exit_status == 1
    assert summary["verdict"] == "PASS"
    assert summary["exit_code"] == 1
    assert summary["baseline"]["regressed"] is True
    assert "REGRESSED RSS after the memory profile" in capsys.readouterr().out
    assert 'type="REGRESSED"' in folder.file("junit.xml").read_text()


def test_tolerance_without_baseline_exits_2(tmp_path, capsys):
    folder = write_run_folder(tmp_path / "run", fixed_rss(20))

    exit_status = main(["report", str(folder.path), "--tolerance", "5"])

    assert exit_status == 2
    assert "pass --baseline SUMMARY as well" in capsys.readouterr().err
