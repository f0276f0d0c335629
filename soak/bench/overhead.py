"""The harness's own costs: the sampler at 1 s and 0.1 s, tracemalloc at 1 and 25 frames, and an 8-hour report.

The report section lives in :mod:`soak.bench.report_cost`, and the helpers
that run children in :mod:`soak.bench.children`.

Each section runs ``context.rounds`` rounds and alternates the order of the
settings it compares from round to round. A child process does every
measurement that must not share this process: the request batches (as Locust
does in a run), the transcriptions under tracemalloc (they import torch), and
each ``soak report``.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

from soak.bench.children import ratio_words, run_child, run_section
from soak.bench.context import BenchContext, BenchServer, gateway_server, running
from soak.bench.figures import Figure, Section, median
from soak.bench.overhead_worker import LoadResult, TracemallocResult, alternate
from soak.bench.report_cost import REPORT_MINUTES, REPORT_REFERENCE_MINUTES, measure_report, series_label
from soak.rundir import JsonlWriter
from soak.sampler import ProcessTreeSource, Sampler, SampleSource, StatusSource

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
WORKER_MODULE = "soak.bench.overhead_worker"

# Sampler: 20 requests of the 11 s speech file took about 4 s with paraformer-50mb
# on a shared 2-core machine, long enough for three 1 s ticks.
SAMPLER_INTERVALS_S: tuple[float | None, ...] = (None, 1.0, 0.1)
SAMPLER_BATCH_REQUESTS = 20
SAMPLER_WARM_UP_REQUESTS = 3
# After a batch shorter than this many intervals the sampler runs on, idle, until it has taken them.
MIN_INTERVAL_SAMPLES = 2
LOAD_TIMEOUT_BASE_S = 60.0
LOAD_TIMEOUT_PER_REQUEST_S = 10.0

# tracemalloc: at 25 frames one transcription of the 11 s file with paraformer-50mb
# took 5 to 7 s instead of 0.1 to 0.2 s on a shared 2-core machine, so a block has
# one transcription. The slowdown is 5x to 60x, far above the noise of one.
TRACEMALLOC_FRAMES = (1, 25)
TRACEMALLOC_TRANSCRIPTIONS = 1
TRACEMALLOC_TIMEOUT_BASE_S = 180.0
TRACEMALLOC_TIMEOUT_PER_TRANSCRIPTION_S = 30.0

def run(context: BenchContext) -> list[Section]:
    """Measure the three sections; a section whose measurement failed carries the error instead of figures."""
    # The sizes are read here rather than bound as defaults, so that tests can patch the module's constants.
    return [
        run_section(context, "sampler", "The sampler's own cost at 1 s and 0.1 s",
                    partial(measure_sampler, requests=SAMPLER_BATCH_REQUESTS)),
        run_section(context, "tracemalloc", "tracemalloc's cost at 1 and 25 frames",
                    partial(measure_tracemalloc, transcriptions=TRACEMALLOC_TRANSCRIPTIONS)),
        run_section(context, "report", f"Report generation: {series_label(REPORT_MINUTES)} at 1 Hz",
                    partial(measure_report, minutes=REPORT_MINUTES, reference_minutes=REPORT_REFERENCE_MINUTES)),
    ]


# --- The sampler --------------------------------------------------------------------------------------------


class SamplerProbe:
    """The sampler's sink: writes each row as the runner does, and notes the sampler thread's CPU time after it."""

    def __init__(self, writer: JsonlWriter) -> None:
        self.writer = writer
        # (trigger, monotonic seconds, CPU seconds of the calling thread) per sample.
        self.marks: list[tuple[str, float, float]] = []
        self._interval_samples = 0
        self._changed = threading.Condition()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.write(row)
        self.marks.append((row["trigger"], time.monotonic(), time.thread_time()))
        if row["trigger"] == "interval":
            with self._changed:
                self._interval_samples += 1
                self._changed.notify_all()

    def wait_for_interval_samples(self, count: int, timeout_s: float) -> bool:
        """Wait until the sampler has taken ``count`` interval samples; return False at the timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._interval_samples >= count, timeout_s)

    def steady_cpu(self) -> tuple[float, float, int]:
        """Return CPU seconds per wall second and per sample of the interval samples, and their count.

        The window runs from the start sample to the last interval sample, so
        it leaves out the thread's start and the final sample that ``stop()``
        adds. ``time.thread_time`` is the sampler thread's own user and system
        time, so the client and other threads of this process do not count.
        """
        intervals = [mark for mark in self.marks if mark[0] == "interval"]
        if not self.marks or not intervals:
            return math.nan, math.nan, 0
        _, start_s, start_cpu_s = self.marks[0]
        _, end_s, end_cpu_s = intervals[-1]
        cpu_s = end_cpu_s - start_cpu_s
        return cpu_s / (end_s - start_s), cpu_s / len(intervals), len(intervals)


