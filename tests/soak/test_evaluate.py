from __future__ import annotations

import pytest

from soak.analysis import rss_after_requests
from soak.evaluate import evaluate_run
from soak.rundir import RunFolderError
from tests.soak.builders import BASE_RSS, MIB, MODEL_BYTES, fixed_rss, leaky_rss, write_run_folder


def statuses_of(result) -> dict[str, str]:
    return {criterion.key: criterion.status for criterion in result.criteria}


def test_leaky_run_fails_growth_and_rss(tmp_path):
    count = 20
    folder = write_run_folder(tmp_path / "run", leaky_rss(count), leaks="all", models_cached=[index + 2 for index in range(count)])

    result = evaluate_run(folder)

    growth = result.criterion("rss_growth_per_request")
    assert growth.status == "FAIL"
    assert growth.measured == pytest.approx(MODEL_BYTES)
    assert growth.limit == pytest.approx(0.01 * MODEL_BYTES)
    assert growth.details["first_request_index"] == 3
    assert "entirely above" in growth.reason
    assert result.criterion("rss_after_profile").status == "FAIL"
    assert result.verdict == "FAIL"
    assert result.exit_code == 1


def test_fixed_run_passes(tmp_path):
    folder = write_run_folder(tmp_path / "run", fixed_rss(20))

    result = evaluate_run(folder)

    assert statuses_of(result) == {
        "rss_growth_per_request": "PASS",
        "rss_after_profile": "PASS",
        "timeout_rate": "PASS",
        "requests_completed": "PASS",
        "threads_recovered": "PASS",
        "open_files_recovered": "PASS",
    }
    assert result.verdict == "PASS"
    assert result.exit_code == 0
    assert result.warnings == []


def test_rss_limit_uses_base_without_models(tmp_path):
    rss = fixed_rss(20)
    folder = write_run_folder(tmp_path / "run", rss)

    criterion = evaluate_run(folder).criterion("rss_after_profile")

    # After request 0 the cache contains one model, so base is that RSS minus one instance.
    base = rss[0] - 1 * MODEL_BYTES
    assert criterion.details["base_bytes"] == base
    assert criterion.limit == round(base + 3.5 * MODEL_BYTES)
    assert criterion.measured == rss[-1]


def test_rss_over_limit_fails(tmp_path):
    rss = fixed_rss(20)
    rss[-1] = BASE_RSS + 5 * MODEL_BYTES
    folder = write_run_folder(tmp_path / "run", rss)

    criterion = evaluate_run(folder).criterion("rss_after_profile")

    assert criterion.status == "FAIL"
    assert "12 MiB over, the size of 1.5 model instances" in criterion.reason


def test_timeouts_fail_timeout_rate(tmp_path):
    statuses = [200] * 20
    statuses[7] = 504
    folder = write_run_folder(tmp_path / "run", fixed_rss(20), statuses=statuses)

    result = evaluate_run(folder)

    timeouts = result.criterion("timeout_rate")
    assert timeouts.status == "FAIL"
    assert timeouts.measured == pytest.approx(5.0)
    assert result.criterion("requests_completed").status == "FAIL"
    assert result.verdict == "FAIL"


def test_failed_requests_fail_completion(tmp_path):
    statuses = [200] * 18 + [503, 503]
    folder = write_run_folder(tmp_path / "run", fixed_rss(20), statuses=statuses)

    criterion = evaluate_run(folder).criterion("requests_completed")

    assert criterion.status == "FAIL"
    assert criterion.measured == 18
    assert criterion.reason == "18 of 20 planned requests succeeded; failures: HTTP 503 x2."


def test_extra_thread_at_end_fails(tmp_path):
    threads = [5] * 19 + [6]
    folder = write_run_folder(tmp_path / "run", fixed_rss(20), threads=threads)

    criterion = evaluate_run(folder).criterion("threads_recovered")

    assert criterion.status == "FAIL"
    assert criterion.measured == 6
    assert criterion.limit == 5


def test_too_few_requests_growth_inconclusive(tmp_path):
    folder = write_run_folder(tmp_path / "run", fixed_rss(6))

    result = evaluate_run(folder)

    assert result.criterion("rss_growth_per_request").status == "INCONCLUSIVE"
    # The default criteria do not let an undecided leak verdict decide the run.
    assert result.verdict == "PASS"
    assert any("INCONCLUSIVE" in warning for warning in result.warnings)


def test_inconclusive_fails_when_criteria_say_so(tmp_path):
    criteria = tmp_path / "strict.toml"
    criteria.write_text("fail_on_inconclusive_leak_verdict = true\n", encoding="utf-8")
    folder = write_run_folder(tmp_path / "run", fixed_rss(6))

    result = evaluate_run(folder, criteria)

    assert result.verdict == "INCONCLUSIVE"
    assert result.exit_code == 1


def test_error_run_has_error_verdict(tmp_path):
    folder = write_run_folder(tmp_path / "run", fixed_rss(3), error="the gateway exited with status 3 before it was ready")

    result = evaluate_run(folder)

    assert result.verdict == "ERROR"
    assert result.exit_code == 2
    assert result.criteria == []
    assert result.error.startswith("the gateway exited")


def test_other_profile_rejected(tmp_path):
    folder = write_run_folder(tmp_path / "run", fixed_rss(3))
    manifest = folder.read_json("manifest.json")
    folder.write_json("manifest.json", {**manifest, "profile": "throughput"})

    with pytest.raises(RunFolderError, match="profile .throughput."):
        evaluate_run(folder)


def test_request_rss_is_first_sample_after_end():
    requests = [
        {"index": 0, "time_s": 10.0, "end_time_s": 10.5},
        {"index": 1, "time_s": 10.6, "end_time_s": 11.0},
        {"index": 2, "time_s": 11.2, "end_time_s": 12.0},
    ]
    samples = [
        {"time_s": 10.4, "rss_bytes": 1 * MIB},
        {"time_s": 10.55, "rss_bytes": 2 * MIB},
        {"time_s": 11.3, "rss_bytes": None},
        {"time_s": 11.4, "rss_bytes": 3 * MIB},
    ]

    points = rss_after_requests(requests, samples)

    assert [(point.index, point.rss_bytes) for point in points] == [(0, 2 * MIB), (1, 3 * MIB)]
    assert points[0].late is False
    assert points[1].late is True, "request 2 started at 11.2 s, before the 11.4 s sample"
    assert points[0].lag_s == pytest.approx(0.05)
