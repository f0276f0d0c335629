"""Report writers: rendered output compared whole with files under golden/.

Set SOAK_UPDATE_GOLDEN=1 to rewrite the golden files after an intended
change, then review their diff.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from pathlib import Path

import pytest

from soak.report import (
    comparison_summary,
    format_comparison,
    format_run,
    render_comparison_html,
    render_comparison_junit,
    render_run_html,
    render_run_junit,
    run_summary,
    write_run_outputs,
)
from soak.report.html import comparison_figures, run_figures
from soak.rundir import RunFolder
from tests.soak.builders import sample_comparison, sample_run_result

GOLDEN = Path(__file__).parent / "golden"
# Stand-ins for the PNGs, so that the HTML comparison does not depend on matplotlib's rendering.
FIXED_FIGURES = {name: f"PNG-{name}" for name in ("rss_requests", "rss_requests_apart", "rss_time", "gauges")}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_matches_golden(text: str, name: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SOAK_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with SOAK_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"output differs from {path}; rerun with SOAK_UPDATE_GOLDEN=1 if intended"


def test_run_html_matches_golden():
    html = render_run_html(sample_run_result("leaky"), figures=FIXED_FIGURES)

    assert_matches_golden(html, "run_report.html")


def test_comparison_html_matches_golden():
    html = render_comparison_html(sample_comparison(), figures=FIXED_FIGURES)

    assert_matches_golden(html, "comparison_report.html")


def test_run_junit_matches_golden():
    assert_matches_golden(render_run_junit(sample_run_result("leaky")), "run_junit.xml")


def test_comparison_junit_matches_golden():
    assert_matches_golden(render_comparison_junit(sample_comparison()), "comparison_junit.xml")


def test_terminal_summary_matches_golden():
    text = format_comparison(sample_comparison(), report_path="reports/runs/x/report.html") + "\n"

    assert_matches_golden(text, "comparison_terminal.txt")


def test_summary_json_matches_golden():
    text = json.dumps(comparison_summary(sample_comparison()), indent=2) + "\n"

    assert_matches_golden(text, "comparison_summary.json")


def test_junit_has_one_case_per_criterion():
    result = sample_run_result("leaky")

    suite = ElementTree.fromstring(render_run_junit(result)).find("testsuite")

    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [criterion.title for criterion in result.criteria]
    assert suite.get("tests") == str(len(result.criteria))
    # FAIL x2 and INCONCLUSIVE x1 are failures; NOT_APPLICABLE is skipped.
    assert suite.get("failures") == "3"
    assert suite.get("skipped") == "1"
    assert suite.get("errors") == "0"
    assert cases[4].find("failure").get("type") == "INCONCLUSIVE"


def test_junit_error_run_has_one_error_case():
    result = sample_run_result("fixed")
    result.verdict = "ERROR"
    result.error = "the gateway was not ready within 180 s"
    result.criteria = []

    suite = ElementTree.fromstring(render_run_junit(result)).find("testsuite")

    cases = suite.findall("testcase")
    assert len(cases) == 1
    assert cases[0].find("error").get("message") == "the gateway was not ready within 180 s"


def test_summary_has_schema_version_and_criteria():
    result = sample_run_result("fixed")

    summary = run_summary(result)

    assert summary["schema_version"] == 1
    assert summary["verdict"] == "PASS"
    assert summary["exit_code"] == 0
    assert [criterion["key"] for criterion in summary["criteria"]] == [criterion.key for criterion in result.criteria]
    json.dumps(summary, allow_nan=False)


def test_terminal_run_summary_lists_every_criterion():
    result = sample_run_result("leaky")

    text = format_run(result)

    for criterion in result.criteria:
        assert criterion.title in text
    assert text.splitlines()[0] == "memory run, leaks all, model paraformer-50mb: FAIL"


def test_plots_are_deterministic_pngs():
    first = run_figures(sample_run_result("fixed"))
    second = run_figures(sample_run_result("fixed"))

    assert first == second
    assert sorted(first) == ["gauges", "rss_requests", "rss_time"]
    for encoded in first.values():
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)


def test_run_without_requests_has_no_request_plot():
    result = sample_run_result("fixed")
    result.series = replace(result.series, request_index=[], request_end_s=[], request_rss_bytes=[], growth_fit=None)

    figures = run_figures(result)

    assert sorted(figures) == ["gauges", "rss_time"]
    assert 'alt="RSS per request"' not in render_run_html(result, figures=figures)


def test_comparison_plots_overlay_both_runs():
    figures = comparison_figures(sample_comparison())

    assert sorted(figures) == ["gauges", "rss_requests", "rss_requests_apart", "rss_time"]
    for encoded in figures.values():
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("label", ["leaky", "fixed"])
def test_html_is_self_contained(label, tmp_path):
    folder = RunFolder.at(tmp_path / label)

    write_run_outputs(folder, sample_run_result(label))

    html = folder.file("report.html").read_text(encoding="utf-8")
    assert "<script" not in html
    assert "<link" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the report must not load anything over the network"
    assert html.count('src="data:image/png;base64,') == 3
    assert folder.file("summary.json").exists()
    assert folder.file("junit.xml").exists()


def test_junit_skips_tolerated_inconclusive():
    result = sample_run_result("fixed")
    growth = result.criteria[0]
    result.criteria[0] = type(growth)(**{**growth.__dict__, "status": "INCONCLUSIVE", "tolerated": True})

    case = ElementTree.fromstring(render_run_junit(result)).find("testsuite").findall("testcase")[0]

    assert case.find("failure") is None
    assert case.find("skipped").get("message").startswith("INCONCLUSIVE: ")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAPTOP_WIDTH_PX = 1280
# Appended to a copy of the report only, because the report itself runs no script.
SCROLL_WIDTH_PROBE = (
    "<script>document.body.setAttribute('data-scroll-width', document.documentElement.scrollWidth);</script>"
)


def page_width_px(html: str, folder: Path) -> int:
    """Load ``html`` in headless Chromium at laptop width and return the page's scroll width."""
    path = folder / "probe.html"
    path.write_text(html.replace("</body>", SCROLL_WIDTH_PROBE + "</body>"), encoding="utf-8")
    completed = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={folder / 'profile'}",
         f"--window-size={LAPTOP_WIDTH_PX},1000", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r'data-scroll-width="(\d+)"', completed.stdout)
    assert match, f"Chromium printed no page width:\n{completed.stderr[-2000:]}"
    return int(match.group(1))


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_reports_fit_laptop_width(tmp_path):
    comparison = sample_comparison()
    pages = {
        "run": render_run_html(comparison.leaky),
        "comparison": render_comparison_html(comparison),
    }

    for name, html in pages.items():
        assert page_width_px(html, tmp_path) <= LAPTOP_WIDTH_PX, f"the {name} report scrolls sideways at {LAPTOP_WIDTH_PX} px"
