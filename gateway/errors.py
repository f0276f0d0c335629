"""Exception tree of the gateway.

Every error carries a stable machine-readable ``code`` and the HTTP status it
maps to; the app turns it into ``{"error": {"code": ..., "message": ...}}``
and the command line into an exit status.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: a failure the gateway reports to its caller."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status


class SettingsError(GatewayError):
    """An invalid setting: start-up stops with this message."""

    code = "invalid_setting"
    http_status = 500


class InvalidRequestError(GatewayError):
    code = "invalid_request"
    http_status = 400


class InvalidAudioError(GatewayError):
    code = "invalid_audio"
    http_status = 400


class ForbiddenPathError(GatewayError):
    code = "path_not_allowed"
    http_status = 403


class NotFoundError(GatewayError):
    code = "not_found"
    http_status = 404


class PayloadTooLargeError(GatewayError):
    code = "payload_too_large"
    http_status = 413


class OverloadedError(GatewayError):
    """The pool's queue is full: the client should retry after ``retry_after_s``."""

    code = "overloaded"
    http_status = 503

    def __init__(self, message: str, *, retry_after_s: int = 1, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class TaskTimeoutError(GatewayError):
    code = "task_timeout"
    http_status = 504


class ClientDisconnectedError(GatewayError):
    """The client went away before its answer was ready; nobody reads this response."""

    code = "client_disconnected"
    # 499 is nginx's "client closed request"; no standard code fits.
    http_status = 499


class ModelLoadError(GatewayError):
    code = "model_load_failed"
    http_status = 500


class ShuttingDownError(GatewayError):
    code = "shutting_down"
    http_status = 503


class ModelPrepareError(GatewayError):
    """``gateway models prepare`` could not make a model available."""

    code = "model_prepare_failed"
