"""The profiles unchanged in Locust's distributed mode: a Locust master and two Locust workers on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from soak.processes import free_port
from tests.soak.conftest import REPO, locust_env, stop_group

RUN_TIMEOUT_S = 120
WORKER_EXIT_TIMEOUT_S = 30
REQUESTS = 24


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def start_locust(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "locust", *args], cwd=REPO, env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def test_memory_profile_master_and_two_workers(fake_gateway, tmp_path):
    master_port = free_port()
    env = locust_env(tmp_path, SOAK_REQUESTS=str(REQUESTS), SOAK_PAUSE_S="0.05",
                     SOAK_MODELS="paraformer-50mb,paraformer-50mb-copy1,paraformer-50mb-copy2")
    master = start_locust(
        ["-f", "profiles/memory.py", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
         "--headless", "--expect-workers", "2", "-u", "4", "-r", "4", "--run-time", "90s", "--host", fake_gateway.url,
         "--only-summary"],
        env, tmp_path / "master.log",
    )
    workers = [
        start_locust(["-f", "profiles/memory.py", "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)],
                     env, tmp_path / f"worker-{number}.log")
        for number in range(2)
    ]
    try:
        master_status = master.wait(timeout=RUN_TIMEOUT_S)
        worker_statuses = [worker.wait(timeout=WORKER_EXIT_TIMEOUT_S) for worker in workers]
    finally:
        for process in (master, *workers):
            stop_group(process)

    master_log = (tmp_path / "master.log").read_text(encoding="utf-8")
    assert master_status == 0, master_log[-3000:]
    assert worker_statuses == [0, 0], [(tmp_path / f"worker-{n}.log").read_text()[-2000:] for n in range(2)]
    rows = read_rows(tmp_path / "requests.jsonl")
    assert sorted(row["index"] for row in rows) == list(range(REQUESTS)), "each planned index exactly once, over both Locust workers"
    assert {row["process"] for row in rows} == {"worker 0", "worker 1"}
    assert all(row["ok"] for row in rows)
    assert "All 24 planned memory requests finished" in master_log


@pytest.mark.soak
def test_memory_profile_with_processes_option(fake_gateway, tmp_path):
    env = locust_env(tmp_path, SOAK_REQUESTS=str(REQUESTS), SOAK_PAUSE_S="0.05")
    locust = start_locust(
        ["-f", "profiles/memory.py", "--processes", "2", "--headless", "-u", "4", "-r", "4", "--run-time", "90s",
         "--host", fake_gateway.url, "--only-summary"],
        env, tmp_path / "locust.log",
    )
    try:
        status = locust.wait(timeout=RUN_TIMEOUT_S)
    finally:
        stop_group(locust)

    assert status == 0, (tmp_path / "locust.log").read_text(encoding="utf-8")[-3000:]
    rows = read_rows(tmp_path / "requests.jsonl")
    assert sorted(row["index"] for row in rows) == list(range(REQUESTS))
    assert len({row["process"] for row in rows}) == 2
