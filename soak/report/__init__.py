"""Report writers: terminal summary, summary.json, junit.xml and report.html.

Each writer takes a ``RunResult`` or ``ComparisonResult`` and renders it; none
of them computes a figure of its own.
"""

from __future__ import annotations

from soak.report.html import render_comparison_html, render_run_html
from soak.report.junit import render_comparison_junit, render_run_junit
from soak.report.summary import comparison_summary, run_summary
from soak.report.terminal import format_comparison, format_run
from soak.report.writer import write_comparison_outputs, write_run_outputs

__all__ = [
    "comparison_summary",
    "format_comparison",
    "format_run",
    "render_comparison_html",
    "render_comparison_junit",
    "render_run_html",
    "render_run_junit",
    "run_summary",
    "write_comparison_outputs",
    "write_run_outputs",
]
