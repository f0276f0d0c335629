"""``report.html``: a self-contained page (inline CSS, plots as base64 PNG, no network).

The page fits a laptop screen without sideways scrolling: a 1,100 px column,
tables whose cells wrap, and images scaled to the column width.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

from soak.report import plots
from soak.report.sections import baseline_view, diagnosis_view, projection_rows, trend_rows
from soak.report.units import MIB, format_mib, format_value
from soak.results import ComparisonResult, CriterionResult, RunResult

TEMPLATES = Path(__file__).parent / "templates"
GROWTH_KEY = "rss_growth_per_request"

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def run_figures(result: RunResult) -> dict[str, str]:
    """Draw the plots of one run; an empty dict when the run has no series."""
    if result.series is None:
        return {}
    runs = [("run", result.series)]
    figures = {
        "rss_time": plots.rss_over_time(runs),
        "gauges": plots.gauges_over_time(runs),
    }
    # Profiles without per-request RSS (sessions, workers) would get an empty axes.
    if result.series.request_index:
        figures["rss_requests"] = plots.rss_over_requests(runs)
    return figures


def comparison_figures(comparison: ComparisonResult) -> dict[str, str]:
    """Draw the overlaid plots of a comparison's two runs."""
    runs = [(label, run.series) for label, run in (("leaky", comparison.leaky), ("fixed", comparison.fixed)) if run.series]
    if not runs:
        return {}
    figures = {
        "rss_time": plots.rss_over_time(runs),
        "gauges": plots.gauges_over_time(runs),
    }
    if any(series.request_index for _, series in runs):
        figures["rss_requests"] = plots.rss_over_requests(runs)
        figures["rss_requests_apart"] = plots.rss_over_requests_apart(runs)
    return figures


def render_run_html(result: RunResult, figures: dict[str, str] | None = None) -> str:
    """Render one run's page; ``figures`` replaces the drawn plots (tests pass fixed ones)."""
    if figures is None:
        figures = run_figures(result)
    context = {
        "page_title": f"soak {result.profile}: {result.verdict} (leaks {result.leaks})",
        "heading": f"{result.profile.capitalize()} profile, leaks: {result.leaks}, model {result.model}",
        "result": result,
        "banner_text": run_banner_text(result),
        "criteria_rows": [criterion_row(criterion) for criterion in result.criteria],
        "growth_rows": growth_rows([("this run", result)]),
        "trend_rows": trend_rows([("this run", result)]),
        "projection_rows": projection_rows([("this run", result)]),
        "diagnosis": diagnosis_view(result.diagnosis),
        "baseline": baseline_view(result.baseline),
        "figures": with_missing_figures(figures),
        "latency_rows": [{"label": "this run", "latency": result.latency}],
        "requests_text": requests_text(result),
        "manifest_facts": manifest_facts(result.manifest),
        "manifest_json": json.dumps(result.manifest, indent=2),
    }
    return _environment.get_template("run.html.j2").render(context)


def render_comparison_html(
    comparison: ComparisonResult,
    figures: dict[str, str] | None = None,
    run_links: dict[str, str] | None = None,
) -> str:
    """Render the comparison page; ``run_links`` maps "leaky" and "fixed" to each run's report."""
    if figures is None:
        figures = comparison_figures(comparison)
    run_links = run_links or {}
    labelled = [("leaky", comparison.leaky), ("fixed", comparison.fixed)]
    runs = [
        {
            "label": label,
            "result": run,
            "link": run_links.get(label, f"{run.run_dir}/report.html"),
            "facts": manifest_facts(run.manifest),
            "diagnosis": diagnosis_view(run.diagnosis),
            "manifest_json": json.dumps(run.manifest, indent=2),
        }
        for label, run in labelled
    ]
    warnings = [f"{label} run: {warning}" for label, run in labelled for warning in run.warnings]
    context = {
        "page_title": f"soak {comparison.profile} comparison: {comparison.verdict}",
        "heading": f"{comparison.profile.capitalize()} profile: leaky against fixed, model {comparison.fixed.model}",
        "comparison": comparison,
        "warnings": warnings,
        "growth_rows": growth_rows(labelled),
        "trend_rows": trend_rows(labelled),
        "projection_rows": projection_rows(labelled),
        "baseline": baseline_view(comparison.fixed.baseline),
        "side_by_side": side_by_side_rows(labelled),
        "runs": runs,
        "figures": with_missing_figures(figures),
        "latency_rows": [{"label": label, "latency": run.latency} for label, run in labelled],
    }
    return _environment.get_template("comparison.html.j2").render(context)


