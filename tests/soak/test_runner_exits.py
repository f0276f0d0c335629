"""The runner against a gateway it did not start, and its cleanup on every kind of exit.

Uses the stand-in gateway (tests/soak/fake_gateway.py) with real Locust and
real processes. A run that ends in success, in a failed criterion, in an
error, on SIGTERM or on Ctrl+C (SIGINT) leaves no process behind.
"""

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
from soak.runner import run_once
from soak.settings import RunSettings
from tests.soak.conftest import FAKE_GATEWAY, REPO

DRIVER = Path(__file__).parent / "drive_runner.py"
WAIT_TIMEOUT_S = 60.0


@pytest.fixture
def settings(tmp_path) -> RunSettings:
    return RunSettings(
        model="paraformer-50mb",
        requests=8,
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


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_no_orphans(pids: list[int]) -> None:
    assert pids, "the test recorded no PID to check"
    alive = [pid for pid in pids if not is_gone(pid)]
    assert not alive, f"processes still running after the run: {alive}"


def run_pids(folder: RunFolder, pidfile: Path) -> list[int]:
    manifest = folder.read_json("manifest.json")
    pids = [int(line) for line in pidfile.read_text(encoding="utf-8").split()] if pidfile.exists() else []
    if manifest.get("locust", {}).get("pid"):
        pids.append(manifest["locust"]["pid"])
    return pids


def test_target_without_pid_reads_rss_from_status(fake_gateway, settings, tmp_path):
    target = replace(settings, target_url=fake_gateway.url, models_dir=fake_gateway.models_dir)

    folder, result = run_once(target, out=tmp_path / "run")

    assert result.verdict != "ERROR", result.error
    manifest = folder.read_json("manifest.json")
    assert manifest["target"]["started_by_runner"] is False
    assert manifest["target"]["rss_source"] == "status"
    assert manifest["gateway"]["stopped_by"] == "not stopped (the runner did not start it)"
    assert manifest["models"]["paraformer-50mb"]["instance_bytes"] == 8 * 1024 * 1024, "read from the models folder"
    samples = folder.read_jsonl("samples.jsonl")
    assert all(row["rss_source"] == "status" for row in samples)
    assert all("processes" not in row for row in samples)
    assert any("RSS came from the gateway's own rss_bytes figure" in warning for warning in result.warnings)
    assert psutil.pid_exists(fake_gateway.pid), "the runner must not stop a gateway it did not start"


def test_target_with_pid_samples_process_tree(fake_gateway, settings, tmp_path):
    target = replace(settings, target_url=fake_gateway.url, target_pid=fake_gateway.pid, models_dir=fake_gateway.models_dir)

    folder, result = run_once(target, out=tmp_path / "run")

    assert result.verdict != "ERROR", result.error
    manifest = folder.read_json("manifest.json")
    assert manifest["target"]["rss_source"] == "process tree"
    assert manifest["target"]["pid"] == fake_gateway.pid
    assert folder.read_jsonl("samples.jsonl")[-1]["processes"][0]["pid"] == fake_gateway.pid
    assert not any("rss_bytes figure" in warning for warning in result.warnings)
    assert psutil.pid_exists(fake_gateway.pid)


def test_target_not_answering_is_run_error(settings, tmp_path):
    target = replace(settings, target_url="http://127.0.0.1:9", ready_timeout_s=1.0)

    _, result = run_once(target, out=tmp_path / "run")

    assert result.verdict == "ERROR"
    assert "check that a gateway listens at http://127.0.0.1:9" in result.error


def test_target_rejects_leak_switch(settings, tmp_path):
    _, result = run_once(replace(settings, target_url="http://127.0.0.1:9", leaks="all"), out=tmp_path / "run")

    assert result.verdict == "ERROR"
    assert "start that gateway with --leaks instead" in result.error


def test_failed_criterion_leaves_no_process(settings, pidfile, tmp_path):
    # Every request of the leaky stand-in loads one more instance, so growth per request fails.
    folder, result = run_once(replace(settings, leaks="all", requests=16), out=tmp_path / "run")

    assert result.verdict == "FAIL"
    assert result.exit_code == 1
    assert_no_orphans(run_pids(folder, pidfile))


def test_ctrl_c_to_runner_stops_everything(settings, pidfile, tmp_path):
    out = tmp_path / "run"
    long_run = replace(settings, requests=100_000, timeout_s=120)
    payload = {key: (str(value) if isinstance(value, Path) else value) for key, value in long_run.__dict__.items()}
    driver = subprocess.Popen(
        [sys.executable, str(DRIVER), str(out), json.dumps(payload)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        requests_log = out / "requests.jsonl"
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while time.monotonic() < deadline and not (requests_log.exists() and requests_log.read_text().count("\n") >= 3):
            assert driver.poll() is None, f"the runner exited early:\n{driver.stderr.read()[-3000:]}"
            time.sleep(0.1)
        assert requests_log.exists(), "Locust sent no request within the wait"

        driver.send_signal(signal.SIGINT)
        exit_status = driver.wait(timeout=WAIT_TIMEOUT_S)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()

    assert exit_status == 2
    folder = RunFolder(out)
    assert "interrupted" in folder.read_json("manifest.json")["error"]
    assert folder.read_json("summary.json")["verdict"] == "ERROR"
    assert_no_orphans(run_pids(folder, pidfile))
