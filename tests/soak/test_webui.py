"""The Gateway tab in Locust's web UI, served by a real Locust process against the stand-in gateway."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from profiles.figures import sparkline
from soak.processes import free_port
from tests.soak.conftest import REPO, locust_env, stop_group

UI_READY_TIMEOUT_S = 30.0


@pytest.fixture
def locust_ui(fake_gateway, tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "profiles/workers.py", "--host", fake_gateway.url,
         "--web-host", "127.0.0.1", "--web-port", str(port)],
        cwd=REPO, env=locust_env(tmp_path), stdout=(tmp_path / "locust.log").open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + UI_READY_TIMEOUT_S
        while True:
            assert process.poll() is None, (tmp_path / "locust.log").read_text()[-2000:]
            try:
                httpx.get(url, timeout=1.0)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"Locust's web UI did not answer within {UI_READY_TIMEOUT_S} s"
                time.sleep(0.2)
        yield url
    finally:
        stop_group(process)


def test_index_declares_gateway_tab(locust_ui):
    page = httpx.get(locust_ui, timeout=10).text

    assert '"extended_tabs": [{"key": "gateway", "title": "Gateway"}]' in page
    assert '"key": "figure"' in page
    assert "soak-gateway-chart" in page, "the script that embeds the chart"


def test_stats_carry_gateway_rows(locust_ui, fake_gateway):
    payload = httpx.get(f"{locust_ui}/stats/requests", timeout=10).json()

    tables = {entry["key"]: entry["data"] for entry in payload["extended_stats"]}
    rows = {row["name"]: row for row in tables["gateway"]}
    assert rows["status"]["now"] == "OK, leaks: none"
    assert rows["rss_bytes"]["now"].endswith(" MiB")
    assert rows["workers_active"]["now"] == "0"
    assert rows["sessions_open"]["trend"] == "▁"


def test_readings_and_chart_page(locust_ui, fake_gateway):
    first = httpx.get(f"{locust_ui}/gateway/readings", timeout=10).json()
    chart = httpx.get(f"{locust_ui}/gateway", timeout=10)

    assert first["host"] == fake_gateway.url
    assert first["readings"][-1]["rss_bytes"] > 0
    assert first["readings"][-1]["error"] is None
    assert chart.headers["content-type"].startswith("text/html")
    assert "./gateway/readings" in chart.text


def test_sparkline_scales_to_range():
    assert sparkline([]) == ""
    assert sparkline([5, 5]) == "▁▁"
    assert sparkline([0, 50, 100]) == "▁▅█"
