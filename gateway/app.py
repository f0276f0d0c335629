"""The FastAPI application: routes, lifespan and error mapping.

``create_app(settings)`` builds the fixed or leaky components that the
settings select and returns the app; nothing loads until the lifespan starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psutil
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from gateway import __version__, asr, audio, failpoints, native
from gateway.asr import ModelIdentity, RequestOptions, Transcript
from gateway.errors import (
    GatewayError,
    InvalidAudioError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
)
from gateway.model_cache import ModelCache, ModelCacheProtocol
from gateway.presets import RANDOM_WEIGHTS_NOTE, available_models
from gateway.sessions import SessionStore, SessionStoreProtocol
from gateway.settings import Settings
from gateway.workers import WorkerPool, WorkerPoolProtocol

logger = logging.getLogger(__name__)

MAX_HOTWORDS = 1000
MAX_OPTION_CHARS = 10_000
SHUTDOWN_DRAIN_S = 10.0


class TranscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audio_url: StrictStr
    model: StrictStr | None = None
    language: StrictStr | None = Field(default=None, max_length=64)
    hotwords: list[StrictStr] | StrictStr | None = None
    sample_rate: StrictInt | None = None
    session_id: StrictStr | None = Field(default=None, max_length=128)


class SessionOpenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: StrictStr | None = None
    sample_rate: StrictInt = 16000
    model: StrictStr | None = None


@dataclass
class Components:
    cache: ModelCacheProtocol
    pool: WorkerPoolProtocol
    sessions: SessionStoreProtocol


def build_components(settings: Settings) -> Components:
    """Pick the fixed or the leaky implementation of each part, as ``settings.leaks`` selects."""

    def loader(identity: ModelIdentity) -> asr.LoadedModel:
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


def error_response(error: GatewayError) -> JSONResponse:
    headers = {}
    if isinstance(error, OverloadedError):
        headers["Retry-After"] = str(error.retry_after_s)
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message}}, status_code=error.http_status, headers=headers
    )


def process_tree_rss_bytes(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _describe_validation_error(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {item.get('msg', 'invalid')}")
    return "invalid request body (" + "; ".join(parts) + "); see docs/http-api.md for the fields"


class Gateway:
    """The app's state: settings, components and the figures of ``/v1/status``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.components = build_components(settings)
        self.started_s = time.monotonic()
        self.process = psutil.Process()
        self.default_identity: ModelIdentity | None = None
        self.default_model_error: str | None = None
        self.ready = False
        self.draining = False
        self._warmup: asyncio.Task | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        native.bound_onednn_primitive_cache(self.settings.onednn_cache_capacity)
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
            self.default_identity = asr.resolve_identity(self.settings.model, self.settings.models_dir, self.settings.device)

            def warm() -> None:
                with self.components.cache.lease(self.default_identity, RequestOptions()):
                    pass

            await asyncio.to_thread(warm)
        except GatewayError as error:
            self.default_model_error = error.message
            logger.error("Default model %r could not be loaded: %s", self.settings.model, error.message)
            return
        self.ready = True
        logger.info("Default model %s ready", self.default_identity.describe())

    async def stop(self) -> None:
        self.draining = True
        self.ready = False
        logger.info("Shutting down: draining workers for up to %.0f s", SHUTDOWN_DRAIN_S)
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmup
        cancelled = await self.components.pool.shutdown(SHUTDOWN_DRAIN_S)
        dropped = await self.components.sessions.stop()
        unloaded = self.components.cache.close()
        logger.info(
            "Shutdown complete: %d queued tasks cancelled, %d sessions dropped, %d models unloaded",
            cancelled, dropped, unloaded,
        )

    # -- requests ----------------------------------------------------------

    def identity_for(self, name: str | None) -> ModelIdentity:
        if name is None:
            if self.default_identity is None:
                raise NotFoundError(
                    f"default model {self.settings.model!r} is not available: {self.default_model_error or 'still loading'}",
                    code="model_not_ready",
                )
            return self.default_identity
        if not name or len(name) > 128 or "/" in name or "\\" in name or name.startswith("."):
            raise InvalidRequestError(
                f"model {name[:40]!r} is not a model name; use one of GET /v1/status models_available",
                code="invalid_model",
            )
        return asr.resolve_identity(name, self.settings.models_dir, self.settings.device)

    async def transcribe(self, load_audio, identity: ModelIdentity, options: RequestOptions) -> Transcript:
        """Decode and transcribe on a worker; the model lease lasts exactly as long as the task."""
        cache = self.components.cache

        def task() -> Transcript:
            failpoints.hold_inference()
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
            "models_available": list(available_models(self.settings.models_dir)),
            "cached_identities": self.components.cache.identities(),
            **sessions,
            "default_model_ready": self.ready,
        }


