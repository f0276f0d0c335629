"""Diagnosis of a run's memory growth: which gauge grew with RSS and what keeps it.

tracemalloc names the line that allocated memory, but a leak fix needs the
container that keeps it, and tracemalloc does not see torch's tensor storage
at all. So the diagnosis combines four readings:

1. the census: which status gauge (cached models, retained futures, open
   sessions, buffered session bytes) grew with RSS over the window, and how
   many bytes per unit it accounts for;
2. retention paths: the module-level or long-lived container in the
   gateway's ``GET /v1/debug/memory`` (saved as diagnosis.json) that holds
   the objects of that gauge;
3. tracemalloc's top growing allocation sites, from the first and last
   snapshot under snapshots/ when the gateway traced;
4. RSS against the traced Python heap: Python objects growing, or native
   and allocator growth with a flat heap.

docs/reports.md describes the method and its limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soak.diagnosis.census import MIB, GaugeGrowth, census, explaining_gauge, fitted_growth, holder_for
from soak.diagnosis.heap import SNAPSHOTS_DIR, AllocationSite, HeapReading, growing_sites, heap_reading, snapshot_files
from soak.diagnosis.retention import DIAGNOSIS, Holder, describe_holder, describe_holdings, owner_kind, parse_holders, read_memory_report

__all__ = [
    "DIAGNOSIS",
    "SNAPSHOTS_DIR",
    "AllocationSite",
    "Diagnosis",
    "GaugeGrowth",
    "HeapReading",
    "Holder",
    "describe_holder",
    "describe_holdings",
    "diagnose",
    "owner_kind",
]

TOP_HOLDERS = 8


@dataclass(frozen=True)
class Diagnosis:
    """What grew during a run and what keeps it, for every report writer."""

    window: str
    sample_count: int
    # Theil-Sen fitted change of RSS over the window.
    rss_growth_bytes: float | None
    gauges: list[GaugeGrowth]
    # The gauge that accounts for most of the growth, and the container that keeps its objects.
    grown_gauge: str | None
    holder: Holder | None
    holders: list[Holder]
    live_objects: dict[str, int]
    # Reason that diagnosis.json gave no retention paths, None when it did.
    retention_note: str | None
    snapshots: list[str]
    allocation_sites: list[AllocationSite]
    allocation_note: str | None
    heap: HeapReading
    conclusion: str


def diagnose(
    folder: Path,
    rows: list[dict[str, Any]],
    *,
    model_bytes: float | None,
    window: str,
    leak_verdict: str | None,
    manifest_diagnosis: dict[str, Any] | None = None,
) -> Diagnosis:
    """Diagnose the run saved in ``folder`` over the sample ``rows`` of the window.

    ``rows`` are samples.jsonl rows in time order. ``leak_verdict`` is the
    growth verdict over the same window: with PASS, nothing is blamed.
    ``manifest_diagnosis`` is the manifest's record of the diagnosis.json fetch.
    """
    report, retention_note = read_memory_report(folder, manifest_diagnosis)
    holders = parse_holders(report)
    gauges = census(rows, model_bytes=model_bytes, holders=holders)
    rss_growth = fitted_growth(rows, lambda row: row.get("rss_bytes"))

    grown = explaining_gauge(gauges)
    holder = holder_for(grown, holders) if grown is not None else None

    snapshots = snapshot_files(folder)
    sites: list[AllocationSite] = []
    allocation_note = None
    if len(snapshots) >= 2:
        try:
            sites = growing_sites(snapshots[0], snapshots[-1])
        except (OSError, EOFError, ValueError, TypeError) as error:
            allocation_note = f"The snapshots could not be read ({type(error).__name__}: {error})."
    elif snapshots:
        allocation_note = "Only one tracemalloc snapshot exists, and growth needs a first and a last one."
    else:
        allocation_note = "No tracemalloc snapshots: the gateway did not trace Python allocations in this run."

    heap = heap_reading(rows)
    conclusion = conclude(leak_verdict, rss_growth, gauges, grown, holder, heap)
    return Diagnosis(
        window=window,
        sample_count=len(rows),
        rss_growth_bytes=rss_growth,
        gauges=gauges,
        grown_gauge=grown.name if grown else None,
        holder=holder,
        holders=holders[:TOP_HOLDERS],
        live_objects=dict(report.get("live_objects") or {}) if report else {},
        retention_note=retention_note,
        snapshots=[path.name for path in snapshots],
        allocation_sites=sites,
        allocation_note=allocation_note,
        heap=heap,
        conclusion=conclusion,
    )


def conclude(
    leak_verdict: str | None,
    rss_growth: float | None,
    gauges: list[GaugeGrowth],
    grown: GaugeGrowth | None,
    holder: Holder | None,
    heap: HeapReading,
) -> str:
    """Write the diagnosis in two or three sentences: what grew and which container holds it."""
    if rss_growth is None:
        rss_text = "RSS could not be fitted over the window."
    else:
        rss_text = f"RSS changed by {rss_growth / MIB:+,.1f} MiB over the window."
    if leak_verdict == "PASS":
        return f"The growth verdict is PASS, so there is no leak to attribute. {rss_text}"

    if grown is None:
        if heap.kind in ("native", "python", "mixed"):
            return f"{rss_text} No status gauge grew with it. {heap.sentence}"
        return f"{rss_text} No status gauge grew with it, so the census cannot attribute the growth."

    growth_text = f"The {grown.label} grew by {_format_count(grown.growth, grown.name)}"
    if grown.bytes_per_unit is not None and grown.name != "sessions_buffered_bytes":
        growth_text += f", at {grown.bytes_per_unit / MIB:,.2f} MiB each"
    if grown.explained_fraction is not None:
        growth_text += f", which accounts for {grown.explained_fraction * 100:.0f} % of it"
    sentence = f"{rss_text} {growth_text}."
    if holder is None:
        return f"{sentence} No container in the gateway's memory report holds them."
    return f"{sentence} They are held by {describe_holder(holder)}."



def _format_count(value: float, name: str) -> str:
    if name == "sessions_buffered_bytes":
        return f"{value / MIB:,.1f} MiB"
    return f"{value:,.0f}"
