"""The load generator: Locust's command line and environment for a run, and its own CPU and memory.

Locust always runs in its own process (``python -m locust``), never in the
runner's: importing Locust (which monkey-patches the standard library with
gevent) where torch and funasr are imported fails with a RecursionError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from soak.plans import LocustPlan
from soak.rundir import EVENTS, REQUESTS, RunFolder
from soak.settings import REPO_ROOT, RunSettings

PROFILES_DIR = REPO_ROOT / "profiles"
USAGE_LOG = "usage.jsonl"
# Locust's usage monitor warns above 90 % of one core. From there on its own
# timings (latency, the pacing of a soak) are no longer trustworthy.
CPU_SATURATED_PERCENT = 90.0
CPU_WARNING_TEXT = "CPU usage above"


def profile_path(profile: str) -> Path:
    return PROFILES_DIR / f"{profile}.py"


def locust_command(settings: RunSettings, plan: LocustPlan, url: str, folder: RunFolder) -> list[str]:
    locust_dir = folder.locust_dir
    command = [*settings.locust_command, "-f", str(profile_path(settings.profile)), "--headless", "--host", url]
    if plan.users is not None:
        command += ["-u", str(plan.users), "-r", str(plan.users)]
    command += [
        "--run-time", f"{int(settings.timeout_s)}s",
        "--csv", str(locust_dir / "stats"),
        "--html", str(locust_dir / "report.html"),
        "--only-summary",
        *settings.locust_args,
    ]
    return command


def locust_env(plan: LocustPlan, folder: RunFolder, base_env: dict[str, str] | None = None) -> dict[str, str]:
    """Return Locust's environment: the repository on ``PYTHONPATH``, the run folder's logs and the profile's settings."""
    base = dict(os.environ if base_env is None else base_env)
    return {
        **base,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), base.get("PYTHONPATH")])),
        "SOAK_REQUESTS_LOG": str(folder.file(REQUESTS)),
        "SOAK_EVENTS_LOG": str(folder.file(EVENTS)),
        "SOAK_LOCUST_USAGE_LOG": str(folder.locust_dir / USAGE_LOG),
        **plan.env,
    }


def usage_summary(folder: RunFolder, log_text: str) -> dict[str, Any]:
    """Summarise Locust's own CPU and memory per Locust process, and whether the load generator was saturated."""
    rows = folder.read_jsonl(f"{folder.locust_dir.name}/{USAGE_LOG}")
    processes: dict[str, dict[str, Any]] = {}
    for row in rows:
        process = processes.setdefault(row["process"], {"readings": 0, "cpu_percent_max": 0.0, "memory_bytes_max": 0})
        process["readings"] += 1
        process["cpu_percent_max"] = max(process["cpu_percent_max"], row.get("cpu_percent") or 0.0)
        process["memory_bytes_max"] = max(process["memory_bytes_max"], row.get("memory_bytes") or 0)

    cpu_percent_max = max((process["cpu_percent_max"] for process in processes.values()), default=None)
    cpu_warning = CPU_WARNING_TEXT in log_text
    return {
        "usage_file": f"{folder.locust_dir.name}/{USAGE_LOG}",
        "processes": processes,
        "cpu_percent_max": cpu_percent_max,
        "cpu_warning": cpu_warning,
        "cpu_saturated": cpu_warning or (cpu_percent_max is not None and cpu_percent_max >= CPU_SATURATED_PERCENT),
    }
