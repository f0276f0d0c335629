"""``soak gate``: the CI gate. Every profile against the fixed gateway, and the leaky memory reference.

The gate passes (exit 0) only when every fixed run passes and the memory
profile's leaky reference run fails: a detector that misses the known leak
proves nothing about the fix. A part that could not be carried out makes
the gate exit 2; any other outcome exits 1.

The settings are 60 memory requests per run, 25 s of saturating load, 36
sessions with a 5 s TTL and a 1 s sweep, and the 8-hour soak compressed 120
times (4 minutes). The whole gate took 8.4 minutes on a 2-core machine, and
12 when other test runs shared it (docs/soak-harness.md has the figures).

Layout of the gate folder: one folder per part (``memory/`` is a comparison
folder with ``leaky/`` and ``fixed/``), plus the gate's own
``summary.json``, ``junit.xml`` (every part's test suites) and
``report.html`` (a table that links each part's report).
"""

from __future__ import annotations

import html
import logging
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from soak.report import format_comparison, format_run
from soak.results import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, ComparisonResult, RunResult
from soak.rundir import JUNIT, REPORT, SUMMARY, RunFolder, utc_iso
from soak.runner import DEFAULT_RUNS_DIR, run_comparison, run_once
from soak.settings import RunSettings

logger = logging.getLogger(__name__)

GATE_PROFILES = ("memory", "workers", "sessions", "soak", "patterns")
CI_MODEL = "paraformer-50mb"
# The fixed gateway's RSS settles over the first few dozen model loads (glibc
# arenas of the worker threads reach their high-water mark), so 60 requests
# give the growth-per-request interval a wide margin under its limit where 30 left it thin.
CI_REQUESTS = 60
# 480 simulated minutes in 4 real minutes: 6 requests per second, well within a 2-core machine's capacity.
CI_COMPRESS = 120.0
CI_SESSIONS = 36
CI_LOAD_S = 25.0


@dataclass
class GatePart:
    """One part of the gate and its outcome."""

    name: str
    folder: str
    expected: str
    verdict: str
    passed: bool
    result: RunResult | ComparisonResult

    def to_summary(self) -> dict[str, Any]:
        return {
            "part": self.name,
            "folder": self.folder,
            "expected": self.expected,
            "verdict": self.verdict,
            "passed": self.passed,
            "summary": self.result.to_summary(),
        }


def ci_settings(profile: str, model: str | None, models_dir: Path | None, criteria_path: Path | None,
                requests: int | None, compress: float | None, locust_args: list[str]) -> RunSettings:
    """Return the gate's settings for one profile."""
    settings = RunSettings(
        profile=profile,
        model=model or CI_MODEL,
        models_dir=models_dir,
        criteria_path=criteria_path.resolve() if criteria_path else None,
        requests=requests or CI_REQUESTS,
        sessions=CI_SESSIONS,
        load_s=CI_LOAD_S,
        compress=compress or CI_COMPRESS,
        locust_args=tuple(locust_args),
    )
    return settings


def run_gate(
    out: Path | None,
    parts: list[str] | tuple[str, ...] = GATE_PROFILES,
    *,
    model: str | None = None,
    models_dir: Path | None = None,
    criteria_path: Path | None = None,
    requests: int | None = None,
    compress: float | None = None,
    locust_args: list[str] | None = None,
    runs_dir: Path = DEFAULT_RUNS_DIR,
) -> int:
    """Run the gate's parts one after another, write the gate's outputs, print its summary and return its exit status."""
    folder = RunFolder.at(out) if out else RunFolder.create(runs_dir, "gate", "ci")
    started_s = time.time()
    logger.info("Gate folder: %s", folder.path)
    outcomes: list[GatePart] = []

    for name in parts:
        settings = ci_settings(name, model, models_dir, criteria_path, requests, compress, locust_args or [])
        part_started_s = time.time()
        if name == "memory":
            part_folder, comparison = run_comparison(replace(settings, leaks="none"), out=folder.path / name)
            outcome = GatePart(name, name, "leaky FAIL, fixed PASS", comparison.verdict, comparison.verdict == "PASS", comparison)
            print(format_comparison(comparison, report_path=str(part_folder.file(REPORT))))
        else:
            part_folder, result = run_once(settings, out=folder.path / name)
            outcome = GatePart(name, name, "PASS", result.verdict, result.verdict == "PASS", result)
            print(format_run(result, report_path=str(part_folder.file(REPORT))))
        logger.info("Gate part %s: %s in %.0f s.", name, outcome.verdict, time.time() - part_started_s)
        outcomes.append(outcome)

    exit_code = gate_exit_code(outcomes)
    write_gate_outputs(folder, outcomes, exit_code, started_s, time.time())
    print(format_gate(outcomes, exit_code, time.time() - started_s, folder.file(REPORT)))
    return exit_code


