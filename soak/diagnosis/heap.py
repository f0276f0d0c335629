"""The traced Python heap: RSS against tracemalloc's figure, and the allocation sites that grew."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from soak.diagnosis.census import FLAT_GROWTH_BYTES, MIB, fitted_growth, status_of

# tracemalloc snapshots (``Snapshot.dump``), one file each, named so that they sort by time.
SNAPSHOTS_DIR = "snapshots"

# Shares of the RSS growth that the traced heap must reach to read as Python
# objects, or stay under to read as native memory. Between them it is mixed.
PYTHON_HEAP_SHARE = 0.5
NATIVE_HEAP_SHARE = 0.2

TOP_ALLOCATION_SITES = 10

# Frames that every snapshot has and that no leak fix can act on.
_IGNORED_TRACE_FILES = (
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
    "<unknown>",
    tracemalloc.__file__,
)

HeapKind = Literal["python", "native", "mixed", "flat", "not_traced"]


@dataclass(frozen=True)
class AllocationSite:
    """A source line whose traced allocations grew between the first and the last snapshot."""

    site: str
    size_diff_bytes: int
    count_diff: int
    size_bytes: int


@dataclass(frozen=True)
class HeapReading:
    """RSS growth against the growth of the traced Python heap over the same samples."""

    kind: HeapKind
    rss_growth_bytes: float | None
    traced_growth_bytes: float | None
    sentence: str


def snapshot_files(folder: Path) -> list[Path]:
    directory = folder / SNAPSHOTS_DIR
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if path.is_file())


def growing_sites(first: Path, last: Path, limit: int = TOP_ALLOCATION_SITES) -> list[AllocationSite]:
    """Compare the last snapshot with the first and return the lines whose traced size grew most.

    NOTE: ``tracemalloc.Snapshot.load`` unpickles the file, so only report on
    run folders from a source you trust.
    """
    ignored = [tracemalloc.Filter(False, pattern) for pattern in _IGNORED_TRACE_FILES]
    old = tracemalloc.Snapshot.load(str(first)).filter_traces(ignored)
    new = tracemalloc.Snapshot.load(str(last)).filter_traces(ignored)

    sites = []
    for stat in new.compare_to(old, "lineno"):
        if stat.size_diff <= 0:
            continue
        frame = stat.traceback[0]
        sites.append(
            AllocationSite(
                site=f"{short_path(frame.filename)}:{frame.lineno}",
                size_diff_bytes=stat.size_diff,
                count_diff=stat.count_diff,
                size_bytes=stat.size,
            )
        )
        if len(sites) == limit:
            break
    return sites


def short_path(filename: str) -> str:
    """Cut a file name to the part after site-packages, or after the repository root."""
    marker = "site-packages/"
    if marker in filename:
        return filename.split(marker, 1)[1]
    repository = str(Path(__file__).resolve().parents[2]) + "/"
    if filename.startswith(repository):
        return filename[len(repository):]
    return filename


def heap_reading(rows: list[dict[str, Any]]) -> HeapReading:
    """Compare the growth of RSS with that of tracemalloc's traced heap over the same samples."""
    traced_rows = [row for row in rows if status_of(row).get("tracemalloc_traced_bytes") is not None and row.get("rss_bytes")]
    if len(traced_rows) < 3:
        return HeapReading(
            "not_traced", fitted_growth(rows, lambda row: row.get("rss_bytes")), None,
            "tracemalloc was off, so RSS cannot be split into Python objects and native memory; start the "
            "gateway with --tracemalloc-frames 1 to see it (inference runs several times slower).",
        )

    rss_growth = fitted_growth(traced_rows, lambda row: row.get("rss_bytes")) or 0.0
    heap_growth = fitted_growth(traced_rows, lambda row: status_of(row).get("tracemalloc_traced_bytes")) or 0.0
    rss_text = f"{rss_growth / MIB:+,.1f} MiB"
    heap_text = f"{heap_growth / MIB:+,.1f} MiB"

    if rss_growth < FLAT_GROWTH_BYTES and heap_growth < FLAT_GROWTH_BYTES:
        return HeapReading("flat", rss_growth, heap_growth, f"Neither RSS ({rss_text}) nor the traced Python heap ({heap_text}) grew.")
    if rss_growth < FLAT_GROWTH_BYTES:
        return HeapReading(
            "python", rss_growth, heap_growth,
            f"The traced Python heap grew ({heap_text}) while RSS stayed flat ({rss_text}): Python objects are "
            "growing into memory that the process had already mapped.",
        )

    share = heap_growth / rss_growth
    if share >= PYTHON_HEAP_SHARE:
        return HeapReading(
            "python", rss_growth, heap_growth,
            f"The traced Python heap grew {heap_text} of the {rss_text} RSS growth ({share * 100:.0f} %), so Python "
            "objects are growing (numpy arrays and bytes count), and the retention paths show what keeps them.",
        )
    if share <= NATIVE_HEAP_SHARE:
        return HeapReading(
            "native", rss_growth, heap_growth,
            f"RSS grew {rss_text} while the traced Python heap grew {heap_text} ({share * 100:.0f} %), so the growth is "
            "native memory outside the Python heap: tensor storage, native library caches or allocator "
            "fragmentation, which tracemalloc cannot see.",
        )
    return HeapReading(
        "mixed", rss_growth, heap_growth,
        f"The traced Python heap grew {heap_text} of the {rss_text} RSS growth ({share * 100:.0f} %), so Python objects "
        "account for part of it and native memory or the allocator for the rest.",
    )