@dataclass(frozen=True)
class BatchReading:
    """One batch of requests under one sampler setting; the sampler figures are NaN without a sampler."""

    interval_s: float | None
    requests: int
    wall_s: float
    gateway_cpu_s: float
    sampler_cpu_per_wall_s: float = math.nan
    sampler_cpu_per_sample_s: float = math.nan
    interval_samples: int = 0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s

    @property
    def gateway_cpu_per_request_s(self) -> float:
        return self.gateway_cpu_s / self.requests


def load_command(context: BenchContext, server: BenchServer, requests: int) -> list[str]:
    return [context.python, "-m", WORKER_MODULE, "load", "--url", server.url, "--audio", str(context.audio_path),
            "--requests", str(requests), "--gateway-pid", str(server.pid)]


def send_batch(context: BenchContext, server: BenchServer, requests: int) -> LoadResult:
    timeout_s = LOAD_TIMEOUT_BASE_S + LOAD_TIMEOUT_PER_REQUEST_S * requests
    return cast(LoadResult, run_child(context, f"the request batch against {server.name}", load_command(context, server, requests), timeout_s))


def sampler_sources(server: BenchServer) -> list[SampleSource]:
    """Return the sources the runner gives the sampler for a gateway it started (it has a PID)."""
    return [ProcessTreeSource(server.pid), StatusSource(server.url, rss_from_status=False)]


def measure_batch(context: BenchContext, server: BenchServer, interval_s: float | None, requests: int, samples_path: Path) -> BatchReading:
    """Send one batch while the sampler runs at ``interval_s`` (``None``: no sampler)."""
    if interval_s is None:
        load = send_batch(context, server, requests)
        return BatchReading(None, load["requests"], load["wall_s"], load["gateway_cpu_s"])

    writer = JsonlWriter(samples_path)
    probe = SamplerProbe(writer)
    sampler = Sampler(sampler_sources(server), probe.write, interval_s=interval_s)
    sampler.start()
    try:
        load = send_batch(context, server, requests)
        # A batch shorter than the interval would leave no interval sample to measure.
        if not probe.wait_for_interval_samples(MIN_INTERVAL_SAMPLES, interval_s * (MIN_INTERVAL_SAMPLES + 1) + 1.0):
            logger.warning("The sampler took fewer than %d interval samples at %g s; its CPU figures may be missing.",
                           MIN_INTERVAL_SAMPLES, interval_s)
    finally:
        sampler.stop()
        writer.close()
    cpu_per_wall_s, cpu_per_sample_s, interval_samples = probe.steady_cpu()
    return BatchReading(interval_s, load["requests"], load["wall_s"], load["gateway_cpu_s"],
                        cpu_per_wall_s, cpu_per_sample_s, interval_samples)


def interval_label(interval_s: float | None) -> str:
    return "no sampler" if interval_s is None else f"sampler every {interval_s:g} s"


