"""Report generation cost: ``soak report`` on a synthetic 8-hour, 1 Hz run folder against a 1-hour one.

Each ``soak report`` runs in a fresh child, whose peak RSS comes from
``os.wait4``. The run folders are written with the harness's own writers,
in the sampler's row format, with a seeded RSS curve.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from soak import plans
from soak.bench.children import child_env, tail
from soak.bench.context import BenchContext, BenchError
from soak.bench.figures import Figure, Section, median
from soak.bench.overhead_worker import alternate
from soak.manifest import build_manifest
from soak.rundir import MANIFEST, REPORT, REQUESTS, SAMPLES, RunFolder
from soak.settings import REPO_ROOT, RunSettings, RunTimes

logger = logging.getLogger(__name__)

MIB = 1024 * 1024

# Report: the series' lengths, and the marks above which the report counts as slow or large.
REPORT_MINUTES = 8 * 60
REPORT_REFERENCE_MINUTES = 60
REPORT_SEED = 20270115
REPORT_TIMEOUT_S = 300.0
REPORT_POLL_S = 0.02
# A `soak report` child is killed past this RSS, because the benchmark shares its
# machine. Before the census binned its Theil-Sen fits (n^2 pairwise slopes),
# the 28,800-sample report peaked at 19.7 GiB of a 24 GiB host.
REPORT_RSS_CAP_BYTES = 4096 * MIB
REPORT_SLOW_S = 30.0
REPORT_LARGE_HTML_BYTES = 20 * MIB
REPORT_LARGE_PEAK_BYTES = 1024 * MIB



# --- The report ---------------------------------------------------------------------------------------------


@dataclass
class ReportRun:
    """One ``soak report`` child: wall time, peak RSS from ``wait4``, report size, and whether the RSS cap stopped it.

    A child stopped at the cap wrote no report (``html_bytes`` is None), and
    its wall time and peak RSS are lower bounds.
    """

    wall_s: float
    peak_rss_bytes: int
    html_bytes: int | None
    exit_status: int
    stopped_at_rss_cap: bool = False


@dataclass
class SyntheticSeries:
    """The run folder of a synthetic soak run, what it contains, and the reports generated from it."""

    minutes: int
    folder: RunFolder
    samples: int
    requests: int
    samples_bytes: int
    runs: list[ReportRun] = field(default_factory=list)

    @property
    def label(self) -> str:
        return series_label(self.minutes)


def series_label(minutes: int) -> str:
    return f"{minutes // 60}-hour series" if minutes % 60 == 0 else f"{minutes}-minute series"


def measure_report(context: BenchContext, section: Section, *, minutes: int = REPORT_MINUTES,
                   reference_minutes: int = REPORT_REFERENCE_MINUTES) -> None:
    """Fill the report section: ``soak report`` on a long and a short synthetic soak run, alternating.

    After a round in which the long series reached the RSS cap, the section
    stops: another round would only repeat the kill.
    """
    long = write_synthetic_run(context.work_dir / f"report-{minutes}min", context, minutes, REPORT_SEED)
    short = write_synthetic_run(context.work_dir / f"report-{reference_minutes}min", context, reference_minutes, REPORT_SEED)
    for round_index in range(context.rounds):
        for series in alternate([long, short], round_index):
            run = run_report(context, series.folder.path)
            series.runs.append(run)
            logger.info("Round %d of %d, %s: %.1f s, peak %.0f MiB%s.", round_index + 1, context.rounds, series.label, run.wall_s,
                        run.peak_rss_bytes / MIB, ", stopped at the RSS cap" if run.stopped_at_rss_cap else "")
        if long.runs[-1].stopped_at_rss_cap:
            logger.warning("The report of the %s reached the %.0f MiB RSS cap; skipping the remaining rounds.",
                           long.label, REPORT_RSS_CAP_BYTES / MIB)
            break

    def html_mib(run: ReportRun) -> float:
        return run.html_bytes / MIB if run.html_bytes is not None else math.nan

    capped = [str(index) for index, run in enumerate(long.runs) if run.stopped_at_rss_cap]
    capped_note = f"killed at the {REPORT_RSS_CAP_BYTES / MIB:.0f} MiB RSS cap in round {', '.join(capped)}: lower bounds" if capped else ""
    section.figures = [
        Figure(f"report time, {long.label}", "s", [run.wall_s for run in long.runs],
               reference_label=short.label, reference_values=[run.wall_s for run in short.runs], better="lower",
               note=capped_note or "wall time of the child, interpreter start and imports included"),
        Figure(f"report peak RSS, {long.label}", "MiB", [run.peak_rss_bytes / MIB for run in long.runs],
               reference_label=short.label, reference_values=[run.peak_rss_bytes / MIB for run in short.runs],
               better="lower", note=capped_note),
        Figure(f"report.html size, {long.label}", "MiB", [html_mib(run) for run in long.runs],
               reference_label=short.label, reference_values=[html_mib(run) for run in short.runs], better="lower",
               note="no report.html where the RSS cap stopped the child" if capped else ""),
    ]
    section.method = (
        f"Two synthetic soak-profile run folders, written with the harness's RunFolder and JsonlWriter: the "
        f"{long.label} at 1 Hz ({long.samples} samples, {long.requests} requests, {long.samples_bytes / MIB:.0f} MiB "
        f"of samples.jsonl) and the {short.label} as the reference ({short.samples} samples). The rows have the "
        "schema the sampler and the soak profile write, with a seeded RSS curve that rises over the first minutes and "
        "then stays flat with noise. Each round runs `soak report` once on each folder, in alternating order, each in "
        "a new child process. Wall time is measured around the child, and peak RSS is the ru_maxrss that os.wait4 "
        f"returns for that child alone. A child whose RSS passes {REPORT_RSS_CAP_BYTES / MIB:.0f} MiB is killed, "
        "because this benchmark shares its machine, and the rounds end there."
    )
    section.commands = [" ".join(report_command(context, series.folder.path)) for series in (long, short)]
    section.findings = report_findings(section, long, short)
    section.raw = {
        series.label: {"folder": str(series.folder.path), "samples": series.samples, "requests": series.requests,
                       "samples_bytes": series.samples_bytes, "runs": [asdict(run) for run in series.runs]}
        for series in (long, short)
    }


def report_findings(section: Section, long: SyntheticSeries, short: SyntheticSeries) -> list[str]:
    timing = section.figure(f"report time, {long.label}")
    peak = section.figure(f"report peak RSS, {long.label}")
    html = section.figure(f"report.html size, {long.label}")
    length_ratio = long.samples / short.samples
    capped = any(run.stopped_at_rss_cap for run in long.runs)
    if capped:
        summary = (
            f"`soak report` on the {long.label} passed the {REPORT_RSS_CAP_BYTES / MIB:.0f} MiB RSS cap after "
            f"{timing.median:.1f} s and was killed before it wrote report.html; the {short.label} took "
            f"{median(timing.reference_values):.1f} s and peaked at {median(peak.reference_values):.0f} MiB."
        )
    else:
        summary = (
            f"`soak report` on the {long.label} took {timing.median:.1f} s (rounds {timing.spread[0]:.1f} to "
            f"{timing.spread[1]:.1f} s), {timing.ratio_median:.2f}x the {short.label} for {length_ratio:g}x the "
            f"samples. Peak RSS was {peak.median:.0f} MiB ({peak.ratio_median:.2f}x) and report.html "
            f"{html.median:.2f} MiB ({html.ratio_median:.2f}x)."
        )
    findings = [summary]
    if math.isfinite(peak.ratio_median) and peak.ratio_median > length_ratio * 1.5:
        findings.append(
            f"Peak RSS grew faster than the series: {peak.ratio_median:.1f}x for {length_ratio:g}x the samples."
        )

    problems = []
    if timing.median > REPORT_SLOW_S:
        problems.append(f"It took {'at least ' if capped else ''}{timing.median:.1f} s, against a mark of {REPORT_SLOW_S:.0f} s.")
    if html.median * MIB > REPORT_LARGE_HTML_BYTES:
        problems.append(f"Its report.html is {html.median:.1f} MiB, against a mark of {REPORT_LARGE_HTML_BYTES / MIB:.0f} MiB.")
    if peak.median * MIB > REPORT_LARGE_PEAK_BYTES:
        amount = f"passed the {REPORT_RSS_CAP_BYTES / MIB:.0f} MiB cap" if capped else f"was {peak.median:.0f} MiB"
        problems.append(f"Its peak RSS {amount}, against a mark of {REPORT_LARGE_PEAK_BYTES / MIB:.0f} MiB.")
    if problems:
        findings.append(f"The report of the {long.label} needs work. " + " ".join(problems))
    else:
        findings.append(
            f"The report of the {long.label} stays below every mark: {REPORT_SLOW_S:.0f} s, "
            f"{REPORT_LARGE_HTML_BYTES / MIB:.0f} MiB of HTML and {REPORT_LARGE_PEAK_BYTES / MIB:.0f} MiB peak RSS."
        )
    return findings


def report_command(context: BenchContext, folder: Path) -> list[str]:
    return [context.python, "-m", "soak", "report", str(folder)]


def run_report(context: BenchContext, folder: Path) -> ReportRun:
    """Run ``soak report`` on ``folder`` in a child; raise BenchError when it fails or times out.

    Exit status 0 (PASS) and 1 (FAIL) both mean the report was written; 2 is an error.
    """
    command = report_command(context, folder)
    command_line = " ".join(command)
    stderr_path = context.log_path(f"{folder.name}-soak-report")
    with stderr_path.open("w+b") as stderr:
        started = time.perf_counter()
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                       env=child_env(context), cwd=context.work_dir)
        except OSError as exc:
            raise BenchError(f"could not start `soak report` ({command_line}): {exc}") from None
        outcome = wait_with_peak_rss(process, REPORT_TIMEOUT_S, REPORT_RSS_CAP_BYTES)
        wall_s = time.perf_counter() - started
        stderr.seek(0)
        stderr_text = stderr.read().decode("utf-8", errors="replace")

    if outcome.stopped_by == "timeout":
        raise BenchError(f"`soak report` timed out after {REPORT_TIMEOUT_S:.0f} s and was killed ({command_line}); "
                         f"last lines of its stderr:\n{tail(stderr_text)}")
    if outcome.stopped_by == "rss cap":
        return ReportRun(wall_s, outcome.peak_rss_bytes, None, outcome.exit_status, stopped_at_rss_cap=True)
    if outcome.exit_status not in (0, 1):
        raise BenchError(f"`soak report` exited with status {outcome.exit_status} ({command_line}); "
                         f"last lines of its stderr:\n{tail(stderr_text)}")
    return ReportRun(wall_s, outcome.peak_rss_bytes, (folder / REPORT).stat().st_size, outcome.exit_status)


@dataclass(frozen=True)
class ChildOutcome:
    exit_status: int
    peak_rss_bytes: int
    stopped_by: Literal["exit", "timeout", "rss cap"]


def wait_with_peak_rss(process: subprocess.Popen[bytes], timeout_s: float, rss_cap_bytes: int) -> ChildOutcome:
    """Reap ``process`` with ``os.wait4`` and return its exit status and peak RSS; kill it at the timeout or the cap.

    ``getrusage(RUSAGE_CHILDREN)`` would mix every child reaped so far, while
    ``wait4`` returns the usage of this child alone. The status is copied to
    ``process.returncode`` so that Popen does not try to reap it again.
    """
    deadline = time.monotonic() + timeout_s
    watched = psutil.Process(process.pid)
    stopped_by: Literal["exit", "timeout", "rss cap"] = "exit"
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid == process.pid:
            break
        try:
            over_cap = watched.memory_info().rss > rss_cap_bytes
        except psutil.NoSuchProcess:
            over_cap = False
        if over_cap or time.monotonic() >= deadline:
            stopped_by = "rss cap" if over_cap else "timeout"
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(REPORT_POLL_S)

    process.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in kibibytes on Linux and in bytes on macOS.
    peak_rss_bytes = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return ChildOutcome(process.returncode, peak_rss_bytes, stopped_by)


# --- A synthetic soak run -----------------------------------------------------------------------------------

START_S = 1_800_000_000.0
READY_AFTER_S = 6.0
BASE_RSS_BYTES = 815 * MIB
WARM_UP_RSS_BYTES = 62 * MIB
WARM_UP_TAU_S = 20.0
RSS_NOISE_BYTES = 1.5 * MIB
LATENCY_MS = 150.0
REQUEST_CPU_S = 0.15
GATEWAY_PID = 4242


def write_synthetic_run(path: Path, context: BenchContext, minutes: int, seed: int) -> SyntheticSeries:
    """Write a soak-profile run folder of ``minutes`` real minutes sampled at 1 Hz, replacing any folder at ``path``.

    The manifest comes from the harness's own ``build_manifest``. The rows
    follow the schema of the sampler and of profiles/soak.py at 3 requests
    per minute, and the RSS curve is seeded.
    """
    shutil.rmtree(path, ignore_errors=True)
    folder = RunFolder.at(path)
    generator = random.Random(seed)
    settings = plans.resolve(RunSettings(profile="soak", model=context.model, soak_minutes=float(minutes), compress=1.0,
                                         models_dir=context.models_dir, audio_path=context.audio_path))
    duration_s = minutes * 60
    ready_s = START_S + READY_AFTER_S
    times = RunTimes(started_s=START_S, ready_s=ready_s, load_started_s=ready_s + 1.0,
                     load_ended_s=ready_s + duration_s - 3.0, ended_s=ready_s + duration_s + 1.0)

    interval_s = 60.0 / settings.requests_per_min
    request_count = round(settings.soak_minutes * settings.requests_per_min)
    requests = [synthetic_request(index, times.load_started_s + index * interval_s, generator) for index in range(request_count)]
    with folder.jsonl_writer(REQUESTS) as writer:
        for row in requests:
            writer.write(row)

    identities = context.model_copies()
    status_template = synthetic_status(identities, context.model)
    with folder.jsonl_writer(SAMPLES) as writer:
        request_position = 0
        cpu_times_s = 6.3
        for index in range(duration_s):
            time_s = ready_s + index + generator.uniform(0.0, 0.002)
            completed_before = request_position
            while request_position < len(requests) and requests[request_position]["end_time_s"] <= time_s:
                request_position += 1
            busy = request_position < len(requests) and requests[request_position]["time_s"] <= time_s
            cpu_times_s += 0.002 + REQUEST_CPU_S * (request_position - completed_before)
            trigger = "interval"
            if index == 0:
                trigger = "start"
            elif index == duration_s - 1:
                trigger = "final"
            writer.write(synthetic_sample(time_s, trigger, index, request_position, busy, cpu_times_s, status_template, generator))

    manifest = build_manifest(settings.to_manifest(), REPO_ROOT)
    manifest.update({
        "synthetic": "written by soak.bench.overhead to time `soak report`; no gateway ran",
        "models_dir": str(context.models_dir),
        "model_identities": [context.model],
        "models": {context.model: {"path": str(context.model_path), "instance_bytes": None, "sha256": {}}},
        "audio": {"source": str(context.audio_path), "audio_url": context.audio_path.name},
        "allocator": {"allocator": "glibc", "MALLOC_ARENA_MAX": None, "LD_PRELOAD": None},
        "target": {"url": "http://127.0.0.1:8000", "pid": GATEWAY_PID, "command": [], "started_by_runner": True,
                   "rss_source": "process tree", "gateway_version": status_template["version"],
                   "status_at_ready": status_template},
        "locust": {"command": [], "exit_code": 0, "cpu_percent_max": 1.3, "cpu_warning": False, "cpu_saturated": False},
        "diagnosis": {"file": None, "error": "synthetic run: no gateway to ask"},
        "gateway": {"exit_code": 0, "stopped_by": "SIGTERM", "exited_before_stop": False},
        "times": times.to_manifest(),
        "error": None,
    })
    folder.write_json(MANIFEST, manifest)
    return SyntheticSeries(minutes, folder, duration_s, request_count, folder.file(SAMPLES).stat().st_size)


def synthetic_request(index: int, due_s: float, generator: random.Random) -> dict[str, Any]:
    """Return one requests.jsonl row as profiles/soak.py writes it."""
    lag_s = round(generator.uniform(0.0005, 0.003), 3)
    latency_ms = round(max(80.0, generator.gauss(LATENCY_MS, 15.0)), 1)
    start_s = round(due_s + lag_s, 4)
    return {
        "index": index, "time_s": start_s, "end_time_s": round(start_s + latency_ms / 1000, 4), "request_type": "POST",
        "name": "POST /v1/responses", "status": 200, "ok": True, "latency_ms": latency_ms, "response_bytes": 896,
        "model": None, "config_id": f"{generator.getrandbits(48):012x}", "phase": "soak", "lag_s": lag_s,
        "process": "local", "error": None, "error_code": None,
    }


def synthetic_status(identities: list[str], model: str) -> dict[str, Any]:
    """Return a GET /v1/status body of an idle fixed gateway with ``model`` loaded."""
    return {
        "schema_version": 1, "status": "OK", "reasons": [], "version": "0.1.0", "pid": GATEWAY_PID, "uptime_s": 0.0,
        "leaks": [], "workers_active": 0, "workers_max": 2, "workers_stuck": 0, "queue_depth": 0, "queue_limit": 8,
        "requests_completed_total": 0, "requests_failed_total": 0, "requests_rejected_total": 0,
        "requests_timed_out_total": 0, "retained_futures": 0, "rss_bytes": BASE_RSS_BYTES, "models_cached": 1,
        "models_cache_limit": 3, "model_loads_total": 1, "model_evictions_total": 0, "models_loading": 0,
        "models_available": identities, "cached_identities": [model], "sessions_open": 0, "sessions_buffered_bytes": 0,
        "sessions_expired_total": 0, "downloads_active": 0, "downloads_buffered_bytes": 0,
        "downloads_completed_total": 0, "downloads_rejected_total": 0, "default_model_ready": True,
        "gpu_memory_allocated_bytes": None, "gpu_memory_reserved_bytes": None, "tracemalloc_traced_bytes": None,
        "memory_limit_bytes": None, "memory_limit_source": "none", "model_loads_refused_total": 0,
    }


def synthetic_sample(time_s: float, trigger: str, elapsed_s: int, completed: int, busy: bool, cpu_times_s: float,
                     status_template: dict[str, Any], generator: random.Random) -> dict[str, Any]:
    """Return one samples.jsonl row as the sampler writes it with a ProcessTreeSource and a StatusSource."""
    rss_bytes = int(BASE_RSS_BYTES + WARM_UP_RSS_BYTES * (1 - math.exp(-elapsed_s / WARM_UP_TAU_S))
                    + generator.gauss(0.0, RSS_NOISE_BYTES))
    uss_bytes = rss_bytes - 57 * MIB
    threads = 7 if completed == 0 else 9
    connections = 1 if completed == 0 else 5
    cpu_percent = None if trigger == "start" else round(generator.uniform(8.0, 16.0) if busy else generator.uniform(0.0, 1.0), 1)
    process = {"pid": GATEWAY_PID, "name": "python", "rss_bytes": rss_bytes, "threads": threads, "fds": 12,
               "cpu_times_s": round(cpu_times_s, 3), "cpu_percent": cpu_percent, "uss_bytes": uss_bytes,
               "open_files": 2, "connections": connections}
    status = {**status_template, "uptime_s": round(time_s - START_S, 3), "workers_active": int(busy),
              "requests_completed_total": completed, "rss_bytes": rss_bytes}
    return {
        "time_s": round(time_s, 4), "monotonic_s": round(time_s - START_S + 1000.0, 4), "trigger": trigger,
        "pid": GATEWAY_PID, "processes": [process], "rss_bytes": rss_bytes, "uss_bytes": uss_bytes, "threads": threads,
        "fds": 12, "open_files": 2, "connections": connections, "cpu_percent": cpu_percent,
        "cpu_times_s": round(cpu_times_s, 3), "process_error": None, "status": status, "status_error": None,
        "status_latency_ms": round(generator.uniform(2.0, 6.0), 1), "end_time_s": round(time_s + 0.03, 4),
    }
