"""Leak 1: a model cache keyed by request options, without bound.

Every new combination of request options (language, hotwords) loads another
full model instance, and nothing is ever evicted. Concurrent first requests
for one key each load their own instance (no single flight).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from gateway.asr import LoadedModel, ModelIdentity, RequestOptions

logger = logging.getLogger(__name__)

# The leaking container: (model identity, request options) -> loaded model.
_MODELS: dict[tuple[ModelIdentity, RequestOptions], LoadedModel] = {}


class LeakyModelCache:
    def __init__(self, loader: Callable[[ModelIdentity], LoadedModel], max_models: int | None = None):
        self._loader = loader
        self._loads_total = 0

    @contextlib.contextmanager
    def lease(self, identity: ModelIdentity, options: RequestOptions | None = None) -> Iterator[LoadedModel]:
        key = (identity, options or RequestOptions())
        model = _MODELS.get(key)
        if model is None:
            model = self._loader(identity)
            _MODELS[key] = model
            self._loads_total += 1
            logger.info("Leaky cache loaded model %s for new request options; %d instances held", identity.name, len(_MODELS))
        yield model

    def stats(self) -> dict[str, int | None]:
        return {
            "models_cached": len(_MODELS),
            "models_cache_limit": None,
            "model_loads_total": self._loads_total,
            "model_evictions_total": 0,
            "models_loading": 0,
        }

    def identities(self) -> list[str]:
        return [identity.name for identity, _ in _MODELS]

    def evict_idle(self) -> int:
        # The leaky cache never evicts.
        return 0

    def close(self) -> int:
        count = len(_MODELS)
        _MODELS.clear()
        return count
