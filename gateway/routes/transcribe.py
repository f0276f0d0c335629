"""Transcription routes: the incident gateway's ``/v1/responses`` and the OpenAI-compatible pair."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from gateway import audio
from gateway.errors import InvalidRequestError, PayloadTooLargeError
from gateway.routes import gateway_of, until_disconnected
from gateway.service import Gateway, options_from, transcript_body

logger = logging.getLogger(__name__)

router = APIRouter()

RESPONSE_FORMATS = ("json", "text", "verbose_json")
UPLOAD_READ_BYTES = 1 << 20


class TranscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audio_url: StrictStr
    model: StrictStr | None = None
    language: StrictStr | None = Field(default=None, max_length=64)
    hotwords: list[StrictStr] | StrictStr | None = None
    sample_rate: StrictInt | None = Field(default=None, ge=audio.MIN_SAMPLE_RATE, le=audio.MAX_SAMPLE_RATE)
    session_id: StrictStr | None = Field(default=None, max_length=128)


@router.post("/v1/responses")
async def responses(body: TranscriptionRequest, request: Request, gateway: Gateway = Depends(gateway_of)) -> dict:
    settings = gateway.settings
    request_id = uuid.uuid4().hex
    options = options_from(body.language, body.hotwords)
    identity = gateway.identity_for(body.model)

    if audio.is_url(body.audio_url):
        data = await until_disconnected(request, gateway.downloads.fetch(body.audio_url))
        name = "downloaded audio"

        def load_audio():
            return audio.decode(data, max_duration_s=settings.max_audio_duration_s, name=name, expected_rate=body.sample_rate)
    else:
        path = audio.resolve_media_path(body.audio_url, settings.media_roots)

        def load_audio():
            data = audio.read_limited(path, settings.max_upload_bytes)
            return audio.decode(
                data, max_duration_s=settings.max_audio_duration_s, name=f"audio file {path.name!r}",
                expected_rate=body.sample_rate,
            )

    transcript = await until_disconnected(request, gateway.transcribe(load_audio, identity, options))
    logger.debug("Request %s transcribed %d ms with %s", request_id, transcript.duration_ms, identity.name)
    return transcript_body(transcript, identity, request_id, body.session_id)


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """Read an upload in blocks, rejecting it as soon as it passes ``max_bytes``."""
    data = bytearray()
    while True:
        block = await upload.read(UPLOAD_READ_BYTES)
        if not block:
            return bytes(data)
        data += block
        if len(data) > max_bytes:
            raise PayloadTooLargeError(
                f"uploaded file is over the limit of {max_bytes} bytes; split the audio or raise --max-upload-bytes"
            )


@router.post("/v1/audio/transcriptions")
async def audio_transcriptions(
    request: Request,
    file: UploadFile = File(...),
    model: str | None = Form(None),
    language: str | None = Form(None, max_length=64),
    prompt: str | None = Form(None, max_length=10_000),
    response_format: str = Form("json"),
    gateway: Gateway = Depends(gateway_of),
):
    """OpenAI-compatible transcription; ``prompt`` words become hotwords, times are in seconds."""
    try:
        if response_format not in RESPONSE_FORMATS:
            raise InvalidRequestError(
                f"response_format {response_format[:40]!r} is not supported; use one of {', '.join(RESPONSE_FORMATS)}",
                code="invalid_response_format",
            )
        settings = gateway.settings
        # OpenAI clients send their own model names (whisper-1): those select the default model.
        name = model if model in gateway.model_names() else None
        identity = gateway.identity_for(name)
        options = options_from(language, prompt)
        data = await read_upload(file, settings.max_upload_bytes)
        filename = file.filename or "upload"
    finally:
        await file.close()

    def load_audio():
        return audio.decode(data, max_duration_s=settings.max_audio_duration_s, name=f"uploaded file {filename[:80]!r}")

    transcript = await until_disconnected(request, gateway.transcribe(load_audio, identity, options))
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    if response_format == "json":
        return {"text": transcript.text}
    return {
        "task": "transcribe",
        "language": language or "unknown",
        "duration": transcript.duration_ms / 1000,
        "text": transcript.text,
        "segments": [
            {"id": index, "start": s.start_ms / 1000, "end": s.end_ms / 1000, "text": s.text}
            for index, s in enumerate(transcript.segments)
        ],
        "model": identity.name,
    }


@router.get("/v1/models")
async def models(gateway: Gateway = Depends(gateway_of)) -> dict:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "owned_by": "asr-leak-toolkit"} for name in gateway.model_names()],
    }
