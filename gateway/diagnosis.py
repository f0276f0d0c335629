"""In-process memory diagnosis: live object counts and retention paths.

tracemalloc names the line that allocated memory; what a leak fix needs is
the container that keeps it. This module walks forward from long-lived roots
(module-level attributes of ``gateway.*`` modules and the gateway's own
components) through ``gc.get_referents`` and reports, per root, the tracked
objects it keeps reachable and their array and buffer bytes.
"""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import sys
import tracemalloc
import types
from collections import Counter
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MAX_DEPTH = 6
MAX_VISITED_PER_ROOT = 200_000
MIN_BUFFER_BYTES = 1024
TRACEMALLOC_TOP = 10


def _tracked_types() -> dict[str, type]:
    from gateway.asr import LoadedModel, Transcript
    from gateway.sessions import Session

    return {
        "LoadedModel": LoadedModel,
        "Future": concurrent.futures.Future,
        "Transcript": Transcript,
        "Session": Session,
    }


def live_object_counts() -> dict[str, int]:
    """Count live instances of the tracked types (a full ``gc.get_objects()`` walk)."""
    tracked = _tracked_types()
    counts = Counter()
    for obj in gc.get_objects():
        for name, cls in tracked.items():
            if isinstance(obj, cls):
                counts[name] += 1
    return {name: counts.get(name, 0) for name in tracked}


def _roots() -> dict[str, Any]:
    roots: dict[str, Any] = {}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("gateway") or module is None:
            continue
        for attribute, value in vars(module).items():
            if isinstance(value, (types.ModuleType, types.FunctionType, type)) or attribute.startswith("__"):
                continue
            if isinstance(value, (dict, list, set, tuple)) and value:
                roots[f"{module_name}.{attribute}"] = value
    return roots


def component_roots(components: Any) -> dict[str, Any]:
    """Name each attribute of the gateway's cache, pool and session store as a root."""
    roots: dict[str, Any] = {}
    for part in ("cache", "pool", "sessions"):
        holder = getattr(components, part)
        for attribute, value in vars(holder).items():
            if isinstance(value, (dict, list, set)) and value:
                roots[f"{type(holder).__module__}.{type(holder).__name__}.{attribute}"] = value
    return roots


def _walk(root: Any, tracked: dict[str, type]) -> dict[str, int]:
    counts: Counter = Counter()
    seen: set[int] = {id(root)}
    frontier = [root]
    for _ in range(MAX_DEPTH):
        following = []
        for obj in frontier:
            for name, cls in tracked.items():
                if isinstance(obj, cls):
                    counts[name] += 1
            if isinstance(obj, np.ndarray):
                counts["ndarray_bytes"] += obj.nbytes
                continue
            if isinstance(obj, (bytes, bytearray)):
                if len(obj) >= MIN_BUFFER_BYTES:
                    counts["buffer_bytes"] += len(obj)
                continue
            if isinstance(obj, (str, int, float, types.ModuleType, type)):
                continue
            for child in gc.get_referents(obj):
                if id(child) not in seen and len(seen) < MAX_VISITED_PER_ROOT:
                    seen.add(id(child))
                    following.append(child)
        frontier = following
    return dict(counts)


def retention_paths(extra_roots: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Return, per long-lived root, what tracked objects and bytes it keeps reachable."""
    tracked = _tracked_types()
    roots = _roots()
    roots.update(extra_roots or {})
    rows = []
    for name, root in roots.items():
        held = _walk(root, tracked)
        if not held:
            continue
        rows.append({"root": name, "holds": held, "bytes": held.get("ndarray_bytes", 0) + held.get("buffer_bytes", 0)})
    rows.sort(key=lambda row: (-row["bytes"], -sum(row["holds"].values()), row["root"]))
    return rows


def start_tracing(frames: int) -> bool:
    """Start tracemalloc with ``frames`` frames per trace; return False when it already runs."""
    if tracemalloc.is_tracing():
        return False
    tracemalloc.start(frames)
    logger.info("tracemalloc started with %d frame(s)", frames)
    return True


def traced_bytes() -> int | None:
    """Return the traced Python heap in bytes, or None when tracing is off."""
    if not tracemalloc.is_tracing():
        return None
    return tracemalloc.get_traced_memory()[0]


def dump_snapshot(path: str) -> None:
    """Write a tracemalloc snapshot to ``path`` (``tracemalloc.Snapshot.load`` reads it back)."""
    tracemalloc.take_snapshot().dump(path)


def tracemalloc_figures() -> dict[str, Any]:
    if not tracemalloc.is_tracing():
        return {"tracing": False}
    traced, peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot()
    top = [
        {"site": str(stat.traceback), "size_bytes": stat.size, "count": stat.count}
        for stat in snapshot.statistics("lineno")[:TRACEMALLOC_TOP]
    ]
    return {"tracing": True, "traced_bytes": traced, "peak_bytes": peak, "top_sites": top}


def memory_report(status: dict[str, Any], components: Any = None) -> dict[str, Any]:
    census = {
        key: status.get(key)
        for key in ("rss_bytes", "models_cached", "retained_futures", "sessions_open", "sessions_buffered_bytes")
    }
    return {
        "schema_version": 1,
        "census": census,
        "live_objects": live_object_counts(),
        "retention_paths": retention_paths(component_roots(components) if components is not None else None),
        "tracemalloc": tracemalloc_figures(),
    }
