"""ASGI middleware that bounds each HTTP request body in size and in the time its client takes to send it.

FastAPI parses a multipart form before the route runs, spooling the whole
upload to a temporary file, so a size check in the route comes after the
bytes were received. This middleware counts the bytes as they arrive and
responds with 413 as soon as a body passes its endpoint's limit (at once when
``Content-Length`` already says so), and 408 when the body is not complete
within ``--upload-timeout-s``. Once it has responded, the app receives
``http.disconnect`` and its own response is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError, PayloadTooLargeError

logger = logging.getLogger(__name__)

# JSON bodies carry parameters only: 1,000 hotwords of 10,000 characters in total fit many times over.
MAX_JSON_BODY_BYTES = 1024 * 1024
# Multipart boundaries, part headers and the small form fields around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_PATHS = ("/v1/audio/transcriptions",)
CHUNK_PATH_SUFFIX = "/chunks"


class UploadTimeoutError(GatewayError):
    code = "upload_timeout"
    http_status = 408


class BodyLimits:
    """Reject request bodies over their endpoint's size limit (413) or slower than the upload timeout (408)."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int, upload_timeout_s: float):
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.upload_timeout_s = upload_timeout_s
        self.rejected_total = 0

    def limit_for(self, path: str) -> tuple[int, str]:
        """Return the body limit in bytes for ``path`` and the setting that raises it."""
        if path in UPLOAD_PATHS:
            return self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES, "raise --max-upload-bytes"
        if path.startswith("/v1/sessions/") and path.endswith(CHUNK_PATH_SUFFIX):
            return self.max_upload_bytes, "send smaller chunks or raise --max-upload-bytes"
        return MAX_JSON_BODY_BYTES, "JSON bodies carry parameters only; send audio by audio_url or as an upload"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        limit, fix = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            self.rejected_total += 1
            await _send_error(send, PayloadTooLargeError(
                f"request body of {int(declared)} bytes is over the limit of {limit} bytes for {scope['path']}; {fix}"
            ))
            return

        received = 0
        body_complete = False
        deadline = time.monotonic() + self.upload_timeout_s
        response_started = False
        rejection: GatewayError | None = None

        async def reject(error: GatewayError) -> Message:
            nonlocal rejection
            rejection = error
            self.rejected_total += 1
            logger.info("%s %s rejected while receiving its body: %s", scope["method"], scope["path"], error.message)
            if not response_started:
                await _send_error(send, error)
            return {"type": "http.disconnect"}

        async def limited_receive() -> Message:
            nonlocal received, body_complete
            if rejection is not None:
                return {"type": "http.disconnect"}
            if body_complete:
                # The body is in: what follows is only the wait for a disconnect, which has no deadline.
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return await reject(UploadTimeoutError(
                    f"request body not complete within the upload timeout of {self.upload_timeout_s:g} s "
                    f"({received} bytes received); send the body faster or raise --upload-timeout-s"
                ))
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
                if received > limit:
                    return await reject(PayloadTooLargeError(
                        f"request body is over the limit of {limit} bytes for {scope['path']}; {fix}"
                    ))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if rejection is not None:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # The app failed on the body this middleware cut short; the client already has its response.
            if rejection is None:
                raise


async def _send_error(send: Send, error: GatewayError) -> None:
    # Imported here because gateway.app imports this module.
    from gateway.app import error_response

    response = error_response(error)
    response.headers["Connection"] = "close"
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
