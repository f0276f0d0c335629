"""Faults around the soak harness, driven through its command line: the gateway killed mid-run, a full disk.

The runner's own tests (tests/soak/test_runner.py) cover SIGTERM to the
runner, a gateway that exits before it is ready, and one that ignores
SIGTERM. These tests cover what they do not: the gateway dying by SIGTERM or
SIGKILL while Locust is sending load, and report outputs that cannot be
written (a full disk, an immutable folder).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO
from tests.soak.builders import fixed_rss, write_run_folder

RUN_TIMEOUT_S = 300.0
WAIT_S = 120.0


def soak_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "soak", *args]


def request_rows(folder: Path) -> int:
    path = folder / "requests.jsonl"
    return path.read_text(encoding="utf-8").count("\n") if path.exists() else 0


def gateway_process(soak: subprocess.Popen) -> psutil.Process | None:
    for child in psutil.Process(soak.pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "gateway" in command and " serve" in command:
            return child
    return None


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.soak
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_gateway_killed_during_soak_run(models_dir, tmp_path, stop_signal):
    out = tmp_path / "run"
    soak = subprocess.Popen(
        soak_command(
            "run", "memory", "--model", "paraformer-tiny", "--models-dir", str(models_dir),
            "--requests", "200", "--pause-s", "0.2", "--timeout-s", "90", "--ready-timeout-s", "120", "--out", str(out),
        ),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and request_rows(out) < 5:
            assert soak.poll() is None, f"soak run exited early:\n{soak.stderr.read()[-3000:]}"
            time.sleep(0.2)
        assert request_rows(out) >= 5, "Locust completed no request within the wait"
        gateway = gateway_process(soak)
        assert gateway is not None, "no gateway process found under soak run"
        gateway_pid = gateway.pid

        gateway.send_signal(stop_signal)
        stdout, stderr = soak.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if soak.poll() is None:
            os.killpg(soak.pid, signal.SIGKILL)
            soak.wait(timeout=30)

    manifest = json.loads((out / "manifest.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines() if line.strip()]
    assert soak.returncode in (1, 2), stderr[-3000:]
    assert summary["exit_code"] == soak.returncode
    assert summary["verdict"] in ("FAIL", "ERROR", "INCONCLUSIVE")
    assert manifest["gateway"]["exited_before_stop"] is True
    assert (out / "report.html").exists()
    assert (out / "junit.xml").exists()
    assert any(row["status"] != 200 for row in rows), "requests after the kill should have failed"
    assert is_gone(gateway_pid)
    assert is_gone(manifest["locust"]["pid"])
    print(f"{stop_signal.name}: exit {soak.returncode}, verdict {summary['verdict']}, "
          f"{sum(row['status'] == 200 for row in rows)} of {len(rows)} requests answered 200")


@pytest.fixture
def saved_run(tmp_path) -> Path:
    folder = write_run_folder(tmp_path / "run", fixed_rss())
    completed = subprocess.run(soak_command("report", str(folder.path)), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    assert (folder.path / "summary.json").exists(), completed.stderr[-3000:]
    return folder.path


def test_report_on_full_disk_fails_cleanly(saved_run):
    summary_before = (saved_run / "summary.json").read_bytes()
    # Every write of summary.json goes to summary.json.tmp first; a link to /dev/full makes it fail with ENOSPC.
    (saved_run / "summary.json.tmp").symlink_to("/dev/full")

    completed = subprocess.run(soak_command("report", str(saved_run)), cwd=REPO, capture_output=True, text=True, timeout=120)

    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "No space left on device" in completed.stderr
    assert (saved_run / "summary.json").read_bytes() == summary_before, "the old summary must stay whole"


@pytest.fixture
def immutable(saved_run):
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed, so no folder can be made unwritable for root")
    made = subprocess.run(["chattr", "+i", str(saved_run)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr.strip()}")
    yield saved_run
    subprocess.run(["chattr", "-i", str(saved_run)], check=True)


def test_report_into_unwritable_folder_fails_cleanly(immutable):
    summary_before = (immutable / "summary.json").read_bytes()

    completed = subprocess.run(soak_command("report", str(immutable)), cwd=REPO, capture_output=True, text=True, timeout=120)

    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Operation not permitted" in completed.stderr
    assert (immutable / "summary.json").read_bytes() == summary_before


def test_run_into_unwritable_folder_fails_cleanly(immutable, models_dir):
    completed = subprocess.run(
        soak_command("run", "memory", "--model", "paraformer-tiny", "--models-dir", str(models_dir),
                     "--out", str(immutable / "new-run")),
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "new-run" in completed.stderr
    assert gateway_started(completed.stderr) is False


def gateway_started(log: str) -> bool:
    return "Waiting up to" in log
