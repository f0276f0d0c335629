"""Operational routes: liveness, readiness, status, Prometheus metrics and debug views."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import tempfile

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from gateway import diagnosis, metrics
from gateway.errors import GatewayError, InvalidRequestError, NotFoundError
from gateway.routes import gateway_of
from gateway.service import Gateway

router = APIRouter()

DEBUG_TOKEN_HEADER = "X-Debug-Token"


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(gateway: Gateway = Depends(gateway_of)) -> JSONResponse:
    if gateway.ready and not gateway.draining:
        return JSONResponse({"status": "ready"})
    reason = "draining" if gateway.draining else (gateway.default_model_error or "loading the default model")
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)


@router.get("/v1/status")
async def status(gateway: Gateway = Depends(gateway_of)) -> dict:
    return gateway.status()


@router.get("/metrics")
async def prometheus_metrics(gateway: Gateway = Depends(gateway_of)) -> Response:
    body, content_type = metrics.render(gateway)
    return Response(body, media_type=content_type)


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def require_debug_access(request: Request, gateway: Gateway = Depends(gateway_of)) -> Gateway:
    """Allow debug views when they are on, to loopback clients or holders of the debug token."""
    settings = gateway.settings
    if not settings.debug_endpoints:
        raise NotFoundError("debug endpoints are off; start the gateway with --debug-endpoints", code="debug_off")
    if is_loopback(request):
        return gateway
    supplied = request.headers.get(DEBUG_TOKEN_HEADER, "")
    if settings.debug_token and hmac.compare_digest(supplied.encode(), settings.debug_token.encode()):
        return gateway
    raise GatewayError(
        f"debug endpoints serve loopback clients only, or others that send the debug token in {DEBUG_TOKEN_HEADER}",
        code="forbidden",
        http_status=403,
    )


@router.get("/v1/debug/sessions")
async def debug_sessions(gateway: Gateway = Depends(require_debug_access)) -> dict:
    return {"sessions": gateway.components.sessions.describe()}


@router.post("/v1/debug/tracemalloc/start")
async def debug_tracemalloc_start(frames: int = 1, gateway: Gateway = Depends(require_debug_access)) -> dict:
    if not 1 <= frames <= 100:
        raise InvalidRequestError(f"frames must be from 1 to 100, got {frames}", code="invalid_frames")
    started = diagnosis.start_tracing(frames)
    return {"tracing": True, "started_now": started}


@router.get("/v1/debug/tracemalloc/snapshot")
async def debug_tracemalloc_snapshot(gateway: Gateway = Depends(require_debug_access)) -> Response:
    """Return a tracemalloc snapshot as ``Snapshot.dump`` writes it (pickle; load with ``Snapshot.load``)."""
    if diagnosis.traced_bytes() is None:
        raise GatewayError(
            "tracemalloc is not tracing; start the gateway with --tracemalloc-frames N or POST /v1/debug/tracemalloc/start",
            code="not_tracing", http_status=409,
        )
    with tempfile.TemporaryDirectory(prefix="gateway-snapshot-") as folder:
        path = os.path.join(folder, "snapshot.tracemalloc")
        await asyncio.to_thread(diagnosis.dump_snapshot, path)
        with open(path, "rb") as handle:
            data = handle.read()
    return Response(data, media_type="application/octet-stream")


@router.get("/v1/debug/memory")
async def debug_memory(gateway: Gateway = Depends(require_debug_access)) -> dict:
    return diagnosis.memory_report(gateway.status(), gateway.components)
