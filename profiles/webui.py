"""A "Gateway" tab in Locust's web UI: the gateway's RSS, workers, queue and sessions, live.

Every profile imports this module, so ``locust -f profiles/<name>.py --host
URL`` shows the tab beside Locust's own charts. The tab has two parts:

- a table through Locust's documented extension points (``extended_tabs``
  and ``extended_tables`` in the page's template arguments, rows in the
  ``extended_stats`` of ``/stats/requests``): each figure now, its minimum
  and maximum, and a sparkline of the last readings. Locust's UI refreshes
  it every 2 s while a test runs.
- a chart page at ``/gateway`` (also usable on its own), which polls
  ``/gateway/readings`` every 2 s and draws RSS and the worker, queue and
  session gauges over time. A small script added to Locust's index page
  embeds it above the table while the tab is open. Locust's React UI offers
  no hook for custom tab content, so if a later Locust version changes the
  page, the table still works and the chart stays reachable at ``/gateway``.

Readings come from the gateway's ``GET /v1/status``, read by the Locust
process that serves the UI (the master in distributed mode). There is no
polling loop of its own. A reading is taken when the UI requests data and
the last reading is older than ``READING_INTERVAL_S``, so the gateway is read
only while someone watches, and at most every 2 s.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

import requests
from flask import Response, jsonify, request
from gevent.lock import Semaphore
from locust import events
from locust.env import Environment

from profiles.figures import format_figure, sparkline, status_text, with_limit

logger = logging.getLogger(__name__)

TAB_KEY = "gateway"
READING_INTERVAL_S = 2.0
STATUS_TIMEOUT_S = 1.5
# 600 readings at one per 2 s cover the last 20 minutes.
MAX_READINGS = 600
SPARKLINE_READINGS = 40
CHART_PAGE = Path(__file__).with_name("static") / "gateway.html"

# (status key, label, unit): the figures of the tab's table, in order.
FIGURES = (
    ("rss_bytes", "RSS (process tree)", "MiB"),
    ("workers_active", "workers active", ""),
    ("queue_depth", "queue depth", ""),
    ("sessions_open", "sessions open", ""),
    ("sessions_buffered_bytes", "session buffers", "MiB"),
    ("models_cached", "models cached", ""),
    ("retained_futures", "retained futures", ""),
    ("status_latency_ms", "status read latency", "ms"),
)

# Added to Locust's index page: while the Gateway tab is open, embed the chart page above the tab's table.
EMBED_SCRIPT = """
<script>
(function () {
  function onGatewayTab() { return new URLSearchParams(location.search).get("tab") === "gateway"; }
  function sync() {
    var frame = document.getElementById("soak-gateway-chart");
    if (!onGatewayTab()) { if (frame) { frame.remove(); } return; }
    if (frame) { return; }
    var table = document.querySelector("table");
    if (!table) { return; }
    var container = table.closest(".MuiTableContainer-root") || table;
    frame = document.createElement("iframe");
    frame.id = "soak-gateway-chart";
    frame.src = "./gateway?embed=1";
    frame.title = "Gateway figures over time";
    frame.style.cssText = "width:100%;height:430px;border:0;display:block;margin-bottom:8px";
    container.parentNode.insertBefore(frame, container);
  }
  setInterval(sync, 500);
})();
</script>
"""


class GatewayReadings:
    """Readings of one gateway's ``GET /v1/status``, newest last, taken at most every ``READING_INTERVAL_S``."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.readings: deque[dict[str, Any]] = deque(maxlen=MAX_READINGS)
        self._lock = Semaphore()
        self._session = requests.Session()
        self._session.trust_env = False

    def refresh(self) -> None:
        """Read the status once more unless the last reading is recent or another read is under way."""
        if self.readings and time.time() - self.readings[-1]["time_s"] < READING_INTERVAL_S:
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            self.readings.append(self._read())
        finally:
            self._lock.release()

    def _read(self) -> dict[str, Any]:
        host = (self.environment.host or "").rstrip("/")
        reading: dict[str, Any] = {"time_s": round(time.time(), 3), "error": None}
        if not host:
            reading["error"] = "no host: start the test with a host such as http://127.0.0.1:8080"
            return reading

        started = time.perf_counter()
        try:
            response = self._session.get(f"{host}/v1/status", timeout=STATUS_TIMEOUT_S)
            response.raise_for_status()
            status = response.json()
        except requests.Timeout:
            reading["error"] = f"GET /v1/status timed out after {STATUS_TIMEOUT_S} s"
        except (requests.RequestException, ValueError) as exc:
            reading["error"] = f"GET /v1/status failed: {type(exc).__name__}"
        else:
            reading.update({key: status.get(key) for key, _, _ in FIGURES if key in status})
            reading.update(
                {
                    "status": status.get("status"),
                    "workers_max": status.get("workers_max"),
                    "queue_limit": status.get("queue_limit"),
                    "leaks": status.get("leaks"),
                }
            )
        reading["status_latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return reading

    def table_rows(self) -> list[dict[str, Any]]:
        """Return one row per figure: now, minimum, maximum and a sparkline of the last readings."""
        latest = self.readings[-1] if self.readings else {}
        rows = [
            {"name": "status", "figure": "gateway status", "now": status_text(latest), "low": "", "high": "", "trend": ""}
        ]
        for key, label, unit in FIGURES:
            values = [reading.get(key) for reading in self.readings if reading.get(key) is not None]
            recent = values[-SPARKLINE_READINGS:]
            now = latest.get(key)
            rows.append(
                {
                    "name": key,
                    "figure": label,
                    "now": with_limit(format_figure(now, unit), latest, key),
                    "low": format_figure(min(recent), unit) if recent else "",
                    "high": format_figure(max(recent), unit) if recent else "",
                    "trend": sparkline(recent),
                }
            )
        return rows


def install(environment: Environment) -> GatewayReadings | None:
    """Add the Gateway tab and its routes to the web UI; do nothing in processes without one."""
    web_ui = environment.web_ui
    if web_ui is None:
        return None
    readings = GatewayReadings(environment)
    app = web_ui.app
    base_path = (getattr(environment.parsed_options, "web_base_path", "") or "").rstrip("/")

    web_ui.template_args["extended_tabs"] = [
        *[tab for tab in web_ui.template_args.get("extended_tabs", []) if tab.get("key") != TAB_KEY],
        {"title": "Gateway", "key": TAB_KEY},
    ]
    web_ui.template_args["extended_tables"] = [
        *[table for table in web_ui.template_args.get("extended_tables", []) if table.get("key") != TAB_KEY],
        {
            "key": TAB_KEY,
            "structure": [
                {"key": "figure", "title": "Figure"},
                {"key": "now", "title": "Now"},
                {"key": "low", "title": "Min (last 40)"},
                {"key": "high", "title": "Max (last 40)"},
                {"key": "trend", "title": "Last 40 readings"},
            ],
        },
    ]

    @app.after_request
    def add_gateway_figures(response: Response) -> Response:
        path = request.path
        if path.endswith("/stats/requests") and response.is_json:
            readings.refresh()
            payload = response.get_json()
            others = [entry for entry in payload.get("extended_stats", []) if entry.get("key") != TAB_KEY]
            payload["extended_stats"] = [*others, {"key": TAB_KEY, "data": readings.table_rows()}]
            response.set_data(jsonify(payload).get_data())
        elif path.rstrip("/") == base_path and response.mimetype == "text/html":
            page = response.get_data(as_text=True)
            if "soak-gateway-chart" not in page:
                response.set_data(page.replace("</body>", EMBED_SCRIPT + "</body>", 1))
        return response

    @app.route(f"{base_path}/gateway")
    def gateway_chart_page() -> Response:
        return Response(CHART_PAGE.read_text(encoding="utf-8"), mimetype="text/html")

    @app.route(f"{base_path}/gateway/readings")
    def gateway_readings() -> Response:
        readings.refresh()
        return jsonify({"host": environment.host, "readings": list(readings.readings)})

    return readings


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    install(environment)
