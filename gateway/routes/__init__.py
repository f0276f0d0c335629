"""HTTP and WebSocket routes, one module per group of endpoints."""

from __future__ import annotations

from fastapi import Request

from gateway.service import Gateway


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway
