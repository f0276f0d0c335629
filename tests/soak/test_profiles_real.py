"""Every profile end to end: the real gateway with paraformer-tiny, real Locust, the CLI's exit status.

The gate with the sessions profile runs in the default test session (about
40 s on 2 CPU cores). The others are soak-scale and carry the ``soak``
marker: ``pytest -m soak tests/soak/test_profiles_real.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from soak.allocator import find_jemalloc

REPO = Path(__file__).resolve().parent.parent.parent
RUN_TIMEOUT_S = 600


def soak_cli(*args: str, models_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "soak", *args, "--model", "paraformer-tiny", "--models-dir", str(models_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )


def read_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def statuses(summary: dict) -> dict[str, str]:
    return {criterion["key"]: criterion["status"] for criterion in summary["criteria"]}


def test_gate_with_sessions_profile(models_dir, tmp_path):
    out = tmp_path / "gate"

    completed = soak_cli("gate", "--profiles", "sessions", "--out", str(out), models_dir=models_dir)

    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    gate = read_summary(out)
    assert gate["kind"] == "gate"
    assert [part["part"] for part in gate["parts"]] == ["sessions"]
    sessions = read_summary(out / "sessions")
    assert statuses(sessions)["session_cleanup"] == "PASS"
    assert statuses(sessions)["sessions_carried_out"] == "PASS"
    endings = {row["phase"] for row in map(json.loads, (out / "sessions" / "requests.jsonl").read_text().splitlines())}
    assert endings >= {"close", "delete", "abandon", "cut", "ws-end", "ws-drop"}
    assert "soak gate: PASS" in completed.stdout
    assert "sessions" in (out / "junit.xml").read_text(encoding="utf-8")
    assert 'href="sessions/report.html"' in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.soak
def test_sessions_leaky_buffers_left(models_dir, tmp_path):
    completed = soak_cli("run", "sessions", "--leaks", "session-buffers", "--sessions", "12", "--out", str(tmp_path / "run"),
                         models_dir=models_dir)

    assert completed.returncode == 1, completed.stderr[-4000:]
    cleanup = next(c for c in read_summary(tmp_path / "run")["criteria"] if c["key"] == "session_cleanup")
    assert cleanup["status"] == "FAIL"
    assert cleanup["details"]["left_sessions"] == 6, "abandon, cut and ws-drop endings of 12 sessions"
    assert cleanup["details"]["left_buffered_bytes"] > 0


@pytest.mark.soak
def test_workers_fixed_passes_leaky_stalls(models_dir, tmp_path):
    fixed = soak_cli("run", "workers", "--load-s", "15", "--out", str(tmp_path / "fixed"), models_dir=models_dir)
    leaky = soak_cli("run", "workers", "--load-s", "15", "--leaks", "worker-futures", "--out", str(tmp_path / "leaky"),
                     models_dir=models_dir)

    assert fixed.returncode == 0, fixed.stdout[-4000:]
    fixed_statuses = statuses(read_summary(tmp_path / "fixed"))
    assert fixed_statuses["pool_saturated"] == "PASS"
    assert fixed_statuses["worker_recovery"] == "PASS"
    assert leaky.returncode == 1, leaky.stdout[-4000:]
    assert statuses(read_summary(tmp_path / "leaky"))["status_calls_under_saturation"] == "FAIL"


@pytest.mark.soak
def test_patterns_fixed_loads_once_leaky_per_request(models_dir, tmp_path):
    fixed = soak_cli("run", "patterns", "--out", str(tmp_path / "fixed"), models_dir=models_dir)
    leaky = soak_cli("run", "patterns", "--leaks", "model-cache", "--out", str(tmp_path / "leaky"), models_dir=models_dir)

    # The 1 MiB model makes the per-request limits (1 % of an instance) smaller than the noise, so only the burst decides.
    assert fixed.returncode in (0, 1), fixed.stderr[-4000:]
    fixed_burst = next(c for c in read_summary(tmp_path / "fixed")["criteria"] if c["key"] == "single_flight_loads")
    assert fixed_burst["status"] == "PASS"
    assert fixed_burst["measured"] == 1
    leaky_burst = next(c for c in read_summary(tmp_path / "leaky")["criteria"] if c["key"] == "single_flight_loads")
    assert leaky_burst["status"] == "FAIL"
    assert leaky_burst["measured"] > 1


@pytest.mark.soak
def test_compressed_soak_judged_on_simulated_time(models_dir, tmp_path):
    completed = soak_cli("run", "soak", "--soak-minutes", "60", "--compress", "120", "--out", str(tmp_path / "run"),
                         models_dir=models_dir)

    summary = read_summary(tmp_path / "run")
    assert completed.returncode == 0, completed.stdout[-4000:]
    assert summary["requests"]["completed"] == 180
    trend = next(c for c in summary["criteria"] if c["key"] == "rss_trend_over_time")
    assert trend["details"]["compress"] == 120
    assert trend["status"] != "FAIL"


@pytest.mark.soak
def test_overlapping_memory_variant(models_dir, tmp_path):
    completed = soak_cli("run", "memory", "--variant", "overlapping", "--requests", "24", "--out", str(tmp_path / "run"),
                         models_dir=models_dir)

    assert completed.returncode in (0, 1), completed.stderr[-4000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["settings"]["users"] == 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "requests.jsonl").read_text().splitlines()]
    overlapping = sum(1 for a in rows for b in rows if a is not b and a["time_s"] < b["time_s"] < a["end_time_s"])
    assert overlapping > 0, "the overlapping variant must have requests in flight together"
    assert statuses(read_summary(tmp_path / "run"))["requests_completed"] == "PASS"


@pytest.mark.soak
@pytest.mark.skipif(find_jemalloc() is None, reason="libjemalloc2 is not installed")
def test_jemalloc_preloaded_into_gateway(models_dir, tmp_path):
    completed = soak_cli("run", "memory", "--allocator", "jemalloc", "--requests", "12", "--out", str(tmp_path / "run"),
                         models_dir=models_dir)

    assert completed.returncode in (0, 1), completed.stderr[-4000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["allocator"]["allocator"] == "jemalloc"
    assert manifest["allocator"]["LD_PRELOAD"].endswith("libjemalloc.so.2")


@pytest.mark.soak
def test_tracemalloc_snapshots_saved(models_dir, tmp_path):
    completed = soak_cli("run", "memory", "--requests", "10", "--tracemalloc-frames", "1", "--snapshot-interval-s", "5",
                         "--out", str(tmp_path / "run"), models_dir=models_dir)

    assert completed.returncode in (0, 1), completed.stderr[-4000:]
    snapshots = sorted((tmp_path / "run" / "snapshots").iterdir())
    assert snapshots[-1].name.endswith("-final.tracemalloc")
    assert tracemalloc.Snapshot.load(str(snapshots[-1])).traces
    summary = read_summary(tmp_path / "run")
    assert any("tracemalloc was on" in warning for warning in summary["warnings"])
