"""Figures over rounds: medians, spreads, round-by-round ratios, and the Markdown page rendered from them."""

from __future__ import annotations

import json
import math

import pytest

from soak.bench.figures import Figure, Section, paired_ratios, percentile
from soak.bench.page import format_value, render_page


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile([5.0], 0.99) == 5.0
    assert math.isnan(percentile([], 0.5))


def test_ratios_pair_rounds() -> None:
    assert paired_ratios([2.0, 6.0], [1.0, 3.0]) == [2.0, 2.0]
    zero_reference = paired_ratios([2.0], [0.0])
    assert math.isnan(zero_reference[0])


def test_figure_median_spread_and_ratio() -> None:
    figure = Figure("gateway throughput", "requests/s", [9.0, 8.0, 10.0], "direct", [10.0, 10.0, 10.0], better="higher")

    assert figure.median == 9.0
    assert figure.spread == (8.0, 10.0)
    assert figure.ratio_median == pytest.approx(0.9)
    assert figure.ratio_spread == pytest.approx((0.8, 1.0))
    body = figure.to_json()
    assert body["ratios"] == pytest.approx([0.9, 0.8, 1.0])


def test_figure_ignores_missing_rounds() -> None:
    figure = Figure("status p99", "s", [float("nan"), 0.01, 0.03])

    assert figure.median == pytest.approx(0.02)
    assert figure.spread == (0.01, 0.03)
    assert figure.ratios == []


def test_section_figure_lookup() -> None:
    section = Section("status", "Status", "how", [Figure("a", "s", [1.0])])

    assert section.figure("a").values == [1.0]
    with pytest.raises(KeyError):
        section.figure("b")


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.0123, "s", "12.3 ms"),
        (2.5, "s", "2.50 s"),
        (1234.56, "MiB", "1,234.6 MiB"),
        (9.876, "requests/s", "9.88 req/s"),
        (None, "MiB", "n/a"),
        (float("nan"), "s", "n/a"),
    ],
)
def test_format_value_units(value: float | None, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def document_with(sections: list[Section]) -> dict:
    return {
        "command": "soak bench --rounds 2",
        "created": "2026-12-04T23:00:00+00:00",
        "git_revision": "abc1234",
        "duration_s": 90.0,
        "rounds": 2,
        "model": "paraformer-tiny",
        "machine": {
            "cpu": "Test CPU", "cpu_count": 2, "cpus_usable": 2, "memory_bytes": 24 * 1024**3,
            "os": "Linux", "libc": "glibc 2.36", "python": "3.11.2", "load_average_at_start": [0.5, 0.4, 0.3],
        },
        "versions": {"torch": "2.13.0"},
        "sections": [json.loads(json.dumps(section.to_json())) for section in sections],
    }


def test_page_has_tables_findings_and_failures() -> None:
    measured = Section(
        "throughput", "Throughput", "Closed-loop batches.",
        [Figure("gateway, concurrency 1: throughput", "requests/s", [9.0, 9.5], "direct", [10.0, 10.0])],
        findings=["The gateway reaches 0.93 of direct calls."], commands=["gateway serve"],
    )
    failed = Section("memory", "memory (failed)", "", error="funasr-server exited with status 1\nlast lines")

    page = render_page(document_with([measured, failed]), json_name="benchmarks.json")

    assert "| gateway, concurrency 1: throughput | 9.25 req/s | 9.00 req/s to 9.50 req/s | direct: 10.00 req/s | 0.93 (0.90 to 0.95) |" in page
    assert "- The gateway reaches 0.93 of direct calls." in page
    assert "**memory (failed)**: not measured: funasr-server exited with status 1" in page
    assert "[benchmarks.json](<benchmarks.json>)" in page
    assert "[benchmark-fixes.md](<benchmark-fixes.md>)" in page
    assert "**Only 2 round(s):**" in page
    assert page == render_page(document_with([measured, failed]), json_name="benchmarks.json")
