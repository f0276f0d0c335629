"""The short summary printed at the end of ``soak run``, ``soak compare`` and ``soak report``."""

from __future__ import annotations

import textwrap

from soak.report.units import format_value
from soak.results import ComparisonResult, RunResult

WIDTH = 100


def format_run(result: RunResult, report_path: str | None = None) -> str:
    lines = [f"{result.profile} run, leaks {result.leaks}, model {result.model}: {result.verdict}"]
    if result.error:
        lines.extend(wrap(f"error: {result.error}", indent="  "))

    for criterion in result.criteria:
        measured = format_value(criterion.measured, criterion.unit)
        limit = format_value(criterion.limit, criterion.unit)
        lines.append(f"  {criterion.status:<14} {criterion.title}: {measured} (limit {limit})")
        lines.extend(wrap(criterion.reason, indent=" " * 17))

    for warning in result.warnings:
        lines.extend(wrap(f"warning: {warning}", indent="  "))
    if report_path:
        lines.append(f"  report: {report_path}")
    return "\n".join(lines)


def format_comparison(comparison: ComparisonResult, report_path: str | None = None) -> str:
    lines = [f"{comparison.profile} comparison: {comparison.verdict}"]
    lines.extend(wrap(comparison.reason, indent="  "))
    for label, run in (("leaky", comparison.leaky), ("fixed", comparison.fixed)):
        lines.append("")
        lines.append(f"[{label}] " + format_run(run))
    if report_path:
        lines.append("")
        lines.append(f"report: {report_path}")
    return "\n".join(lines)


def wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, width=WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]
