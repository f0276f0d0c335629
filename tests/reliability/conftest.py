"""Shared pieces of the reliability tests: the at-rest check, hostile audio builders, result records.

``assert_at_rest`` is run after every fault and load case. It waits until no
task runs or waits, then checks workers, queue, sessions, downloads, cached
models and RSS against the post-warm-up level. With ``RELIABILITY_RESULTS``
set to a file, every check appends one JSON line with the case and its
figures; docs/reliability.md is written from such a file.
"""

from __future__ import annotations

import io
import json
import os
import time
import wave

import numpy as np
import pytest
import soundfile

from tests.conftest import DATA
from tests.servers import GatewayServer

WAIT_S = 60.0
MIB = 1024 * 1024
# RSS may grow this much over the post-warm-up level before a case fails:
# allocator arenas of the worker and connection threads settle at their
# high-water mark, which is not a leak. A leak of the kinds this project
# reproduces grows by far more (a model instance, or decoded audio per request).
RSS_MARGIN_BYTES = 160 * MIB
RESULTS_ENV = "RELIABILITY_RESULTS"

SPEECH_WAV = (DATA / "speech.wav").read_bytes()


def wait_until(predicate, timeout_s: float = WAIT_S, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{message} not reached within {timeout_s} s")


def rss_baseline(server: GatewayServer) -> int:
    """Return the RSS after one warm-up transcription: the level every case is compared with."""
    response = server.transcribe(audio_url="speech.wav")
    assert response.status_code == 200, response.text
    return server.status()["rss_bytes"]


def record(case: str, status: dict, baseline_rss: int | None, **extra) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    row = {
        "case": case,
        "workers_active": status["workers_active"],
        "workers_stuck": status["workers_stuck"],
        "queue_depth": status["queue_depth"],
        "sessions_open": status["sessions_open"],
        "sessions_buffered_bytes": status["sessions_buffered_bytes"],
        "downloads_active": status.get("downloads_active"),
        "models_cached": status["models_cached"],
        "models_cache_limit": status["models_cache_limit"],
        "rss_mib": round(status["rss_bytes"] / MIB, 1),
        "rss_growth_mib": None if baseline_rss is None else round((status["rss_bytes"] - baseline_rss) / MIB, 1),
        "status": status["status"],
        **extra,
    }
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def assert_at_rest(server: GatewayServer, baseline_rss: int | None, case: str, **extra) -> dict:
    """Wait for the pool to go idle, then check that nothing is left behind; return the status."""

    def idle() -> bool:
        status = server.status()
        return status["workers_active"] == 0 and status["queue_depth"] == 0 and status.get("downloads_active", 0) == 0

    wait_until(idle, message=f"{case}: workers, queue and downloads idle")
    status = server.status()
    record(case, status, baseline_rss, **extra)

    assert status["workers_active"] == 0, status
    assert status["workers_stuck"] == 0, status
    assert status["queue_depth"] == 0, status
    assert status["sessions_open"] == 0, status
    assert status["sessions_buffered_bytes"] == 0, status
    assert status["downloads_active"] == 0, status
    assert status["downloads_buffered_bytes"] == 0, status
    assert status["models_cached"] <= status["models_cache_limit"], status
    if baseline_rss is not None:
        growth = status["rss_bytes"] - baseline_rss
        assert growth <= RSS_MARGIN_BYTES, f"{case}: RSS grew {growth / MIB:.0f} MiB over the post-warm-up level"
    return status


def pcm16_wav(samples: np.ndarray, rate: int = 16000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.astype(np.float32), rate, subtype="FLOAT", format="WAV")
    return buffer.getvalue()


def wav_with_rate(rate: int, frames: int = 16000) -> bytes:
    """A PCM16 WAV whose header states ``rate``, which ``wave`` refuses to write for extreme values."""
    data = pcm16_wav(np.zeros(frames), 16000)
    header = bytearray(data[:44])
    header[24:28] = rate.to_bytes(4, "little")
    header[28:32] = (rate * 2).to_bytes(4, "little", signed=False) if rate * 2 < 2**32 else (2**32 - 1).to_bytes(4, "little")
    return bytes(header) + data[44:]


def wav_header_claiming(frames: int, rate: int = 16000) -> bytes:
    """A PCM16 WAV header whose data chunk claims ``frames`` frames, followed by one second of samples."""
    data = pcm16_wav(np.zeros(rate), rate)
    header = bytearray(data[:44])
    data_bytes = min(frames * 2, 2**32 - 64)
    header[4:8] = (data_bytes + 36).to_bytes(4, "little")
    header[40:44] = data_bytes.to_bytes(4, "little")
    return bytes(header) + data[44:]


@pytest.fixture(scope="module")
def module_gateway(models_dir, tmp_path_factory):
    """Start gateways shared by one module's tests; each is stopped after the module."""
    servers: list[GatewayServer] = []
    logs = tmp_path_factory.mktemp("gateway-logs")

    def start(*extra: str, media_root=DATA, env: dict[str, str] | None = None) -> GatewayServer:
        server = GatewayServer(
            models_dir=models_dir,
            media_root=media_root,
            log_path=logs / f"gateway-{len(servers)}.log",
            extra_args=list(extra),
            env=env or {},
        )
        servers.append(server)
        server.start()
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
