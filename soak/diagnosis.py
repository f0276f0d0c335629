"""Diagnosis of a run's memory growth: which gauge grew with RSS and what holds it.

Filled in below; the runner only needs the file names.
"""

from __future__ import annotations

# GET /v1/debug/memory, saved by the runner at the end of the load phase.
DIAGNOSIS = "diagnosis.json"
# tracemalloc snapshots (``Snapshot.dump``), one file each, named so that they sort by time.
SNAPSHOTS_DIR = "snapshots"
