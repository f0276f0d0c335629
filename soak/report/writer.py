"""Write every output of a run or a comparison into its folder."""

from __future__ import annotations

from soak.report.html import render_comparison_html, render_run_html
from soak.report.junit import render_comparison_junit, render_run_junit
from soak.report.summary import comparison_summary, run_summary
from soak.results import ComparisonResult, RunResult
from soak.rundir import JUNIT, REPORT, SUMMARY, RunFolder


def write_run_outputs(folder: RunFolder, result: RunResult) -> None:
    """Write summary.json, junit.xml and report.html of one run."""
    folder.write_json(SUMMARY, run_summary(result))
    folder.write_text(JUNIT, render_run_junit(result))
    folder.write_text(REPORT, render_run_html(result))


def write_comparison_outputs(folder: RunFolder, comparison: ComparisonResult, run_links: dict[str, str]) -> None:
    """Write the comparison's summary.json, junit.xml and report.html.

    ``run_links`` maps "leaky" and "fixed" to each run's report, relative to the comparison folder.
    """
    folder.write_json(SUMMARY, comparison_summary(comparison))
    folder.write_text(JUNIT, render_comparison_junit(comparison))
    folder.write_text(REPORT, render_comparison_html(comparison, run_links=run_links))
