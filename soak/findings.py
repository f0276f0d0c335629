"""The memory trend and the diagnosis of a run whose profile's judgement did not compute them.

The memory profile fits them over the requests after the cache filled. Any
other profile gets them here, over every RSS sample after the gateway was
ready: the slope per hour, the time to the memory limit, and what grew and
what keeps it.
"""

from __future__ import annotations

from pathlib import Path

from soak.analysis import RunData
from soak.criteria import load_criteria
from soak.diagnosis import diagnose
from soak.memory_trend import memory_trend
from soak.results import RunResult


def add_memory_findings(result: RunResult, data: RunData, criteria_path: Path | None) -> None:
    """Fill in ``result.trend`` and ``result.diagnosis`` where the profile's judgement left them None."""
    if result.error is not None or (result.trend is not None and result.diagnosis is not None):
        return

    rows = [row for row in data.rss_samples() if row["time_s"] >= data.ready_time_s]
    if result.trend is None:
        settings = data.manifest.get("settings", {})
        if criteria_path is None and settings.get("criteria_path"):
            criteria_path = Path(settings["criteria_path"])
        criteria = load_criteria(criteria_path, result.profile)
        result.trend = memory_trend(
            [row["time_s"] for row in rows], [row["rss_bytes"] for row in rows], {}, data.samples, data.manifest, criteria
        )
    if result.diagnosis is None:
        model = (data.manifest.get("models") or {}).get(result.model) or {}
        result.diagnosis = diagnose(
            data.folder.path,
            rows,
            model_bytes=model.get("instance_bytes"),
            window="From the gateway's readiness to the end of the run",
            # No growth verdict covers this window, so whatever gauge grew is named.
            leak_verdict=None,
            manifest_diagnosis=data.manifest.get("diagnosis"),
        )
