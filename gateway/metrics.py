"""Prometheus metrics: the status figures as gauges and counters, plus request latency.

Each :class:`Gateway` has its own registry, so tests can run several apps in
one process. Figures are read from ``Gateway.status()`` at scrape time, so
with several processes they describe the process that served the scrape. The
latency histogram uses prometheus-client's multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set, and then sums every process.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from gateway.service import Gateway

PREFIX = "asr_gateway_"
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# status key -> (metric name, help text)
GAUGES = {
    "workers_active": ("workers_active", "Inference worker threads running a task."),
    "workers_max": ("workers_max", "Inference worker threads configured."),
    "workers_stuck": ("workers_stuck", "Tasks running for several task timeouts."),
    "queue_depth": ("queue_depth", "Admitted tasks waiting for a worker."),
    "queue_limit": ("queue_limit", "Tasks that may wait before new requests get 503."),
    "rss_bytes": ("process_tree_rss_bytes", "Resident set size of the gateway's process tree."),
    "models_cached": ("models_cached", "Model instances held by the cache."),
    "retained_futures": ("retained_futures", "Futures kept after their task ended (0 when fixed)."),
    "sessions_open": ("sessions_open", "Open streaming sessions."),
    "sessions_buffered_bytes": ("sessions_buffered_bytes", "Audio bytes buffered by open sessions."),
    "downloads_active": ("downloads_active", "Downloads of audio_url in progress."),
    "downloads_buffered_bytes": ("downloads_buffered_bytes", "Bytes received so far by downloads in progress."),
    "uptime_s": ("uptime_seconds", "Seconds since the gateway started."),
}
COUNTERS = {
    "requests_completed_total": ("tasks_completed", "Inference tasks that returned a result."),
    "requests_failed_total": ("tasks_failed", "Inference tasks that raised an error."),
    "requests_rejected_total": ("requests_rejected", "Requests rejected with 503 because the queue was full."),
    "requests_timed_out_total": ("requests_timed_out", "Requests answered with 504 after the task timeout."),
    "model_loads_total": ("model_loads", "Model instances loaded."),
    "model_evictions_total": ("model_evictions", "Model instances evicted from the cache."),
}


class _StatusCollector:
    def __init__(self, gateway: "Gateway"):
        self._gateway = gateway

    def collect(self):
        figures = self._gateway.status()
        for key, (name, help_text) in GAUGES.items():
            value = figures.get(key)
            if value is not None:
                yield GaugeMetricFamily(PREFIX + name, help_text, value=float(value))
        limit = figures.get("models_cache_limit")
        if limit is not None:
            yield GaugeMetricFamily(PREFIX + "models_cache_limit", "Bound of the model cache.", value=float(limit))
        for key, (name, help_text) in COUNTERS.items():
            yield CounterMetricFamily(PREFIX + name, help_text, value=float(figures.get(key, 0)))
        degraded = GaugeMetricFamily(PREFIX + "degraded", "1 while the status is DEGRADED.", value=float(figures["status"] == "DEGRADED"))
        yield degraded
        leaks = GaugeMetricFamily(PREFIX + "leak_switch", "1 for each leak switched back on.", labels=["leak"])
        for leak in figures.get("leaks", []):
            leaks.add_metric([leak], 1.0)
        yield leaks


class Metrics:
    def __init__(self, gateway: "Gateway"):
        self.registry = CollectorRegistry()
        self.registry.register(_StatusCollector(gateway))
        multiprocess_mode = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.latency = Histogram(
            PREFIX + "request_duration_seconds",
            "HTTP request latency by route and status code.",
            labelnames=("method", "route", "status"),
            buckets=LATENCY_BUCKETS_S,
            # In multiprocess mode values go to files that the collector below sums.
            registry=None if multiprocess_mode else self.registry,
        )
        if multiprocess_mode:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)


def render(gateway: "Gateway") -> tuple[bytes, str]:
    return generate_latest(gateway.metrics.registry), CONTENT_TYPE_LATEST
