"""The short summary printed at the end of ``soak run``, ``soak compare`` and ``soak report``."""

from __future__ import annotations

import textwrap

from soak.baseline import BaselineComparison
from soak.memory_trend import MemoryTrend
from soak.report.units import format_interval, format_value
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

    if result.trend is not None:
        lines.extend(wrap(trend_line(result.trend), indent="  ", subsequent=" " * 4))
    if result.diagnosis is not None:
        lines.extend(wrap(f"diagnosis: {result.diagnosis.conclusion}", indent="  ", subsequent=" " * 4))
    if result.baseline is not None:
        lines.extend(baseline_lines(result.baseline))
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


def trend_line(trend: MemoryTrend) -> str:
    per_hour = format_value(trend.per_hour_bytes, "bytes/hour")
    hourly = f"per-hour verdict {trend.per_hour_verdict}"
    if trend.per_hour_criterion is None:
        hourly += ", for information"
    if trend.per_request_bytes is None:
        return f"slope: {per_hour} ({hourly}). {trend.projection}"
    per_request = format_value(trend.per_request_bytes, "bytes/request")
    per_request_interval = format_interval(trend.per_request_low_bytes, trend.per_request_high_bytes, "bytes/request")
    return f"slope: {per_request} (interval {per_request_interval}) and {per_hour} ({hourly}). {trend.projection}"


def baseline_lines(baseline: BaselineComparison) -> list[str]:
    regressions = baseline.regressions
    verdict = f"{len(regressions)} figure(s) REGRESSED" if regressions else "no regression"
    lines = wrap(f"baseline: {verdict} against {baseline.path}.", indent="  ", subsequent=" " * 4)
    for figure in regressions:
        if figure.unit == "verdict":
            text = f"REGRESSED {figure.title}: {figure.reason}"
        else:
            text = (
                f"REGRESSED {figure.title}: {format_value(figure.current, figure.unit)} against "
                f"{format_value(figure.baseline, figure.unit)} in the baseline (worst allowed "
                f"{format_value(figure.allowed, figure.unit)})"
            )
        lines.extend(wrap(text, indent="    ", subsequent=" " * 6))
    for warning in baseline.warnings:
        lines.extend(wrap(f"baseline warning: {warning}", indent="    ", subsequent=" " * 6))
    return lines


def wrap(text: str, indent: str, subsequent: str | None = None) -> list[str]:
    subsequent = indent if subsequent is None else subsequent
    return textwrap.wrap(
        text, width=WIDTH, initial_indent=indent, subsequent_indent=subsequent, break_on_hyphens=False
    ) or [indent]
