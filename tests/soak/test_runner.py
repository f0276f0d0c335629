"""The runner against a stand-in gateway (tests/soak/fake_gateway.py), with real Locust and real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from soak.rundir import RunFolder
from soak.runner import run_comparison, run_once
from soak.settings import RunSettings

HERE = Path(__file__).parent
FAKE_GATEWAY = HERE / "fake_gateway.py"
DRIVER = HERE / "drive_runner.py"
REPO = HERE.parent.parent
WAIT_TIMEOUT_S = 60.0


@pytest.fixture
def settings(tmp_path) -> RunSettings:
    return RunSettings(
        model="paraformer-50mb",
        requests=12,
        pause_s=0.05,
        settle_s=0.5,
        sample_interval_s=0.2,
        timeout_s=60,
        ready_timeout_s=10,
        stop_timeout_s=5,
        models_dir=tmp_path / "models",
        gateway_command=(sys.executable, str(FAKE_GATEWAY)),
    )


@pytest.fixture
def pidfile(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "gateway.pids"
    monkeypatch.setenv("FAKE_GATEWAY_PIDFILE", str(path))
    return path


def gateway_mode(monkeypatch, mode: str) -> None:
    monkeypatch.setenv("FAKE_GATEWAY_MODE", mode)


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_no_orphans(pids: list[int]) -> None:
    assert pids, "the test recorded no PID to check"
    alive = [pid for pid in pids if not is_gone(pid)]
    assert not alive, f"processes still running after the run: {alive}"


def recorded_pids(pidfile: Path) -> list[int]:
    return [int(line) for line in pidfile.read_text(encoding="utf-8").split()]


def test_gateway_exiting_at_once_is_run_error(settings, pidfile, monkeypatch, tmp_path):
    gateway_mode(monkeypatch, "exit")

    folder, result = run_once(settings, out=tmp_path / "run")

    assert result.verdict == "ERROR"
    assert result.exit_code == 2
    assert "exited with status 3 before it was ready" in result.error
    assert "FAKE_GATEWAY_MODE=exit" in result.error, "the error should include the tail of the gateway's log"
    summary = folder.read_json("summary.json")
    assert summary["verdict"] == "ERROR"
    assert summary["exit_code"] == 2
    assert folder.file("report.html").exists()
    assert folder.file("junit.xml").exists()
    assert_no_orphans(recorded_pids(pidfile))


def test_gateway_never_ready_times_out(settings, pidfile, monkeypatch, tmp_path):
    gateway_mode(monkeypatch, "never-ready")

    folder, result = run_once(replace(settings, ready_timeout_s=1.5), out=tmp_path / "run")

    assert result.verdict == "ERROR"
    assert "was not ready within 2 s" in result.error
    manifest = folder.read_json("manifest.json")
    assert manifest["gateway"]["stopped_by"] == "SIGTERM"
    assert manifest["gateway"]["exited_before_stop"] is False
    assert_no_orphans(recorded_pids(pidfile))


def test_gateway_ignoring_sigterm_gets_sigkill(settings, pidfile, monkeypatch, tmp_path):
    gateway_mode(monkeypatch, "never-ready,ignore-sigterm")

    folder, result = run_once(replace(settings, ready_timeout_s=1.0, stop_timeout_s=1.0), out=tmp_path / "run")

    assert result.verdict == "ERROR"
    assert folder.read_json("manifest.json")["gateway"]["stopped_by"] == "SIGKILL"
    assert_no_orphans(recorded_pids(pidfile))


def test_gateway_child_stopped_with_group(settings, pidfile, monkeypatch, tmp_path):
    gateway_mode(monkeypatch, "with-child")

    _, result = run_once(replace(settings, requests=4), out=tmp_path / "run")

    assert result.verdict != "ERROR", result.error
    pids = recorded_pids(pidfile)
    assert len(pids) == 2, "the fake gateway should have recorded itself and its child"
    assert_no_orphans(pids)


def test_unknown_model_is_run_error(settings, pidfile, tmp_path):
    _, result = run_once(replace(settings, model="whisper-large"), out=tmp_path / "run")

    assert result.verdict == "ERROR"
    assert "model 'whisper-large' is not a preset" in result.error
    assert not pidfile.exists(), "no gateway should start without prepared models"


def test_run_folder_complete(settings, pidfile, tmp_path):
    folder, result = run_once(settings, out=tmp_path / "run")

    assert result.verdict == "PASS", [criterion.reason for criterion in result.criteria]
    for name in ("manifest.json", "samples.jsonl", "requests.jsonl", "gateway.log", "summary.json", "junit.xml",
                 "report.html", "locust/stats_stats.csv", "locust/report.html", "locust/locust.log"):
        assert folder.file(name).exists(), name
    manifest = folder.read_json("manifest.json")
    assert manifest["schema_version"] == 1
    assert manifest["model_identities"] == [f"paraformer-50mb{suffix}" for suffix in ("", "-copy1", "-copy2", "-copy3", "-copy4")]
    assert manifest["models"]["paraformer-50mb"]["sha256"]["model.bin"]
    assert manifest["target"]["url"].startswith("http://127.0.0.1:")
    assert manifest["audio"]["sha256"]
    assert manifest["times"]["ready_s"] <= manifest["times"]["load_started_s"] <= manifest["times"]["load_ended_s"]
    assert manifest["locust"]["exit_code"] == 0
    assert manifest["error"] is None
    assert_no_orphans(recorded_pids(pidfile) + [manifest["locust"]["pid"]])


def test_run_saves_memory_diagnosis(settings, pidfile, tmp_path):
    folder, _ = run_once(settings, out=tmp_path / "run")

    manifest = folder.read_json("manifest.json")
    assert "--debug-endpoints" in manifest["target"]["command"]
    assert manifest["diagnosis"] == {"file": "diagnosis.json", "error": None}
    diagnosis = folder.read_json("diagnosis.json")
    assert diagnosis["retention_paths"][0]["root"] == "fake_gateway.ModelCache.entries"
    assert diagnosis["census"]["models_cached"] == 3


def test_profile_sends_new_options_per_request(settings, pidfile, tmp_path):
    folder, _ = run_once(settings, out=tmp_path / "run")

    rows = folder.read_jsonl("requests.jsonl")
    identities = folder.read_json("manifest.json")["model_identities"]
    assert [row["index"] for row in rows] == list(range(12))
    assert len({row["config_id"] for row in rows}) == 12
    assert [row["model"] for row in rows] == [identities[index % 5] for index in range(12)]
    assert all(row["status"] == 200 for row in rows)
    assert all(row["end_time_s"] >= row["time_s"] for row in rows)


def test_concurrent_users_send_exact_count(settings, pidfile, tmp_path):
    folder, result = run_once(replace(settings, users=3, requests=9), out=tmp_path / "run")

    rows = folder.read_jsonl("requests.jsonl")
    assert sorted(row["index"] for row in rows) == list(range(9))
    assert result.criterion("requests_completed").status == "PASS"


def test_comparison_passes_when_only_leaky_fails(settings, pidfile, tmp_path):
    # 22 requests leave 19 after the cache fills: enough for the leak verdict even after a warm-up cut of half.
    folder, comparison = run_comparison(replace(settings, requests=22, pause_s=0.1), out=tmp_path / "compare")

    assert comparison.leaky.verdict == "FAIL"
    assert comparison.leaky.criterion("rss_growth_per_request").status == "FAIL"
    assert comparison.fixed.verdict == "PASS", [criterion.reason for criterion in comparison.fixed.criteria]
    assert comparison.exit_code == 0
    summary = folder.read_json("summary.json")
    assert summary["kind"] == "comparison"
    assert summary["runs"]["leaky"]["leaks"] == "all"
    assert summary["runs"]["fixed"]["leaks"] == "none"
    assert (folder.path / "leaky" / "report.html").exists()
    assert (folder.path / "fixed" / "report.html").exists()
    assert 'href="leaky/report.html"' in folder.file("report.html").read_text(encoding="utf-8")


def test_sigterm_to_runner_stops_everything(settings, pidfile, tmp_path):
    out = tmp_path / "run"
    long_run = replace(settings, requests=100_000, timeout_s=120)
    payload = {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in long_run.__dict__.items()
    }
    driver = subprocess.Popen(
        [sys.executable, str(DRIVER), str(out), json.dumps(payload)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        requests_log = out / "requests.jsonl"
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while time.monotonic() < deadline and not (requests_log.exists() and requests_log.read_text().count("\n") >= 3):
            assert driver.poll() is None, f"the runner exited early:\n{driver.stderr.read()[-3000:]}"
            time.sleep(0.1)
        assert requests_log.exists(), "Locust sent no request within the wait"

        driver.send_signal(signal.SIGTERM)
        exit_status = driver.wait(timeout=WAIT_TIMEOUT_S)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()

    assert exit_status == 2
    folder = RunFolder(out)
    manifest = folder.read_json("manifest.json")
    assert "interrupted" in manifest["error"]
    assert folder.read_json("summary.json")["verdict"] == "ERROR"
    assert_no_orphans(recorded_pids(pidfile) + [manifest["locust"]["pid"]])
