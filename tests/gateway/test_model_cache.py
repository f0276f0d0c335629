"""Unit tests of the fixed model cache with a fake loader.

The loader is a collaborator here; the integration tests load real FunASR
models through the same cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from gateway.asr import ModelIdentity, RequestOptions
from gateway.leaky.model_cache import LeakyModelCache, _MODELS
from gateway.model_cache import ModelCache

JOIN_TIMEOUT_S = 10.0


class FakeModel:
    def __init__(self, identity: ModelIdentity):
        self.identity = identity
        self.automodel = object()


class RecordingLoader:
    def __init__(self):
        self.loaded: list[str] = []
        self.lock = threading.Lock()
        self.fail_names: set[str] = set()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def __call__(self, identity: ModelIdentity) -> FakeModel:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(JOIN_TIMEOUT_S), "test never opened the loader gate"
        if identity.name in self.fail_names:
            raise RuntimeError(f"corrupt weights for {identity.name}")
        with self.lock:
            self.loaded.append(identity.name)
        return FakeModel(identity)


def identity(name: str) -> ModelIdentity:
    return ModelIdentity(name=name, path=f"/models/{name}", revision="r1", vad_path="/models/fsmn-vad")


def use(cache: ModelCache, name: str, options: RequestOptions | None = None) -> None:
    with cache.lease(identity(name), options):
        pass


def test_cache_evicts_least_recently_used():
    loader = RecordingLoader()
    cache = ModelCache(loader, max_models=2)

    use(cache, "a")
    use(cache, "b")
    use(cache, "a")
    use(cache, "c")

    assert cache.identities() == ["a", "c"]
    assert cache.stats()["model_evictions_total"] == 1


def test_cache_hit_never_evicts():
    loader = RecordingLoader()
    cache = ModelCache(loader, max_models=2)
    use(cache, "a")
    use(cache, "b")

    for _ in range(5):
        use(cache, "b")
        use(cache, "a")

    assert loader.loaded == ["a", "b"]
    assert cache.stats()["model_evictions_total"] == 0


def test_cache_key_ignores_request_options():
    loader = RecordingLoader()
    cache = ModelCache(loader, max_models=3)

    for index in range(10):
        use(cache, "a", RequestOptions(language=f"l{index}", hotwords=(f"w{index}",)))

    assert loader.loaded == ["a"]
    assert cache.stats()["models_cached"] == 1


def test_leased_model_is_not_unloaded():
    loader = RecordingLoader()
    cache = ModelCache(loader, max_models=1)

    with cache.lease(identity("a")) as held_a:
        with cache.lease(identity("b")) as held_b:
            assert cache.stats()["models_cached"] == 2
        use(cache, "c")
        assert held_a.automodel is not None

    assert held_b.automodel is None
    assert held_a.automodel is not None
    assert cache.identities() == ["a"]


def test_evicted_leased_model_unloads_when_lease_ends():
    loader = RecordingLoader()
    cache = ModelCache(loader, max_models=1)

    with cache.lease(identity("a")) as held_a:
        cache.close()
        assert held_a.automodel is not None

    assert held_a.automodel is None


def test_concurrent_first_requests_load_once():
    loader = RecordingLoader()
    loader.gate = threading.Event()
    cache = ModelCache(loader, max_models=3)
    threads = [threading.Thread(target=use, args=(cache, "a")) for _ in range(8)]

    for thread in threads:
        thread.start()
    assert loader.entered.wait(JOIN_TIMEOUT_S), "no thread reached the loader"
    loader.gate.set()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive(), "a lease never returned"

    assert loader.loaded == ["a"]


def test_failed_load_is_not_cached():
    loader = RecordingLoader()
    loader.fail_names = {"a"}
    cache = ModelCache(loader, max_models=2)

    with pytest.raises(RuntimeError, match="corrupt weights"):
        use(cache, "a")
    assert cache.stats()["models_cached"] == 0

    loader.fail_names.clear()
    use(cache, "a")
    assert loader.loaded == ["a"]


def test_waiters_get_the_failed_load_error():
    loader = RecordingLoader()
    loader.fail_names = {"a"}
    loader.gate = threading.Event()
    cache = ModelCache(loader, max_models=2)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            use(cache, "a")
        except RuntimeError as error:
            errors.append(error)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert loader.entered.wait(JOIN_TIMEOUT_S)
    loader.gate.set()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)

    assert len(errors) == 4
    assert loader.loaded == []
    assert cache.stats()["models_cached"] == 0


def test_close_is_idempotent():
    loader = RecordingLoader()
    cache = ModelCache(loader, max_models=2)
    use(cache, "a")

    assert cache.close() == 1
    assert cache.close() == 0
    assert cache.stats()["models_cached"] == 0


def test_cache_rejects_zero_bound():
    with pytest.raises(ValueError, match="at least 1, got 0"):
        ModelCache(RecordingLoader(), max_models=0)


def test_leaky_cache_grows_per_option_combination():
    _MODELS.clear()
    loader = RecordingLoader()
    cache = LeakyModelCache(loader)
    try:
        for index in range(5):
            with cache.lease(identity("a"), RequestOptions(hotwords=(f"w{index}",))):
                pass

        assert cache.stats()["models_cached"] == 5
        assert loader.loaded == ["a"] * 5
    finally:
        _MODELS.clear()


FREEZE_PROBE = """
import gc, json
from gateway.model_cache import freeze_startup_objects
tracked_before = len(gc.get_objects())
frozen = freeze_startup_objects()
tracked_after = len(gc.get_objects())
class Node:
    pass
node = Node()
node.self = node
del node
print(json.dumps({"tracked_before": tracked_before, "frozen": frozen, "tracked_after": tracked_after, "collected": gc.collect()}))
"""


def test_freeze_startup_objects_keeps_new_cycles_collectable():
    """GIVEN a fresh process WHEN start-up objects are frozen THEN collections skip them and still free new cycles."""
    completed = subprocess.run([sys.executable, "-c", FREEZE_PROBE], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])

    assert figures["frozen"] > figures["tracked_before"]
    assert figures["tracked_after"] < figures["frozen"] / 100
    assert figures["collected"] >= 1
