"""The overhead sections against real components: a gateway serving paraformer-tiny, the sampler, tracemalloc, ``soak report``."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import soundfile

from soak.bench import children, overhead, report_cost
from soak.bench.context import BenchContext, BenchError
from soak.bench.figures import Figure, Section
from soak.rundir import REPORT, REQUESTS, SAMPLES, JsonlWriter
from soak.sampler import ProcessTreeSource, Sampler, StatusSource
from tests.soak.bench.contexts import make_context

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data"
MIB = 1024 * 1024
CLIP_S = 3


@pytest.fixture
def context(models_dir: Path, tmp_path: Path) -> BenchContext:
    return make_context(models_dir, tmp_path / "work", rounds=2)


@pytest.fixture(scope="module")
def measured(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchContext, dict[str, Section]]:
    """Run the three sections once for the module, 2 rounds, with batches, audio and series shrunk to seconds."""
    folder = tmp_path_factory.mktemp("overhead")
    # tracemalloc at 25 frames makes a transcription of the 11 s file take seconds even with paraformer-tiny.
    audio, rate = soundfile.read(DATA / "speech.wav")
    soundfile.write(folder / "clip.wav", audio[: CLIP_S * rate], rate)
    context = replace(make_context(models_dir, folder / "work", rounds=2), audio_path=folder / "clip.wav", media_dir=folder)
    children_before = child_pids()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(overhead, "SAMPLER_BATCH_REQUESTS", 6)
        patch.setattr(overhead, "TRACEMALLOC_TRANSCRIPTIONS", 1)
        patch.setattr(overhead, "REPORT_MINUTES", 10)
        patch.setattr(overhead, "REPORT_REFERENCE_MINUTES", 5)
        sections = overhead.run(context)
    assert child_pids() <= children_before, "a gateway or child process outlived run()"
    return context, {section.key: section for section in sections}



def assert_measured(figure: Figure, rounds: int) -> None:
    assert len(figure.values) == rounds, figure.label
    assert all(math.isfinite(value) and value > 0 for value in figure.values), (figure.label, figure.values)


def assert_paired(figure: Figure, rounds: int) -> None:
    assert_measured(figure, rounds)
    assert len(figure.reference_values) == rounds, figure.label
    assert all(math.isfinite(ratio) and ratio > 0 for ratio in figure.ratios), (figure.label, figure.ratios)


def child_pids() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def test_run_returns_three_sections(measured: tuple[BenchContext, dict[str, Section]]) -> None:
    _, sections = measured

    assert list(sections) == ["sampler", "tracemalloc", "report"]
    for section in sections.values():
        assert section.error == "", section.error
        assert section.method, section.key
        assert section.commands, section.key
        assert section.findings, section.key


def test_sampler_figures(measured: tuple[BenchContext, dict[str, Section]]) -> None:
    section = measured[1]["sampler"]

    for interval in ("1", "0.1"):
        label = f"sampler every {interval} s"
        assert_paired(section.figure(f"throughput, {label}"), 2)
        assert_paired(section.figure(f"gateway CPU per request, {label}"), 2)
        assert_measured(section.figure(f"sampler CPU per wall second, {label}"), 2)
        assert_measured(section.figure(f"sampler CPU per sample, {label}"), 2)
    assert section.figure("throughput, sampler every 1 s").reference_label == "no sampler"
    assert len(section.findings) == 2


def test_sampler_writes_rows_per_batch(measured: tuple[BenchContext, dict[str, Section]]) -> None:
    context, sections = measured

    files = sorted((context.work_dir / "sampler-samples").glob("*.jsonl"))
    assert len(files) == 2 * 2
    for path in files:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert rows[0]["trigger"] == "start", path.name
        assert rows[-1]["trigger"] == "final", path.name
        assert all(row["process_error"] is None for row in rows), path.name
        assert all(row["status_error"] is None for row in rows), path.name
    batches = sections["sampler"].raw["batches"]["sampler every 0.1 s"]
    assert all(batch["interval_samples"] > 0 for batch in batches)


def test_tracemalloc_figures(measured: tuple[BenchContext, dict[str, Section]]) -> None:
    section = measured[1]["tracemalloc"]

    for label in ("1 frame", "25 frames"):
        timing = section.figure(f"seconds per transcription, {label}")
        assert_paired(timing, 2)
        assert timing.reference_label == "tracing off"
        assert_measured(section.figure(f"tracemalloc's own memory, {label}"), 2)
        assert_measured(section.figure(f"traced peak in the block, {label}"), 2)
    assert sorted({block["frames"] for block in section.raw["blocks"]}) == [0, 1, 25]
    assert [block["round"] for block in section.raw["blocks"]] == [0, 0, 0, 1, 1, 1]
    assert [block["frames"] for block in section.raw["blocks"]] == [0, 1, 25, 25, 1, 0]
    assert len(section.findings) == 2


def test_report_figures(measured: tuple[BenchContext, dict[str, Section]]) -> None:
    context, sections = measured
    section = sections["report"]

    for label in ("report time", "report peak RSS", "report.html size"):
        figure = section.figure(f"{label}, 10-minute series")
        assert_paired(figure, 2)
        assert figure.reference_label == "5-minute series"
    for name in ("report-10min", "report-5min"):
        assert (context.work_dir / name / REPORT).is_file()
    assert [run["exit_status"] for run in section.raw["10-minute series"]["runs"]] == [0, 0]
    assert [run["exit_status"] for run in section.raw["5-minute series"]["runs"]] == [0, 0]
    assert "stays below every mark" in section.findings[-1]


def test_report_stops_rounds_at_rss_cap(context: BenchContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_cost, "REPORT_RSS_CAP_BYTES", 60 * MIB)
    section = Section("report", "report", "")
    children_before = child_pids()

    report_cost.measure_report(context, section, minutes=20, reference_minutes=10)

    timing = section.figure("report time, 20-minute series")
    assert len(timing.values) == 1
    assert "RSS cap" in timing.note
    assert math.isnan(section.figure("report.html size, 20-minute series").values[0])
    assert "was killed before it wrote report.html" in section.findings[0]
    assert child_pids() <= children_before


def test_synthetic_run_has_8_hours(context: BenchContext, tmp_path: Path) -> None:
    series = report_cost.write_synthetic_run(tmp_path / "long", context, 480, seed=1)

    samples = (tmp_path / "long" / SAMPLES).read_text().splitlines()
    requests = (tmp_path / "long" / REQUESTS).read_text().splitlines()
    assert len(samples) == 28_800
    assert series.samples == 28_800
    assert len(requests) == 3 * 480
    assert json.loads(samples[0])["trigger"] == "start"
    assert json.loads(samples[-1])["trigger"] == "final"


def test_synthetic_run_is_seeded(context: BenchContext, tmp_path: Path) -> None:
    report_cost.write_synthetic_run(tmp_path / "first", context, 5, seed=7)
    report_cost.write_synthetic_run(tmp_path / "second", context, 5, seed=7)

    assert (tmp_path / "first" / SAMPLES).read_bytes() == (tmp_path / "second" / SAMPLES).read_bytes()


def test_synthetic_sample_matches_sampler(start_gateway, context: BenchContext) -> None:
    gateway = start_gateway()
    rows: list[dict] = []
    sampler = Sampler([ProcessTreeSource(gateway.process.pid), StatusSource(gateway.url)], rows.append)
    real = sampler.sample_once("interval")
    sampler.stop()

    template = report_cost.synthetic_status(context.model_copies(), context.model)
    synthetic = report_cost.synthetic_sample(1.8e9, "interval", 60, 3, False, 7.0, template, random.Random(1))

    assert list(synthetic) == list(real)
    assert list(synthetic["processes"][0]) == list(real["processes"][0])
    assert sorted(synthetic["status"]) == sorted(real["status"])


def test_sampler_probe_skips_start_and_final(tmp_path: Path) -> None:
    with JsonlWriter(tmp_path / "samples.jsonl") as writer:
        probe = overhead.SamplerProbe(writer)
        for trigger in ("start", "interval", "interval", "final"):
            probe.write({"trigger": trigger})

    cpu_per_wall_s, cpu_per_sample_s, interval_samples = probe.steady_cpu()
    assert interval_samples == 2
    assert cpu_per_wall_s >= 0
    assert cpu_per_sample_s >= 0
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 4


def test_sampler_probe_without_interval_samples(tmp_path: Path) -> None:
    with JsonlWriter(tmp_path / "samples.jsonl") as writer:
        probe = overhead.SamplerProbe(writer)
        probe.write({"trigger": "start"})
        probe.write({"trigger": "final"})

    cpu_per_wall_s, _, interval_samples = probe.steady_cpu()
    assert interval_samples == 0
    assert math.isnan(cpu_per_wall_s)


def test_failed_child_names_command_and_stderr(context: BenchContext) -> None:
    command = [sys.executable, "-c", "import sys; sys.stderr.write('model folder missing'); sys.exit(3)"]

    with pytest.raises(BenchError) as raised:
        children.run_child(context, "the probe child", command, timeout_s=60)

    message = str(raised.value)
    assert "the probe child exited with status 3" in message
    assert "model folder missing" in message
    assert sys.executable in message


def test_slow_child_is_killed(context: BenchContext) -> None:
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    children_before = child_pids()

    with pytest.raises(BenchError, match="timed out after 1 s and was killed"):
        children.run_child(context, "the sleeping child", command, timeout_s=1)
    assert child_pids() <= children_before


def test_failed_report_raises(context: BenchContext, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(BenchError) as raised:
        report_cost.run_report(context, tmp_path / "empty")

    message = str(raised.value)
    assert "`soak report` exited with status 2" in message
    assert "manifest.json not found" in message


def test_peak_rss_wait_kills_at_cap() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; block = bytearray(200 * 2**20); time.sleep(60)"])

    outcome = report_cost.wait_with_peak_rss(child, timeout_s=60, rss_cap_bytes=100 * MIB)

    assert outcome.stopped_by == "rss cap"
    assert outcome.peak_rss_bytes > 100 * MIB
    assert child.returncode == outcome.exit_status
    assert child.pid not in child_pids()


def test_peak_rss_wait_reads_exited_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "block = bytearray(80 * 2**20)"])

    outcome = report_cost.wait_with_peak_rss(child, timeout_s=60, rss_cap_bytes=1024 * MIB)

    assert outcome.stopped_by == "exit"
    assert outcome.exit_status == 0
    assert outcome.peak_rss_bytes > 80 * MIB
