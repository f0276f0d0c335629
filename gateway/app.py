"""The FastAPI application: routes, middleware, lifespan and error mapping.

``create_app(settings)`` builds the fixed or leaky components that the
settings select and returns the app; nothing loads until the lifespan starts.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import __version__
from gateway.body_limits import BodyLimits
from gateway.errors import GatewayError, InvalidRequestError, OverloadedError
from gateway.routes import ops, sessions, transcribe
from gateway.service import Gateway
from gateway.settings import Settings

logger = logging.getLogger(__name__)

UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz"})
CLOSE_POLICY = 1008
HTTP_ERROR_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 415: "unsupported_media_type"}


def error_response(error: GatewayError) -> JSONResponse:
    headers = {}
    if isinstance(error, OverloadedError):
        headers["Retry-After"] = str(error.retry_after_s)
    if error.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message}}, status_code=error.http_status, headers=headers
    )


def describe_validation_error(error: RequestValidationError) -> str:
    items = error.errors()
    parts = []
    for item in items[:5]:
        location = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {item.get('msg', 'invalid')}")
    where = "request body" if items and items[0].get("loc", ("",))[0] == "body" else "request"
    return f"invalid {where} (" + "; ".join(parts) + "); see docs/http-api.md for the fields"


class BearerAuth:
    """ASGI middleware: require ``Authorization: Bearer <token>`` on HTTP and WebSocket routes."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in UNAUTHENTICATED_PATHS:
            await self.app(scope, receive, send)
            return
        supplied = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, credentials = supplied.partition(b" ")
        # The auth scheme is case-insensitive (RFC 7235); the token is compared in constant time.
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.expected):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": "missing or invalid bearer token"})
            return
        response = error_response(GatewayError(
            "missing or invalid bearer token; send Authorization: Bearer <token> as configured with --auth-token",
            code="unauthorized", http_status=401,
        ))
        await response(scope, receive, send)


class LatencyRecorder:
    """ASGI middleware: observe each HTTP request's duration in the latency histogram."""

    def __init__(self, app: ASGIApp, gateway: Gateway):
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_and_record(message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.gateway.metrics.observe(scope["method"], path, status_code, time.perf_counter() - started)


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

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException) -> JSONResponse:
        # Raised by FastAPI and Starlette themselves: unknown paths, wrong methods, bodies they cannot parse.
        code = HTTP_ERROR_CODES.get(error.status_code, "invalid_request" if error.status_code < 500 else "internal_error")
        message = f"{error.detail} ({request.method} {request.url.path[:200]}); see docs/http-api.md for the endpoints"
        response = error_response(GatewayError(message, code=code, http_status=error.status_code))
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.error("%s %s failed with an unexpected error", request.method, request.url.path, exc_info=error)
        return error_response(GatewayError(
            f"internal error while serving {request.url.path} ({type(error).__name__}); "
            "the gateway logged the traceback, retry or report it",
        ))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(InvalidRequestError(describe_validation_error(error)))

    app.include_router(ops.router)
    app.include_router(transcribe.router)
    app.include_router(sessions.router)

    app.add_middleware(BodyLimits, max_upload_bytes=settings.max_upload_bytes, upload_timeout_s=settings.upload_timeout_s)
    app.add_middleware(LatencyRecorder, gateway=gateway)
    if settings.auth_token:
        app.add_middleware(BearerAuth, token=settings.auth_token)
    return app
