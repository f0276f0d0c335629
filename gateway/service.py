"""The gateway's state: its components, lifecycle, transcription path and status figures.

``Gateway`` owns the model cache, the worker pool and the session store that
the settings select (fixed, or leaky per ``--leaks``). Routes reach it via
``request.app.state.gateway``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import psutil

from gateway import __version__, asr, devices, diagnosis, failpoints, native
from gateway.asr import ModelIdentity, RequestOptions, Transcript
from gateway.downloads import Downloader
from gateway.errors import GatewayError, InvalidRequestError, NotFoundError
from gateway.memory_guard import MemoryGuard
from gateway.model_cache import ModelCache, ModelCacheProtocol, freeze_startup_objects
from gateway import presets
from gateway.presets import RANDOM_WEIGHTS_NOTE, available_models
from gateway.sessions import SessionStore, SessionStoreProtocol
from gateway.settings import Settings
from gateway.url_allowlist import UrlAllowlist
from gateway.workers import WorkerPool, WorkerPoolProtocol

logger = logging.getLogger(__name__)

MAX_HOTWORDS = 1000
MAX_OPTION_CHARS = 10_000
SHUTDOWN_DRAIN_S = 10.0


@dataclass
class Components:
    cache: ModelCacheProtocol
    pool: WorkerPoolProtocol
    sessions: SessionStoreProtocol


def build_components(settings: Settings, guard: MemoryGuard | None = None) -> Components:
    """Pick the fixed or the leaky implementation of each part, as ``settings.leaks`` selects."""

    def loader(identity: ModelIdentity) -> asr.LoadedModel:
        if guard is not None:
            guard.check_before_load(identity.name, cache.evict_idle)
        return asr.load_model(identity, settings.torch_threads)

    if "model-cache" in settings.leaks:
        from gateway.leaky.model_cache import LeakyModelCache

        cache: ModelCacheProtocol = LeakyModelCache(loader)
    else:
        cache = ModelCache(loader, settings.cache_max_models)

    pool_args = (settings.workers, settings.queue_limit, settings.task_timeout_s, settings.stuck_after_timeouts)
    if "worker-futures" in settings.leaks:
        from gateway.leaky.workers import LeakyWorkerPool

        pool: WorkerPoolProtocol = LeakyWorkerPool(*pool_args)
    else:
        pool = WorkerPool(*pool_args)

    session_args = (settings.session_ttl_s, settings.sweep_interval_s, settings.max_sessions, settings.max_session_bytes)
    if "session-buffers" in settings.leaks:
        from gateway.leaky.sessions import LeakySessionStore

        sessions: SessionStoreProtocol = LeakySessionStore(*session_args)
    else:
        sessions = SessionStore(*session_args)
    return Components(cache, pool, sessions)


def process_tree_rss_bytes(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class Gateway:
    """The app's state: settings, components and the figures of ``/v1/status``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.process = psutil.Process()
        self.guard = MemoryGuard.from_setting(settings.memory_limit_bytes, lambda: process_tree_rss_bytes(self.process))
        self.components = build_components(settings, self.guard)
        self.downloads = Downloader(
            UrlAllowlist(settings.url_allowlist),
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.download_timeout_s,
            max_active=settings.workers + settings.queue_limit,
        )
        self.started_s = time.monotonic()
        self.default_identity: ModelIdentity | None = None
        self.default_model_error: str | None = None
        self.ready = False
        self.draining = False
        # Sessions a WebSocket is streaming into; no other client may use them meanwhile.
        self.streaming_sessions: set[str] = set()
        self._warmup: asyncio.Task | None = None

        from gateway.metrics import Metrics

        self.metrics = Metrics(self)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        native.bound_onednn_primitive_cache(self.settings.onednn_cache_capacity)
        if self.settings.tracemalloc_frames and self.settings.tracemalloc_start == "boot":
            diagnosis.start_tracing(self.settings.tracemalloc_frames)
        if failpoints.folder() is not None:
            logger.warning("Test failpoints enabled in %s; never set %s in production", failpoints.folder(), failpoints.ENV_VAR)
        self.components.sessions.start()
        self._warmup = asyncio.get_running_loop().create_task(self._load_default_model(), name="default-model")
        logger.info(
            "Gateway %s started: pid %d, leaks %s, %d workers, queue %d, cache bound %d",
            __version__, os.getpid(), ",".join(self.settings.leaks) or "none",
            self.settings.workers, self.settings.queue_limit, self.settings.cache_max_models,
        )

    async def _load_default_model(self) -> None:
        try:
            devices.check_available(self.settings.device)
            self.default_identity = asr.resolve_identity(self.settings.model, self.settings.models_dir, self.settings.device)

            def warm() -> None:
                frozen = freeze_startup_objects()
                logger.info("Moved %d start-up objects to the collector's permanent generation", frozen)
                with self.components.cache.lease(self.default_identity, RequestOptions()):
                    pass

            await asyncio.to_thread(warm)
        except GatewayError as error:
            self.default_model_error = error.message
            logger.error("Default model %r could not be loaded: %s", self.settings.model, error.message)
            return
        self.ready = True
        logger.info("Default model %s ready", self.default_identity.describe())
        if self.settings.tracemalloc_frames and self.settings.tracemalloc_start == "warmup":
            diagnosis.start_tracing(self.settings.tracemalloc_frames)

    def begin_drain(self) -> None:
        """Turn readiness off, admit no new work and reject queued tasks with 503. Idempotent."""
        if self.draining:
            return
        self.draining = True
        self.ready = False
        cancelled = self.components.pool.begin_shutdown()
        logger.info("Draining: readiness is 503, new work is rejected, %d queued tasks rejected", cancelled)

    async def wait_for_running_tasks(self, timeout_s: float) -> bool:
        """Wait until no task runs or ``timeout_s`` passes; return whether the pool went idle."""
        deadline = time.monotonic() + timeout_s
        while self.components.pool.stats()["workers_active"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        active = self.components.pool.stats()["workers_active"]
        if active:
            logger.warning("Drain timeout of %.0f s passed with %d tasks still running", timeout_s, active)
        else:
            logger.info("Running tasks finished")
        return active == 0

    async def stop(self) -> None:
        self.begin_drain()
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmup
        cancelled = await self.components.pool.shutdown(SHUTDOWN_DRAIN_S)
        await self.downloads.close()
        dropped = await self.components.sessions.stop()
        unloaded = self.components.cache.close()
        logger.info(
            "Shutdown complete: %d queued tasks cancelled, %d sessions dropped, %d models unloaded",
            cancelled, dropped, unloaded,
        )

    # -- requests ----------------------------------------------------------

    def model_names(self) -> list[str]:
        return list(available_models(self.settings.models_dir))

    def identity_for(self, name: str | None) -> ModelIdentity:
        if name is None:
            if self.default_identity is None:
                raise NotFoundError(
                    f"default model {self.settings.model!r} is not available: {self.default_model_error or 'still loading'}",
                    code="model_not_ready",
                )
            return self.default_identity
        if not name or len(name) > 128 or not name.isprintable() or any(c in name for c in "/\\") or name.startswith("."):
            raise InvalidRequestError(
                f"model {name[:40]!r} is not a model name; use one of GET /v1/status models_available",
                code="invalid_model",
            )
        if name not in self.model_names() and presets.resolve_preset_name(name) not in self.model_names():
            available = ", ".join(self.model_names()) or "none prepared"
            raise NotFoundError(
                f"model {name!r} not found among the served models (available: {available}); run `gateway models prepare`, "
                "or add a folder with config.yaml and model.pt under the models folder",
                code="model_not_found",
            )
        return asr.resolve_identity(name, self.settings.models_dir, self.settings.device)

    async def transcribe(self, load_audio, identity: ModelIdentity, options: RequestOptions) -> Transcript:
        """Decode and transcribe on a worker; the model lease lasts exactly as long as the task."""
        cache = self.components.cache

        def task() -> Transcript:
            failpoints.hold_inference()
            failpoints.hang_one_task()
            failpoints.raise_in_inference()
            samples = load_audio()
            with cache.lease(identity, options) as model:
                transcript = model.transcribe(samples, options)
            # The decoded audio travels with the task's result; only a retained
            # future (the worker-futures leak) keeps it alive after the response.
            transcript.audio = samples
            return transcript

        return await self.components.pool.run(task)

    def status(self) -> dict[str, Any]:
        pool = self.components.pool.stats()
        cache = self.components.cache.stats()
        sessions = self.components.sessions.stats()
        reasons = []
        if pool["workers_stuck"]:
            reasons.append(f"{pool['workers_stuck']} worker(s) stuck past several task timeouts")
        if self.default_model_error:
            reasons.append(f"default model failed to load: {self.default_model_error}")
        if self.draining:
            reasons.append("draining for shutdown")
        memory_reason = self.guard.reason()
        if memory_reason:
            reasons.append(memory_reason)
        return {
            "schema_version": 1,
            "status": "DEGRADED" if reasons else "OK",
            "reasons": reasons,
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started_s, 3),
            "leaks": list(self.settings.leaks),
            **pool,
            "rss_bytes": process_tree_rss_bytes(self.process),
            **cache,
            "models_available": self.model_names(),
            "cached_identities": self.components.cache.identities(),
            **sessions,
            **self.downloads.stats(),
            "default_model_ready": self.ready,
            **devices.gpu_memory_figures(self.settings.device),
            "tracemalloc_traced_bytes": diagnosis.traced_bytes(),
            "memory_limit_bytes": self.guard.limit_bytes,
            "memory_limit_source": self.guard.source,
            "model_loads_refused_total": self.guard.refused_loads_total,
        }


