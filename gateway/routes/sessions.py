"""Streaming session routes: HTTP chunk upload and the WebSocket stream."""

from __future__ import annotations

import json
import logging
import uuid

from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gateway import audio
from gateway.asr import RequestOptions
from gateway.errors import GatewayError, InvalidAudioError, OverloadedError, PayloadTooLargeError
from gateway.routes import gateway_of, until_disconnected
from gateway.service import Gateway, transcript_body
from gateway.sessions import validate_session_id

logger = logging.getLogger(__name__)

router = APIRouter()

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
PCM16_BYTES = 2
# Text frames carry small JSON events such as {"event": "end"}.
MAX_EVENT_CHARS = 4096


async def require_single_process(gateway: Gateway = Depends(gateway_of)) -> Gateway:
    """Reject the HTTP session endpoints when several processes share the port."""
    if gateway.settings.processes > 1:
        raise GatewayError(
            f"HTTP session endpoints are unavailable with {gateway.settings.processes} gateway processes, because "
            "consecutive requests may reach different processes; stream over the WebSocket "
            "/v1/sessions/{id}/stream instead, which stays on one process",
            code="use_websocket_stream",
            http_status=409,
        )
    return gateway


def reject_if_streaming(gateway: Gateway, session_id: str) -> None:
    if session_id in gateway.streaming_sessions:
        raise GatewayError(
            f"session {session_id!r} is being streamed over a WebSocket; only that connection may add to or end it",
            code="session_streaming",
            http_status=409,
        )


class SessionOpenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: StrictStr | None = None
    sample_rate: StrictInt = 16000
    model: StrictStr | None = None


@router.post("/v1/sessions", status_code=201)
async def open_session(body: SessionOpenRequest | None = None, gateway: Gateway = Depends(require_single_process)) -> dict:
    body = body or SessionOpenRequest()
    if body.model is not None:
        gateway.identity_for(body.model)
    session = gateway.components.sessions.open(body.session_id, body.sample_rate, body.model)
    return {"session_id": session.session_id, "sample_rate": session.sample_rate}


@router.post("/v1/sessions/{session_id}/chunks")
async def append_chunk(session_id: str, request: Request, gateway: Gateway = Depends(require_single_process)) -> dict:
    limit = gateway.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"chunk of {declared} bytes is over the limit of {limit}; send smaller chunks")
    chunk = bytearray()
    async for part in request.stream():
        chunk += part
        if len(chunk) > limit:
            raise PayloadTooLargeError(f"chunk is over the limit of {limit} bytes; send smaller chunks")
    reject_if_streaming(gateway, session_id)
    buffered = gateway.components.sessions.append(session_id, bytes(chunk))
    return {"session_id": session_id, "buffered_bytes": buffered}


def pcm_loader(pcm: bytes, sample_rate: int, session_id: str):
    def load_audio():
        samples = audio.pcm16_to_float(pcm)
        if samples.size == 0:
            raise InvalidAudioError(
                f"session {session_id!r} has no buffered audio; send chunks before closing", code="empty_session"
            )
        return audio.resample(samples, sample_rate)

    return load_audio


@router.post("/v1/sessions/{session_id}/close")
async def close_session(session_id: str, request: Request, gateway: Gateway = Depends(require_single_process)) -> dict:
    reject_if_streaming(gateway, session_id)
    closed = gateway.components.sessions.close(session_id)
    identity = gateway.identity_for(closed.model)
    load_audio = pcm_loader(closed.audio, closed.sample_rate, closed.session_id)
    transcript = await until_disconnected(request, gateway.transcribe(load_audio, identity, RequestOptions()))
    return transcript_body(transcript, identity, uuid.uuid4().hex, closed.session_id)


@router.delete("/v1/sessions/{session_id}", status_code=204)
async def delete_session(session_id: str, gateway: Gateway = Depends(require_single_process)) -> Response:
    reject_if_streaming(gateway, session_id)
    gateway.components.sessions.delete(session_id)
    return Response(status_code=204)