def measure_sampler(context: BenchContext, section: Section, *, requests: int = SAMPLER_BATCH_REQUESTS) -> None:
    """Fill the sampler section: throughput, gateway CPU per request and the sampler thread's CPU."""
    server = gateway_server(context, "gateway-sampler")
    samples_dir = context.work_dir / "sampler-samples"
    shutil.rmtree(samples_dir, ignore_errors=True)
    samples_dir.mkdir(parents=True)

    readings: dict[float | None, list[BatchReading]] = {interval_s: [] for interval_s in SAMPLER_INTERVALS_S}
    with running(server):
        send_batch(context, server, SAMPLER_WARM_UP_REQUESTS)
        for round_index in range(context.rounds):
            for interval_s in alternate(SAMPLER_INTERVALS_S, round_index):
                samples_path = samples_dir / f"round{round_index}-{interval_s}.jsonl"
                reading = measure_batch(context, server, interval_s, requests, samples_path)
                readings[interval_s].append(reading)
                logger.info("Round %d of %d, %s: %.2f requests/s, sampler %.3f CPU s per s.", round_index + 1, context.rounds,
                            interval_label(interval_s), reading.requests_per_s, reading.sampler_cpu_per_wall_s)

    reference = readings[None]
    for interval_s in SAMPLER_INTERVALS_S[1:]:
        batches = readings[interval_s]
        label = interval_label(interval_s)
        section.figures += [
            Figure(f"throughput, {label}", "requests/s", [batch.requests_per_s for batch in batches],
                   reference_label="no sampler", reference_values=[batch.requests_per_s for batch in reference], better="higher"),
            Figure(f"gateway CPU per request, {label}", "ms", [batch.gateway_cpu_per_request_s * 1000 for batch in batches],
                   reference_label="no sampler", reference_values=[batch.gateway_cpu_per_request_s * 1000 for batch in reference],
                   better="lower", note="user plus system time of the gateway's process tree, status reads included"),
            Figure(f"sampler CPU per wall second, {label}", "CPU s/s", [batch.sampler_cpu_per_wall_s for batch in batches],
                   better="lower", note="the sampler thread's time.thread_time() from its start sample to its last interval sample"),
            Figure(f"sampler CPU per sample, {label}", "ms", [batch.sampler_cpu_per_sample_s * 1000 for batch in batches],
                   better="lower"),
        ]

    section.method = (
        f"One gateway serves {context.model} for the whole section. Each round sends a batch of {requests} sequential "
        f"POST /v1/audio/transcriptions requests of {context.audio_path.name} three times: with no sampler (the "
        "reference), and with the sampler every 1 s and every 0.1 s, in alternating order. The sampler runs in the "
        "benchmark's process with the runner's sources (the gateway's process tree through psutil, and GET /v1/status) "
        "and writes its rows to a JSONL file as the runner does. The requests come from a child process, as Locust's "
        "do in a run, so the sampler thread does not compete with the client for the GIL. Throughput and the gateway's "
        "CPU time (psutil, its process tree) are read by that child from its first request to its last response. The "
        "sampler's CPU is its own thread's time.thread_time() from the start sample to the last interval sample, per "
        f"wall second and per sample; after a batch shorter than {MIN_INTERVAL_SAMPLES} intervals the sampler runs on "
        f"until it has taken {MIN_INTERVAL_SAMPLES} interval samples. {SAMPLER_WARM_UP_REQUESTS} requests before the "
        "first round warm the gateway up."
    )
    section.commands = [
        " ".join(server.process.command),
        " ".join(load_command(context, server, requests)),
        "Sampler([ProcessTreeSource(gateway_pid), StatusSource(url)], JsonlWriter(...).write, interval_s=1.0 | 0.1)",
    ]
    section.findings = sampler_findings(section)
    section.raw = {
        "requests_per_batch": requests,
        "batches": {interval_label(interval_s): [asdict(batch) for batch in batches] for interval_s, batches in readings.items()},
    }


def sampler_findings(section: Section) -> list[str]:
    findings = []
    for interval_s in SAMPLER_INTERVALS_S[1:]:
        label = interval_label(interval_s)
        cpu = section.figure(f"sampler CPU per wall second, {label}")
        per_sample = section.figure(f"sampler CPU per sample, {label}")
        throughput = section.figure(f"throughput, {label}")
        gateway_cpu = section.figure(f"gateway CPU per request, {label}")
        findings.append(
            f"With the {label}, its thread used {cpu.median * 100:.1f} % of one core "
            f"({per_sample.median:.1f} ms CPU per sample). Throughput against no sampler: "
            f"{ratio_words(throughput, 'lower', 'higher')}. Gateway CPU per request against no sampler: "
            f"{ratio_words(gateway_cpu, 'lower', 'higher')}."
        )
    return findings


# --- tracemalloc --------------------------------------------------------------------------------------------