def run_banner_text(result: RunResult) -> str:
    if result.verdict == "ERROR":
        return f"The run could not be carried out: {result.error}"
    counts: dict[str, int] = {}
    for criterion in result.criteria:
        counts[criterion.status] = counts.get(criterion.status, 0) + 1
    parts = [f"{count} {status.lower().replace('_', ' ')}" for status, count in counts.items()]
    return f"{len(result.criteria)} criteria: " + ", ".join(parts) + "."


def criterion_row(criterion: CriterionResult) -> dict[str, Any]:
    return {
        "status": criterion.status,
        "title": criterion.title,
        "measured": format_value(criterion.measured, criterion.unit),
        "limit": format_value(criterion.limit, criterion.unit),
        "reason": criterion.reason,
        "tolerated": criterion.tolerated,
    }


def growth_rows(labelled: list[tuple[str, RunResult]]) -> list[dict[str, str]]:
    """Summarise each run's growth-per-request verdict: slope, interval, p-value and points used."""
    rows = []
    for label, run in labelled:
        criterion = run.criterion(GROWTH_KEY)
        if criterion is None:
            continue
        details = criterion.details
        low, high = details.get("slope_low"), details.get("slope_high")
        interval = "–"
        if low is not None and high is not None:
            interval = f"{low / MIB:+,.2f} to {high / MIB:+,.2f} MiB/request"
        p_value = details.get("trend_p_value")
        used = details.get("n_used")
        rows.append(
            {
                "label": label,
                "status": criterion.status,
                "slope": format_value(criterion.measured, criterion.unit),
                "interval": interval,
                "p_value": "–" if p_value is None else f"{p_value:.2g}",
                "used": "–" if used is None else f"{used} (warm-up cut {details.get('warmup_cut', 0)})",
                "limit": format_value(criterion.limit, criterion.unit),
            }
        )
    return rows


def side_by_side_rows(labelled: list[tuple[str, RunResult]]) -> list[dict[str, Any]]:
    """Line up the runs' criteria by key, in the order they first appear."""
    order: list[tuple[str, str]] = []
    for _, run in labelled:
        for criterion in run.criteria:
            if criterion.key not in [key for key, _ in order]:
                order.append((criterion.key, criterion.title))

    rows = []
    for key, title in order:
        cells = []
        for _, run in labelled:
            found = run.criterion(key)
            cells.append(criterion_row(found) if found else None)
        rows.append({"title": title, "cells": cells})
    return rows


def requests_text(result: RunResult) -> str:
    return (
        f"{result.requests_completed} of {result.requests_planned} planned requests were sent and completed; "
        f"{result.requests_failed} of them failed."
    )


def with_missing_figures(figures: dict[str, str]) -> dict[str, str]:
    return {key: figures.get(key, "") for key in ("rss_requests", "rss_requests_apart", "rss_time", "gauges")}


def manifest_facts(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """Pick the manifest entries a reviewer checks first, as (label, text) rows."""
    if not manifest:
        return []
    settings = manifest.get("settings", {})
    git = manifest.get("git", {})
    host = manifest.get("host", {})
    target = manifest.get("target", {})
    times = manifest.get("times", {})
    allocator = manifest.get("allocator", {})
    packages = manifest.get("packages", {})

    facts = [
        ("profile", f"{manifest.get('profile')}: {settings.get('requests')} requests, {settings.get('users')} user(s)"),
        ("leaks", str(settings.get("leaks"))),
        ("model", f"{settings.get('model')}, cache bound {settings.get('cache_max_models')}"),
        ("model identities", ", ".join(manifest.get("model_identities", [])) or "–"),
        ("git revision", f"{git.get('revision') or 'unknown'}{' (uncommitted changes)' if git.get('dirty') else ''}"),
        ("target", f"{target.get('url')} (PID {target.get('pid')}, gateway {target.get('gateway_version')})"),
        ("started / ready / ended", f"{times.get('started_at')} / {times.get('ready_at')} / {times.get('ended_at')}"),
        ("host", f"{host.get('cpu_count')} CPUs, {format_mib(host.get('memory_total_bytes'))} memory, {host.get('platform')}"),
        ("allocator", ", ".join(f"{key}={value if value is not None else 'unset'}" for key, value in allocator.items()) or "–"),
        ("packages", ", ".join(f"{name} {version}" for name, version in packages.items()) or "–"),
    ]
    for name, model in manifest.get("models", {}).items():
        digests = ", ".join(f"{path} {digest[:12]}" for path, digest in sorted(model.get("sha256", {}).items()))
        facts.append((f"model {name}", f"{format_mib(model.get('instance_bytes'))} per instance; sha256 {digests or '–'}"))
    return facts
