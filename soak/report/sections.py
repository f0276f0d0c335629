"""Rows of the memory trend, diagnosis and baseline sections, formatted for the HTML templates.

These functions only format what the result model holds; the figures are
computed in soak.memory_trend, soak.diagnosis and soak.baseline.
"""

from __future__ import annotations

from typing import Any

from soak.baseline import BaselineComparison
from soak.diagnosis import Diagnosis, describe_holdings, owner_kind
from soak.memory_trend import format_duration
from soak.report.units import MIB, format_interval, format_value
from soak.results import RunResult

HEAP_TITLES = {
    "python": "Python objects are growing",
    "native": "Native or allocator growth with a flat Python heap",
    "mixed": "Python objects and native memory both grow",
    "flat": "Neither grew",
    "not_traced": "Not traced",
}


def trend_rows(labelled: list[tuple[str, RunResult]]) -> list[dict[str, Any]]:
    """Up to two rows per run: the slope per request, where the profile has one, and the slope per hour."""
    rows = []
    for label, run in labelled:
        trend = run.trend
        if trend is None:
            continue
        if trend.per_request_verdict is not None:
            rows.append(
                {
                    "label": label,
                    "axis": "per request",
                    "status": trend.per_request_verdict,
                    "slope": format_value(trend.per_request_bytes, "bytes/request"),
                    "interval": format_interval(trend.per_request_low_bytes, trend.per_request_high_bytes, "bytes/request"),
                    "threshold": format_value(trend.per_request_min_leak_rate_bytes, "bytes/request"),
                    "decides": trend.per_request_criterion is not None,
                }
            )
        rows.append(
            {
                "label": label,
                "axis": "per hour",
                "status": trend.per_hour_verdict,
                "slope": format_value(trend.per_hour_bytes, "bytes/hour"),
                "interval": format_interval(trend.per_hour_low_bytes, trend.per_hour_high_bytes, "bytes/hour"),
                "threshold": format_value(trend.min_leak_rate_bytes_per_hour, "bytes/hour"),
                "decides": trend.per_hour_criterion is not None,
            }
        )
    return rows


def projection_rows(labelled: list[tuple[str, RunResult]]) -> list[dict[str, str]]:
    rows = []
    for label, run in labelled:
        trend = run.trend
        if trend is None:
            continue
        time_to_limit = "–" if trend.time_to_limit_s is None else format_duration(trend.time_to_limit_s)
        rows.append({"label": label, "time_to_limit": time_to_limit, "text": trend.projection})
    return rows


def diagnosis_view(diagnosis: Diagnosis | None) -> dict[str, Any] | None:
    """Format a run's diagnosis: conclusion, census, retention paths, allocation sites, heap reading."""
    if diagnosis is None:
        return None

    census = []
    for gauge in diagnosis.gauges:
        census.append(
            {
                "name": gauge.name,
                "label": gauge.label,
                "grown": gauge.name == diagnosis.grown_gauge,
                "start": _gauge_value(gauge.start, gauge.name),
                "end": _gauge_value(gauge.end, gauge.name),
                "growth": _gauge_value(gauge.growth, gauge.name, signed=True),
                "per_unit": _per_unit(gauge.bytes_per_unit, gauge.name),
                "per_unit_source": gauge.bytes_per_unit_source or "",
                "share": "–" if gauge.explained_fraction is None else f"{gauge.explained_fraction * 100:.0f} %",
                "correlation": "–" if gauge.correlation is None else f"{gauge.correlation:+.2f}",
            }
        )

    holder_root = diagnosis.holder.root if diagnosis.holder else None
    holders = [
        {
            "attribute": holder.attribute,
            "owner": holder.owner,
            "holds": ", ".join(f"{count:,} {name}" for name, count in holder.holds.items() if not name.endswith("_bytes")) or "–",
            "bytes": "–" if not holder.bytes else f"{holder.bytes / MIB:,.1f} MiB",
            "is_holder": holder.root == holder_root,
        }
        for holder in diagnosis.holders
    ]
    sites = [
        {
            "site": site.site,
            "growth": f"{site.size_diff_bytes / MIB:+,.2f} MiB",
            "blocks": f"{site.count_diff:+,}",
            "size": f"{site.size_bytes / MIB:,.2f} MiB",
        }
        for site in diagnosis.allocation_sites
    ]
    heap = diagnosis.heap
    return {
        "conclusion": diagnosis.conclusion,
        "window": diagnosis.window,
        "sample_count": diagnosis.sample_count,
        "rss_growth": "–" if diagnosis.rss_growth_bytes is None else f"{diagnosis.rss_growth_bytes / MIB:+,.1f} MiB",
        "census": census,
        "holder": _holder_view(diagnosis),
        "holders": holders,
        "live_objects": ", ".join(f"{count:,} {name}" for name, count in diagnosis.live_objects.items()) or "–",
        "retention_note": diagnosis.retention_note,
        "snapshots": " and ".join(diagnosis.snapshots[:1] + diagnosis.snapshots[-1:]) if len(diagnosis.snapshots) > 1 else "",
        "sites": sites,
        "allocation_note": diagnosis.allocation_note,
        "heap_kind": heap.kind,
        "heap_title": HEAP_TITLES[heap.kind],
        "heap_sentence": heap.sentence,
    }


def baseline_view(baseline: BaselineComparison | None) -> dict[str, Any] | None:
    if baseline is None:
        return None
    rows = [
        {
            "title": figure.title,
            "status": figure.status,
            "baseline": (baseline.baseline_verdict or "–") if figure.unit == "verdict" else format_value(figure.baseline, figure.unit),
            "current": (baseline.current_verdict or "–") if figure.unit == "verdict" else format_value(figure.current, figure.unit),
            "allowed": format_value(figure.allowed, figure.unit),
            "tolerance": "–" if figure.unit == "verdict" else f"{figure.tolerance * 100:g} %",
            "reason": figure.reason,
        }
        for figure in baseline.figures
    ]
    regressions = len(baseline.regressions)
    if regressions:
        summary = f"{regressions} figure{'s' if regressions > 1 else ''} regressed against the baseline."
    else:
        summary = "No figure regressed against the baseline."
    return {
        "path": baseline.path,
        "run_dir": baseline.baseline_run_dir or "–",
        "verdict": baseline.baseline_verdict or "–",
        "started_at": baseline.baseline_started_at or "–",
        "rows": rows,
        "warnings": baseline.warnings,
        "regressed": baseline.regressed,
        "summary": summary,
    }


def _gauge_value(value: float, name: str, signed: bool = False) -> str:
    if name == "sessions_buffered_bytes":
        return f"{value / MIB:+,.2f} MiB" if signed else f"{value / MIB:,.2f} MiB"
    return f"{value:+,.0f}" if signed else f"{value:,.0f}"


def _per_unit(bytes_per_unit: float | None, name: str) -> str:
    if bytes_per_unit is None:
        return "–"
    if name == "sessions_buffered_bytes":
        return f"{bytes_per_unit:g} byte per byte"
    return f"{bytes_per_unit / MIB:,.2f} MiB"


def _holder_view(diagnosis: Diagnosis) -> dict[str, str] | None:
    holder = diagnosis.holder
    if holder is None:
        return None
    return {
        "attribute": holder.attribute,
        "owner": holder.owner,
        "owner_kind": owner_kind(holder),
        "holdings": describe_holdings(holder),
    }