def options_from(language: str | None, hotwords: list[str] | str | None) -> RequestOptions:
    """Build request options, rejecting more hotwords than the gateway accepts."""
    if isinstance(hotwords, str):
        words = tuple(word for word in hotwords.split() if word)
    else:
        words = tuple(hotwords or ())
    if len(words) > MAX_HOTWORDS:
        raise InvalidRequestError(
            f"hotwords has {len(words)} entries, more than the limit of {MAX_HOTWORDS}", code="too_many_hotwords"
        )
    if sum(len(w) for w in words) > MAX_OPTION_CHARS:
        raise InvalidRequestError(
            f"hotwords total more than {MAX_OPTION_CHARS} characters; send fewer or shorter hotwords",
            code="hotwords_too_long",
        )
    return RequestOptions(language=language, hotwords=words)


def transcript_body(transcript: Transcript, identity: ModelIdentity, request_id: str, session_id: str | None) -> dict:
    return {
        "request_id": request_id,
        "text": transcript.text,
        "segments": [{"start_ms": s.start_ms, "end_ms": s.end_ms, "text": s.text} for s in transcript.segments],
        "duration_ms": transcript.duration_ms,
        "model": {
            "name": identity.name,
            "identity": identity.describe(),
            "revision": identity.revision,
            "note": RANDOM_WEIGHTS_NOTE if identity.name.startswith("paraformer-") else None,
        },
        "session_id": session_id,
    }
