"""Several gateway processes on one port (``--processes N``).

The parent binds the listening socket once and starts N child processes
(multiprocessing's spawn start method) that each serve it with their own
model cache, worker pool and session store. The parent forwards SIGTERM and
SIGINT to every child, so each one drains as a single process does, and
stops waiting for a child after a bounded time.

Consequences for clients: the HTTP session endpoints cannot follow a session
from one process to another, so they return 409 and point to the WebSocket
stream (one connection stays on one process). ``/v1/status`` reports the
process that served it; the soak sampler sums the process tree.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

from gateway.settings import Settings

logger = logging.getLogger(__name__)

CHILD_STOP_TIMEOUT_S = 120.0
PROMETHEUS_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def settings_to_json(settings: Settings) -> str:
    values = dataclasses.asdict(settings)
    values["models_dir"] = str(settings.models_dir)
    values["media_roots"] = [str(root) for root in settings.media_roots]
    values["leaks"] = list(settings.leaks)
    return json.dumps(values)


def settings_from_json(text: str) -> Settings:
    values = json.loads(text)
    values["models_dir"] = Path(values["models_dir"])
    values["media_roots"] = tuple(Path(root) for root in values["media_roots"])
    values["leaks"] = tuple(values["leaks"])
    values["url_allowlist"] = tuple(values["url_allowlist"])
    return Settings(**values)


def _child_main(settings_json: str, listener: socket.socket, log_level: str) -> None:
    from gateway.cli import configure_logging
    from gateway.server import run_server

    configure_logging(log_level)
    raise SystemExit(run_server(settings_from_json(settings_json), sockets=[listener]))


def run_processes(settings: Settings) -> int:
    """Start ``settings.processes`` children on one socket and wait for them."""
    from gateway.server import bind_listener

    listener = bind_listener(settings.host, settings.port)
    listener.set_inheritable(True)

    metrics_dir = None
    if PROMETHEUS_MULTIPROC_ENV not in os.environ:
        metrics_dir = tempfile.TemporaryDirectory(prefix="gateway-metrics-")
        os.environ[PROMETHEUS_MULTIPROC_ENV] = metrics_dir.name

    context = multiprocessing.get_context("spawn")
    payload = settings_to_json(settings)
    children = [
        context.Process(target=_child_main, args=(payload, listener, settings.log_level), name=f"gateway-{index}")
        for index in range(settings.processes)
    ]
    for child in children:
        child.start()
    logger.info(
        "Started %d gateway processes on %s:%d: %s",
        len(children), settings.host, settings.port, ", ".join(str(c.pid) for c in children),
    )

    received: list[int] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        logger.info("Received %s; forwarding it to %d processes", signal.Signals(signum).name, len(children))
        for child in children:
            if child.is_alive():
                os.kill(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(child.is_alive() for child in children) and not received:
            time.sleep(0.2)
            for child in children:
                if child.exitcode is not None and not received:
                    logger.error("Gateway process %d exited with %s; stopping the others", child.pid, child.exitcode)
                    forward(signal.SIGTERM, None)
                    break
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
        for child in children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                logger.warning("Gateway process %d did not stop within %.0f s; killing it", child.pid, CHILD_STOP_TIMEOUT_S)
                child.kill()
                child.join(10)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()
        if metrics_dir is not None:
            metrics_dir.cleanup()
    codes = [child.exitcode for child in children]
    logger.info("All gateway processes stopped: exit codes %s", codes)
    return 0 if all(code == 0 for code in codes) else 1