def frames_label(frames: int) -> str:
    return "1 frame" if frames == 1 else f"{frames} frames"


def tracemalloc_command(context: BenchContext, transcriptions: int) -> list[str]:
    return [context.python, "-m", WORKER_MODULE, "tracemalloc", "--models-dir", str(context.models_dir),
            "--model", context.model, "--audio", str(context.audio_path), "--rounds", str(context.rounds),
            "--transcriptions", str(transcriptions), "--frames", *(str(frames) for frames in TRACEMALLOC_FRAMES)]


def measure_tracemalloc(context: BenchContext, section: Section, *, transcriptions: int = TRACEMALLOC_TRANSCRIPTIONS) -> None:
    """Fill the tracemalloc section from one child that loads the model and alternates the settings per round."""
    command = tracemalloc_command(context, transcriptions)
    blocks_total = context.rounds * (len(TRACEMALLOC_FRAMES) + 1) * transcriptions
    timeout_s = TRACEMALLOC_TIMEOUT_BASE_S + TRACEMALLOC_TIMEOUT_PER_TRANSCRIPTION_S * blocks_total
    result = cast(TracemallocResult, run_child(context, "the tracemalloc measurement", command, timeout_s))
    rows = cast(list[dict[str, Any]], result["blocks"])

    def values(frames: int, key: str, scale: float = 1.0) -> list[float]:
        blocks = sorted((row for row in rows if row["frames"] == frames), key=lambda row: row["round"])
        return [block[key] * scale for block in blocks]

    reference = values(0, "seconds_per_transcription")
    for frames in TRACEMALLOC_FRAMES:
        label = frames_label(frames)
        section.figures += [
            Figure(f"seconds per transcription, {label}", "s", values(frames, "seconds_per_transcription"),
                   reference_label="tracing off", reference_values=reference, better="lower"),
            Figure(f"tracemalloc's own memory, {label}", "MiB", values(frames, "tracemalloc_memory_bytes", 1 / MIB),
                   better="lower", note="tracemalloc.get_tracemalloc_memory() at the end of the block"),
            Figure(f"traced memory at the end of the block, {label}", "MiB", values(frames, "traced_bytes", 1 / MIB),
                   note="tracemalloc.get_traced_memory()[0]"),
            Figure(f"traced peak in the block, {label}", "MiB", values(frames, "traced_peak_bytes", 1 / MIB),
                   note="tracemalloc.get_traced_memory()[1]"),
        ]

    section.method = (
        f"One child process loads {context.model} with the gateway's own gateway.asr.load_model (1 torch thread), "
        f"decodes {context.audio_path.name} ({result['audio_s']:.1f} s) with gateway.audio.decode and transcribes it "
        f"twice to warm up. Each round then runs a block of {transcriptions} LoadedModel.transcribe "
        f"call{'' if transcriptions == 1 else 's'} with tracing "
        f"off (the reference), after tracemalloc.start(1) and after tracemalloc.start(25), in alternating order. At "
        "the end of each block it reads tracemalloc.get_tracemalloc_memory() and get_traced_memory(), then calls "
        "tracemalloc.stop(). Tracing starts after the model is loaded, so the traced memory covers only what "
        "transcriptions allocate, as with the gateway's --tracemalloc-start warmup."
    )
    section.commands = [" ".join(command)]
    section.findings = tracemalloc_findings(section)
    section.raw = result


def tracemalloc_findings(section: Section) -> list[str]:
    findings = []
    for frames in TRACEMALLOC_FRAMES:
        label = frames_label(frames)
        timing = section.figure(f"seconds per transcription, {label}")
        own = section.figure(f"tracemalloc's own memory, {label}")
        traced = section.figure(f"traced memory at the end of the block, {label}")
        peak = section.figure(f"traced peak in the block, {label}")
        findings.append(
            f"At {label} a transcription took {timing.median:.2f} s against {median(timing.reference_values):.2f} s "
            f"with tracing off: {ratio_words(timing, 'faster', 'slower')}. tracemalloc's own memory was "
            f"{own.median:.2f} MiB for {traced.median:.2f} MiB traced at the end of the block (peak {peak.median:.1f} MiB)."
        )
    return findings
