from __future__ import annotations

import json

import pytest

from soak.cli import main, split_locust_args
from tests.soak.builders import fixed_rss, leaky_rss, write_run_folder


def test_invalid_leak_switch_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "memory", "--leaks", "model-cache,typo"])

    assert exit_info.value.code == 2
    assert "invalid leak switch 'model-cache,typo'" in capsys.readouterr().err


def test_locust_args_split_at_double_dash():
    assert split_locust_args(["run", "memory", "--", "--loglevel", "DEBUG"]) == (["run", "memory"], ["--loglevel", "DEBUG"])
    assert split_locust_args(["run", "memory"]) == (["run", "memory"], [])


def test_report_rejudges_run_folder(tmp_path, capsys):
    folder = write_run_folder(tmp_path / "run", fixed_rss(20))

    exit_status = main(["report", str(folder.path)])

    assert exit_status == 0
    assert json.loads(folder.file("summary.json").read_text())["verdict"] == "PASS"
    assert folder.file("report.html").exists()
    assert folder.file("junit.xml").exists()
    assert capsys.readouterr().out.startswith("memory run, leaks none, model paraformer-50mb: PASS")


def test_report_rejudges_comparison_folder(tmp_path, capsys):
    count = 20
    comparison = tmp_path / "compare"
    write_run_folder(comparison / "leaky", leaky_rss(count), leaks="all", models_cached=[index + 2 for index in range(count)])
    write_run_folder(comparison / "fixed", fixed_rss(count))
    (comparison / "manifest.json").write_text(json.dumps({"schema_version": 1, "kind": "comparison", "profile": "memory"}))

    exit_status = main(["report", str(comparison)])

    summary = json.loads((comparison / "summary.json").read_text())
    assert exit_status == 0
    assert summary["verdict"] == "PASS"
    assert summary["runs"]["leaky"]["verdict"] == "FAIL"
    assert (comparison / "report.html").exists()
    assert capsys.readouterr().out.startswith("memory comparison: PASS")


def test_report_applies_given_criteria(tmp_path):
    criteria = tmp_path / "strict.toml"
    criteria.write_text("growth_per_request_fraction_of_model = 0.0\nfail_on_inconclusive_leak_verdict = true\n")
    folder = write_run_folder(tmp_path / "run", fixed_rss(20))
    assert main(["report", str(folder.path)]) == 0

    exit_status = main(["report", str(folder.path), "--criteria", str(criteria)])

    summary = json.loads(folder.file("summary.json").read_text())
    assert exit_status == 1
    assert summary["verdict"] == "INCONCLUSIVE"
    assert summary["criteria"][0]["limit"] == 0.0


def test_report_on_missing_folder_exits_2(tmp_path, capsys):
    exit_status = main(["report", str(tmp_path / "nowhere")])

    assert exit_status == 2
    assert "not found" in capsys.readouterr().err
