"""``soak bench`` end to end on real servers: the gateway, funasr-server and the direct worker, with paraformer-tiny."""

from __future__ import annotations

import json
import math
from pathlib import Path

import psutil

from soak.bench.runner import run_bench


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
    assert "[benchmarks.json](benchmarks.json)" in page
    assert psutil.Process().children(recursive=True) == []