def _close_code(error: GatewayError) -> int:
    if isinstance(error, PayloadTooLargeError):
        return CLOSE_TOO_BIG
    if isinstance(error, OverloadedError):
        return CLOSE_TRY_AGAIN
    if error.http_status >= 500:
        return CLOSE_INTERNAL
    return CLOSE_POLICY


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        # A close reason is limited to 123 bytes by the WebSocket protocol.
        await websocket.close(code=code, reason=reason.encode()[:123].decode(errors="ignore"))


@router.websocket("/v1/sessions/{session_id}/stream")
async def stream(websocket: WebSocket, session_id: str) -> None:
    """Stream PCM16 frames into a session; partial results as speech completes, a final one at the end."""
    gateway: Gateway = websocket.app.state.gateway
    sessions = gateway.components.sessions
    settings = gateway.settings
    await websocket.accept()

    try:
        validate_session_id(session_id)
        sample_rate = int(websocket.query_params.get("sample_rate", "16000"))
        model = websocket.query_params.get("model")
        identity = gateway.identity_for(model)
        if session_id in gateway.streaming_sessions:
            await _close(websocket, CLOSE_POLICY, f"session {session_id!r} is already being streamed by another connection")
            return
        if not sessions.has(session_id):
            sessions.open(session_id, sample_rate, model)
    except GatewayError as error:
        await _close(websocket, _close_code(error), error.message)
        return
    except ValueError:
        await _close(websocket, CLOSE_POLICY, "sample_rate must be an integer number of Hz")
        return

    gateway.streaming_sessions.add(session_id)
    finished = False
    partial_step_bytes = int(settings.stream_partial_interval_s * sample_rate) * PCM16_BYTES
    next_partial_at = partial_step_bytes
    pcm = bytearray()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is not None:
                if len(data) > settings.stream_max_message_bytes:
                    await _close(websocket, CLOSE_TOO_BIG, f"message of {len(data)} bytes is over the limit of {settings.stream_max_message_bytes}")
                    break
                sessions.append(session_id, data)
                pcm += data
                if len(pcm) >= next_partial_at:
                    next_partial_at = len(pcm) + partial_step_bytes
                    transcript = await gateway.transcribe(pcm_loader(bytes(pcm), sample_rate, session_id), identity, RequestOptions())
                    completed = [s for s in transcript.segments if s.end_ms < transcript.duration_ms - 100]
                    await websocket.send_json({
                        "type": "partial",
                        "text": " ".join(s.text for s in completed if s.text),
                        "segments": [{"start_ms": s.start_ms, "end_ms": s.end_ms, "text": s.text} for s in completed],
                    })
                continue

            text = message.get("text") or ""
            if len(text) > MAX_EVENT_CHARS:
                await _close(websocket, CLOSE_TOO_BIG, f"text frame of {len(text)} characters is over the limit of {MAX_EVENT_CHARS}; text frames carry events only")
                break
            try:
                event = json.loads(text)
            except (ValueError, RecursionError):
                await _close(websocket, CLOSE_POLICY, 'text frames must be JSON such as {"event": "end"}')
                break
            kind = event.get("event") if isinstance(event, dict) else None
            if kind == "ping":
                await websocket.send_json({"type": "pong"})
                continue
            if kind != "end":
                await _close(websocket, CLOSE_POLICY, f"unknown event {str(kind)[:40]!r}; send binary PCM16 frames or {{\"event\": \"end\"}}")
                break
            closed = sessions.close(session_id)
            finished = True
            transcript = await gateway.transcribe(pcm_loader(closed.audio, sample_rate, session_id), identity, RequestOptions())
            body = transcript_body(transcript, identity, uuid.uuid4().hex, session_id)
            await websocket.send_json({"type": "final", "text": body["text"], "segments": body["segments"], "duration_ms": body["duration_ms"]})
            await _close(websocket, CLOSE_NORMAL, "done")
            break
    except GatewayError as error:
        logger.info("Stream %s ended with %s: %s", session_id, error.code, error.message)
        await _close(websocket, _close_code(error), error.message)
    except WebSocketDisconnect:
        logger.info("Stream %s: client disconnected", session_id)
    finally:
        gateway.streaming_sessions.discard(session_id)
        if not finished:
            released = sessions.abandon(session_id)
            logger.info("Stream %s ended without an end event; session %s", session_id, "released" if released else "kept")