def options_from(request: TranscriptionRequest | None, language: str | None, hotwords) -> RequestOptions:
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


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(settings: Settings) -> FastAPI:
    gateway = Gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(title="FunASR leak-fixed gateway", version=__version__, lifespan=lifespan)
    app.state.gateway = gateway

    @app.exception_handler(GatewayError)
    async def on_gateway_error(request: Request, error: GatewayError) -> JSONResponse:
        if error.http_status >= 500 and not isinstance(error, OverloadedError):
            logger.error("%s %s failed: %s", request.method, request.url.path, error.message)
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(InvalidRequestError(_describe_validation_error(error)))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if gateway.ready and not gateway.draining:
            return JSONResponse({"status": "ready"})
        reason = "draining" if gateway.draining else (gateway.default_model_error or "loading the default model")
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    @app.get("/v1/status")
    async def status() -> dict:
        return gateway.status()

    @app.post("/v1/responses")
    async def responses(body: TranscriptionRequest) -> dict:
        request_id = uuid.uuid4().hex
        options = options_from(body, body.language, body.hotwords)
        identity = gateway.identity_for(body.model)
        path = audio.resolve_media_path(body.audio_url, settings.media_roots)

        def load_audio():
            data = audio.read_limited(path, settings.max_upload_bytes)
            return audio.decode(
                data, max_duration_s=settings.max_audio_duration_s, name=f"audio file {path.name!r}",
                expected_rate=body.sample_rate,
            )

        transcript = await gateway.transcribe(load_audio, identity, options)
        logger.debug("Request %s transcribed %d ms with %s", request_id, transcript.duration_ms, identity.name)
        return transcript_body(transcript, identity, request_id, body.session_id)

    @app.post("/v1/sessions", status_code=201)
    async def open_session(body: SessionOpenRequest | None = None) -> dict:
        body = body or SessionOpenRequest()
        if body.model is not None:
            gateway.identity_for(body.model)
        session = gateway.components.sessions.open(body.session_id, body.sample_rate, body.model)
        return {"session_id": session.session_id, "sample_rate": session.sample_rate}

    @app.post("/v1/sessions/{session_id}/chunks")
    async def append_chunk(session_id: str, request: Request) -> dict:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_upload_bytes:
            raise PayloadTooLargeError(
                f"chunk of {declared} bytes is over the limit of {settings.max_upload_bytes}; send smaller chunks"
            )
        chunk = bytearray()
        async for part in request.stream():
            chunk += part
            if len(chunk) > settings.max_upload_bytes:
                raise PayloadTooLargeError(
                    f"chunk is over the limit of {settings.max_upload_bytes} bytes; send smaller chunks"
                )
        buffered = gateway.components.sessions.append(session_id, bytes(chunk))
        return {"session_id": session_id, "buffered_bytes": buffered}

    @app.post("/v1/sessions/{session_id}/close")
    async def close_session(session_id: str) -> dict:
        closed = gateway.components.sessions.close(session_id)
        identity = gateway.identity_for(closed.model)

        def load_audio():
            samples = audio.pcm16_to_float(closed.audio)
            if samples.size == 0:
                raise InvalidAudioError(
                    f"session {closed.session_id!r} has no buffered audio; send chunks before closing",
                    code="empty_session",
                )
            return audio.resample(samples, closed.sample_rate)

        transcript = await gateway.transcribe(load_audio, identity, RequestOptions())
        return transcript_body(transcript, identity, uuid.uuid4().hex, closed.session_id)

    @app.delete("/v1/sessions/{session_id}", status_code=204)
    async def delete_session(session_id: str) -> Response:
        gateway.components.sessions.delete(session_id)
        return Response(status_code=204)

    @app.get("/v1/debug/sessions")
    async def debug_sessions(request: Request) -> dict:
        if not settings.debug_endpoints:
            raise NotFoundError("debug endpoints are off; start the gateway with --debug-endpoints", code="debug_off")
        if not is_loopback(request):
            raise GatewayError("debug endpoints serve loopback clients only; call them from the gateway's host", code="forbidden", http_status=403)
        return {"sessions": gateway.components.sessions.describe()}

    return app