def gate_exit_code(outcomes: list[GatePart]) -> int:
    if any(outcome.verdict == "ERROR" for outcome in outcomes):
        return EXIT_ERROR
    if all(outcome.passed for outcome in outcomes):
        return EXIT_PASS
    return EXIT_FAIL


def format_gate(outcomes: list[GatePart], exit_code: int, elapsed_s: float, report_path: Path) -> str:
    word = {EXIT_PASS: "PASS", EXIT_FAIL: "FAIL", EXIT_ERROR: "ERROR"}[exit_code]
    lines = ["", f"soak gate: {word} in {elapsed_s / 60:.1f} min"]
    for outcome in outcomes:
        mark = "ok  " if outcome.passed else "FAIL"
        lines.append(f"  {mark} {outcome.name:<10} {outcome.verdict:<13} (expected: {outcome.expected})")
    lines.append(f"  report: {report_path}")
    return "\n".join(lines)


def write_gate_outputs(folder: RunFolder, outcomes: list[GatePart], exit_code: int, started_s: float, ended_s: float) -> None:
    """Write the gate's summary.json, junit.xml (every part's suites) and report.html (links to each part)."""
    folder.write_json(
        SUMMARY,
        {
            "kind": "gate",
            "exit_code": exit_code,
            "started_at": utc_iso(started_s),
            "ended_at": utc_iso(ended_s),
            "duration_s": round(ended_s - started_s, 1),
            "parts": [outcome.to_summary() for outcome in outcomes],
        },
    )

    suites = ElementTree.Element("testsuites", name="soak gate")
    for outcome in outcomes:
        junit = folder.path / outcome.folder / JUNIT
        if junit.exists():
            suites.extend(ElementTree.parse(junit).getroot().findall("testsuite"))
    ElementTree.indent(suites)
    folder.write_text(JUNIT, '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n")
    folder.write_text(REPORT, render_gate_html(outcomes, exit_code, ended_s - started_s))


def render_gate_html(outcomes: list[GatePart], exit_code: int, elapsed_s: float) -> str:
    word = {EXIT_PASS: "PASS", EXIT_FAIL: "FAIL", EXIT_ERROR: "ERROR"}[exit_code]
    rows = "\n".join(
        f"<tr class=\"{'ok' if outcome.passed else 'bad'}\"><td>{html.escape(outcome.name)}</td>"
        f"<td>{html.escape(outcome.verdict)}</td><td>{html.escape(outcome.expected)}</td>"
        f"<td><a href=\"{html.escape(outcome.folder)}/report.html\">{html.escape(outcome.folder)}/report.html</a></td></tr>"
        for outcome in outcomes
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>soak gate: {word}</title>
<style>
body {{ font: 14px system-ui, sans-serif; max-width: 1100px; margin: 24px auto; color: #1d1d1f; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #ddd; padding: 6px 10px; text-align: left; }}
tr.ok td:nth-child(2) {{ color: #1e7b34; font-weight: 600; }} tr.bad td:nth-child(2) {{ color: #b3261e; font-weight: 600; }}
</style></head><body>
<h1>soak gate: {word}</h1>
<p>Every profile against the fixed gateway, and the memory profile's leaky reference, in {elapsed_s / 60:.1f} minutes.
The gate passes only when every fixed run passes and the leaky reference fails.</p>
<table><tr><th>part</th><th>verdict</th><th>expected</th><th>report</th></tr>
{rows}
</table></body></html>
"""
