"""Read a run folder's raw data back and line samples up with requests.

Everything here works on saved data only, so ``soak report`` can judge a run
again without a gateway.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soak.results import LatencySummary
from soak.rundir import EVENTS, MANIFEST, REQUESTS, SAMPLES, RunFolder

# Status figures drawn over time, in the order the report shows them.
STATUS_GAUGES = (
    "models_cached",
    "retained_futures",
    "workers_active",
    "queue_depth",
    "sessions_open",
    "sessions_buffered_bytes",
)
PROCESS_GAUGES = ("threads", "open_files")


@dataclass(frozen=True)
class RunData:
    """A run folder's manifest, samples and requests, as saved."""

    folder: RunFolder
    manifest: dict[str, Any]
    samples: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    # Every requests.jsonl row, the profile's own status reads and unindexed requests included, by start time.
    all_requests: list[dict[str, Any]] = field(default_factory=list)
    # The profile's events.jsonl: its phases and its own status readings, by time.
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, folder: RunFolder) -> RunData:
        samples = sorted(folder.read_jsonl(SAMPLES), key=lambda row: row["time_s"])
        all_requests = sorted(folder.read_jsonl(REQUESTS), key=lambda row: row["time_s"])
        # Requests without an index were not sent by the profile's planned
        # requests (a status read of the profile, or a user class added through
        # Locust's arguments), so the per-request criteria leave them out.
        requests = sorted((row for row in all_requests if row.get("index") is not None), key=lambda row: row["index"])
        events = sorted(folder.read_jsonl(EVENTS), key=lambda row: row["time_s"])
        return cls(
            folder=folder,
            manifest=folder.read_json(MANIFEST),
            samples=samples,
            requests=requests,
            all_requests=all_requests,
            events=events,
        )

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [row for row in self.events if row.get("event") == name]

    @property
    def ready_time_s(self) -> float:
        """Wall time when the gateway became ready: time zero of every plot."""
        ready = self.manifest.get("times", {}).get("ready_s")
        if ready is not None:
            return float(ready)
        if self.samples:
            return float(self.samples[0]["time_s"])
        return 0.0

    def rss_samples(self) -> list[dict[str, Any]]:
        return [row for row in self.samples if row.get("rss_bytes") is not None]


@dataclass(frozen=True)
class RequestRss:
    """The RSS of the first sample taken after a request completed."""

    index: int
    end_time_s: float
    rss_bytes: int
    sample: dict[str, Any]
    lag_s: float
    # True when the next request had already started at the sample, so the
    # value may include that request's allocations.
    late: bool


def rss_after_requests(requests: list[dict[str, Any]], samples: list[dict[str, Any]]) -> list[RequestRss]:
    """Pair each completed request with the first RSS sample at or after its end.

    Requests without a later sample (the gateway died, the sampler stopped)
    get no point.
    """
    rss_samples = [row for row in samples if row.get("rss_bytes") is not None]
    sample_times = [row["time_s"] for row in rss_samples]
    start_times = sorted(row["time_s"] for row in requests)

    points = []
    for request in sorted(requests, key=lambda row: row["index"]):
        end_time_s = request["end_time_s"]
        position = bisect.bisect_left(sample_times, end_time_s)
        if position == len(rss_samples):
            continue
        sample = rss_samples[position]

        # The sample's reads end after its time_s; a request started before they ended may be in its figures.
        next_start = bisect.bisect_right(start_times, request["time_s"])
        late = next_start < len(start_times) and start_times[next_start] < sample.get("end_time_s", sample["time_s"])
        points.append(
            RequestRss(
                index=request["index"],
                end_time_s=end_time_s,
                rss_bytes=sample["rss_bytes"],
                sample=sample,
                lag_s=round(sample["time_s"] - end_time_s, 4),
                late=late,
            )
        )
    return points


def nearest_status(samples: list[dict[str, Any]], time_s: float) -> dict[str, Any] | None:
    """Return the status reading closest in time to ``time_s``, or ``None`` when no read succeeded."""
    readings = [row for row in samples if row.get("status")]
    if not readings:
        return None
    closest = min(readings, key=lambda row: abs(row["time_s"] - time_s))
    return closest["status"]


def gauge_series(samples: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Return each status gauge and process count per sample, ``None`` where it was not read."""
    series: dict[str, list[float | None]] = {name: [] for name in (*STATUS_GAUGES, *PROCESS_GAUGES)}
    for row in samples:
        status = row.get("status") or {}
        for name in STATUS_GAUGES:
            series[name].append(status.get(name))
        for name in PROCESS_GAUGES:
            series[name].append(row.get(name))
    return series


def summarize_latency(requests: list[dict[str, Any]]) -> LatencySummary | None:
    """Return latency percentiles over requests that got an HTTP response, or ``None`` without any."""
    latencies = [row["latency_ms"] for row in requests if row.get("status", 0) > 0]
    if not latencies:
        return None
    values = np.asarray(latencies, dtype=float)
    p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99])
    return LatencySummary(
        count=len(latencies),
        mean_ms=round(float(values.mean()), 1),
        p50_ms=round(float(p50), 1),
        p90_ms=round(float(p90), 1),
        p95_ms=round(float(p95), 1),
        p99_ms=round(float(p99), 1),
        max_ms=round(float(values.max()), 1),
    )
