"""The bounded model cache: LRU by model identity, leases, single-flight loads.

The key is the model identity only (folder, revision, device, dtype, VAD);
request options never enter it. A model is leased while a request uses it and
is unloaded only when it has been evicted and its last lease has ended. When
every cached model is leased, the cache holds one more than its bound until a
lease ends (a soft bound) rather than unloading a model in use.

Unloading returns memory to the OS: references dropped, ``gc.collect()``,
``torch.cuda.empty_cache()`` on CUDA, then ``malloc_trim(0)`` on glibc, or a
purge of every arena when jemalloc is preloaded. Without the trim, glibc kept
most of a freed model's pages resident in our measurements.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from gateway import native
from gateway.asr import LoadedModel, ModelIdentity, RequestOptions
from gateway.presets import quiet_stdout

logger = logging.getLogger(__name__)

Loader = Callable[[ModelIdentity], LoadedModel]


class ModelCacheProtocol(Protocol):
    """Interface of a model cache, fixed or leaky."""

    def lease(self, identity: ModelIdentity, options: RequestOptions) -> contextlib.AbstractContextManager[LoadedModel]: ...

    def stats(self) -> dict[str, int | None]: ...

    def identities(self) -> list[str]: ...

    def evict_idle(self) -> int: ...

    def close(self) -> int: ...


@dataclass
class _Entry:
    model: LoadedModel | None
    leases: int = 0
    evicted: bool = False


@dataclass
class _PendingLoad:
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def freeze_startup_objects() -> int:
    """Import FunASR, then move every object the collector tracks so far to its permanent generation; return how many.

    ``unload_model`` runs a full ``gc.collect()``, which walks every tracked
    object with the GIL held. After importing torch and FunASR that is about
    450,000 objects and 0.35 s on a 2-core machine, during which the event
    loop cannot serve even ``/v1/status``. Objects that exist before the first
    model load (modules, classes, registries) live as long as the process, so
    a collection that skips them frees just as much. Call it once, before the
    first model load, because a model loaded before it is never collected.
    """
    with quiet_stdout():
        from funasr import AutoModel  # noqa: F401  (its import creates most of the long-lived objects)
    gc.freeze()
    return gc.get_freeze_count()


def unload_model(model: LoadedModel | None) -> None:
    """Drop a model's tensors and give the memory back to the OS."""
    if model is None:
        return
    device = model.identity.device
    model.automodel = None
    del model
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
    native.return_freed_memory()


class ModelCache:
    """LRU cache of loaded models with at most ``max_models`` idle instances."""

    def __init__(self, loader: Loader, max_models: int):
        if max_models < 1:
            raise ValueError(f"cache max models must be at least 1, got {max_models}")
        self._loader = loader
        self._max_models = max_models
        self._entries: OrderedDict[ModelIdentity, _Entry] = OrderedDict()
        self._pending: dict[ModelIdentity, _PendingLoad] = {}
        self._lock = threading.Lock()
        self._loads_total = 0
        self._evictions_total = 0
        self._closed = False

    @contextlib.contextmanager
    def lease(self, identity: ModelIdentity, options: RequestOptions | None = None) -> Iterator[LoadedModel]:
        """Yield the loaded model for ``identity``; request options play no part in the lookup."""
        entry = self._acquire(identity)
        try:
            assert entry.model is not None
            yield entry.model
        finally:
            self._release(identity, entry)

    def _acquire(self, identity: ModelIdentity) -> _Entry:
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("model cache is closed")
                entry = self._entries.get(identity)
                if entry is not None:
                    # A hit only refreshes recency: nothing is evicted on a hit.
                    self._entries.move_to_end(identity)
                    entry.leases += 1
                    return entry
                pending = self._pending.get(identity)
                if pending is None:
                    pending = _PendingLoad()
                    self._pending[identity] = pending
                    break
            # Another thread is loading this identity: wait, then look again.
            pending.done.wait()
            if pending.error is not None:
                raise pending.error

        return self._load(identity, pending)

    def _load(self, identity: ModelIdentity, pending: _PendingLoad) -> _Entry:
        logger.info("Loading model %s", identity.describe())
        try:
            model = self._loader(identity)
        except BaseException as error:
            with self._lock:
                del self._pending[identity]
            pending.error = error
            pending.done.set()
            logger.warning("Loading model %s failed; nothing cached: %s", identity.name, error)
            raise

        with self._lock:
            entry = _Entry(model=model, leases=1)
            self._entries[identity] = entry
            del self._pending[identity]
            self._loads_total += 1
            evicted = self._evict_idle_locked()
        pending.done.set()
        logger.info("Model %s loaded; %d cached (bound %d)", identity.name, len(self._entries), self._max_models)
        self._unload_all(evicted)
        return entry

    def _release(self, identity: ModelIdentity, entry: _Entry) -> None:
        with self._lock:
            entry.leases -= 1
            to_unload: list[tuple[ModelIdentity, _Entry]] = []
            if entry.evicted and entry.leases == 0:
                to_unload.append((identity, entry))
            to_unload.extend(self._evict_idle_locked())
        self._unload_all(to_unload)

    def _evict_idle_locked(self) -> list[tuple[ModelIdentity, _Entry]]:
        """Evict least recently used idle entries while over the bound (lock held)."""
        evicted = []
        for identity in list(self._entries):
            if len(self._entries) <= self._max_models:
                break
            entry = self._entries[identity]
            if entry.leases > 0:
                continue
            del self._entries[identity]
            entry.evicted = True
            self._evictions_total += 1
            evicted.append((identity, entry))
        return evicted

    def _unload_all(self, entries: list[tuple[ModelIdentity, _Entry]]) -> None:
        for identity, entry in entries:
            model, entry.model = entry.model, None
            if model is None:
                continue
            logger.info("Evicted model %s; unloading", identity.name)
            unload_model(model)

    def stats(self) -> dict[str, int | None]:
        with self._lock:
            return {
                "models_cached": len(self._entries),
                "models_cache_limit": self._max_models,
                "model_loads_total": self._loads_total,
                "model_evictions_total": self._evictions_total,
                "models_loading": len(self._pending),
            }

    def identities(self) -> list[str]:
        with self._lock:
            return [identity.name for identity in self._entries]

    def contains(self, identity: ModelIdentity) -> bool:
        with self._lock:
            return identity in self._entries

    def evict_idle(self) -> int:
        """Evict and unload every model no request holds; return how many."""
        with self._lock:
            idle = [(identity, entry) for identity, entry in self._entries.items() if entry.leases == 0]
            for identity, entry in idle:
                del self._entries[identity]
                entry.evicted = True
                self._evictions_total += 1
        self._unload_all(idle)
        return len(idle)

    def close(self) -> int:
        """Unload every idle model; leased ones unload when their lease ends. Return how many unloaded now."""
        with self._lock:
            self._closed = True
            idle = [(identity, entry) for identity, entry in self._entries.items() if entry.leases == 0]
            for identity, entry in self._entries.items():
                entry.evicted = True
            self._entries.clear()
        self._unload_all(idle)
        return len(idle)
