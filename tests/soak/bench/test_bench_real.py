"""``soak bench`` end to end on real servers: the gateway, funasr-server and the direct worker, with paraformer-tiny."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from soak.bench.runner import run_bench
from soak.settings import REPO_ROOT


def test_bench_throughput_and_memory(models_dir: Path, tmp_path: Path) -> None:
    """GIVEN real servers WHEN one round of the throughput and memory groups runs THEN the page and JSON hold every figure."""
    page_path = tmp_path / "benchmarks.md"
    json_path = tmp_path / "benchmarks.json"

    status = run_bench(
        groups=["throughput", "memory"], rounds=1, model="paraformer-tiny", models_dir=models_dir,
        page_path=page_path, json_path=json_path, work_dir=tmp_path / "work", command_line="soak bench --rounds 1",
    )

    assert status == 0
    document = json.loads(json_path.read_text())
    sections = {section["key"]: section for section in document["sections"]}
    assert list(sections) == ["throughput", "status", "memory"]
    for section in sections.values():
        assert section["error"] == ""
        for figure in section["figures"]:
            assert len(figure["values"]) == 1, figure["label"]
            assert figure["median"] is not None and math.isfinite(figure["median"]), figure["label"]

    throughput = {figure["label"]: figure for figure in sections["throughput"]["figures"]}
    for concurrency in (1, 2, 4, 8):
        gateway = throughput[f"gateway, concurrency {concurrency}: throughput"]
        assert gateway["median"] > 0
        assert gateway["reference_label"] == "direct (VAD + Paraformer)"
        assert gateway["ratio_median"] > 0
        assert throughput[f"funasr-server, concurrency {concurrency}: throughput"]["reference_label"] == "direct (Paraformer only)"
    assert len(sections["status"]["findings"]) == 2

    memory = {figure["label"]: figure for figure in sections["memory"]["figures"]}
    fixed_growth = memory["gateway fixed: growth since warm-up, after the memory sequence"]["median"]
    leaky_growth = memory["gateway leaky: growth since warm-up, after the memory sequence"]["median"]
    assert leaky_growth > fixed_growth + 5, (leaky_growth, fixed_growth)

    page = page_path.read_text()
    assert "## Throughput and latency: gateway, funasr-server and direct calls" in page
    assert "## RSS after the memory profile and after a compressed soak" in page
    assert "[benchmarks.json](<benchmarks.json>)" in page
    assert (page_path.parent / page.split("[benchmark-fixes.md](<", 1)[1].split(">)", 1)[0]).resolve() == (REPO_ROOT / "docs" / "benchmark-fixes.md").resolve()
    assert psutil.Process().children(recursive=True) == []


def test_bench_sigterm_stops_every_server(models_dir: Path, tmp_path: Path) -> None:
    """GIVEN a bench whose servers are up WHEN it gets SIGTERM THEN it exits 2 and every process it started is gone."""
    command = [
        sys.executable, "-m", "soak", "bench", "--sections", "throughput", "--rounds", "1", "--model", "paraformer-tiny",
        "--models-dir", str(models_dir), "--out", str(tmp_path / "b.md"), "--work-dir", str(tmp_path / "work"),
    ]
    bench = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        servers: list[psutil.Process] = []
        deadline = time.monotonic() + SERVERS_UP_TIMEOUT_S
        while len(servers) < 2 and time.monotonic() < deadline and bench.poll() is None:
            time.sleep(0.5)
            servers = [child for child in psutil.Process(bench.pid).children(recursive=True) if is_server(child)]
        assert len(servers) >= 2, "the gateway and funasr-server did not start"
        started = psutil.Process(bench.pid).children(recursive=True)

        bench.send_signal(signal.SIGTERM)
        _, err = bench.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(timeout=30)

    assert bench.returncode == 2, err[-2000:]
    assert "interrupted; every process soak started was stopped" in err
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == []
    assert not (tmp_path / "b.md").exists()


SERVERS_UP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 90.0


def is_server(process: psutil.Process) -> bool:
    try:
        command_line = " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False
    return "gateway serve" in command_line or "funasr.bin.server" in command_line
