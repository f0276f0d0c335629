"""Memory guard: cgroup limit parsing, eviction before refusal, and a real gateway over its limit."""

from __future__ import annotations

import httpx
import pytest

from gateway.memory_guard import MemoryGuard, MemoryLimitError, cgroup_memory_limit_bytes
from gateway.model_cache import ModelCache
from tests.gateway.test_model_cache import RecordingLoader, use
from tests.gateway.test_service import wait_until


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [("max\n", None, None), ("1073741824\n", None, 1 << 30), (None, "9223372036854771712\n", None),
     (None, "536870912\n", 1 << 29), (None, None, None), ("garbage", None, None)],
)
def test_cgroup_limit_parsing(tmp_path, v2, v1, expected):
    v2_path, v1_path = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    if v2 is not None:
        v2_path.write_text(v2)
    if v1 is not None:
        v1_path.write_text(v1)

    assert cgroup_memory_limit_bytes(v2_path, v1_path) == expected


def test_guard_evicts_idle_models_then_allows_load():
    rss = {"bytes": 900}
    loader = RecordingLoader()
    cache = ModelCache(loader, max_models=3)
    use(cache, "a")
    use(cache, "b")
    guard = MemoryGuard(800, lambda: rss["bytes"])

    def evict_idle() -> int:
        evicted = cache.evict_idle()
        rss["bytes"] = 500
        return evicted

    guard.check_before_load("c", evict_idle)

    assert cache.stats()["models_cached"] == 0
    assert guard.refused_loads_total == 0


def test_guard_refuses_load_when_still_over():
    guard = MemoryGuard(800, lambda: 900)

    with pytest.raises(MemoryLimitError, match="above the memory limit") as caught:
        guard.check_before_load("c", lambda: 0)

    assert caught.value.http_status == 503
    assert guard.refused_loads_total == 1
    assert "above the memory limit" in guard.reason()


def test_guard_without_limit_never_refuses():
    guard = MemoryGuard(None, lambda: 10**12)

    guard.check_before_load("c", lambda: 0)

    assert guard.reason() is None
    assert guard.source == "none"


def test_gateway_over_limit_refuses_loads(start_gateway):
    server = start_gateway("--memory-limit-bytes", str(16 * 2**20), ready=False)
    wait_until(lambda: _status_or_none(server) is not None, message="status served")
    wait_until(lambda: _status_or_none(server)["status"] == "DEGRADED", message="DEGRADED status")

    status = server.status()
    response = server.transcribe(audio_url="speech.wav", model="paraformer-tiny-copy1")
    ready = httpx.get(server.url + "/readyz", timeout=10)

    assert any("memory limit" in reason for reason in status["reasons"])
    assert status["memory_limit_bytes"] == 16 * 2**20
    assert status["models_cached"] == 0
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "memory_limit"
    assert ready.status_code == 503


def _status_or_none(server):
    try:
        return server.status(timeout_s=2)
    except (httpx.HTTPError, AssertionError):
        return None
