"""sgjnd errors -> HTTP: one stable error code and status per kind of failure, and the JSON error body.

Clients branch on ``error.code``; the status follows HTTP's meaning (4xx: the request's fault, 5xx: the service's).
The message is the same text the CLI prints.
"""

from __future__ import annotations

from typing import Any

from sgjnd.errors import (
    BackendError,
    BackendUnavailable,
    CheckpointError,
    ImageError,
    PixelLimitError,
    SgjndError,
    SpecError,
    UsageError,
)
from sgjnd.serve.batcher import RequestTimeout


class ApiError(Exception):
    """An error response: HTTP status, stable code, message, and extra headers.

    Attributes:
        status: the HTTP status.
        code: the stable machine-readable code (see :data:`ERROR_CODES`).
        message: what was expected, what came, what to do.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"code": ..., "message": ...}}``."""
        return {"error": {"code": self.code, "message": self.message}}


ERROR_CODES: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "body_too_large": 413,
    "too_many_pixels": 413,
    "unsupported_media_type": 415,
    "headers_too_large": 431,
    "invalid_image": 422,
    "overloaded": 503,
    "not_ready": 503,
    "backend_unavailable": 503,
    "timeout": 504,
    "model_error": 500,
    "inference_failed": 500,
    "internal": 500,
}
"""Every error code the service returns, with its HTTP status. Codes are stable: clients may depend on them."""


def api_error(code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> ApiError:
    """An :class:`ApiError` with the status that belongs to ``code``."""
    return ApiError(ERROR_CODES[code], code, message, headers)


_BY_TYPE: tuple[tuple[type[SgjndError], str], ...] = (
    (RequestTimeout, "timeout"),
    (PixelLimitError, "too_many_pixels"),
    (ImageError, "invalid_image"),
    (UsageError, "bad_request"),
    (SpecError, "model_error"),
    (CheckpointError, "model_error"),
    (BackendUnavailable, "backend_unavailable"),
    (BackendError, "inference_failed"),
)


def api_error_from(exc: SgjndError) -> ApiError:
    """The response for an sgjnd error raised while serving a request (most specific type first)."""
    for kind, code in _BY_TYPE:
        if isinstance(exc, kind):
            return api_error(code, str(exc))
    return api_error("internal", f"{type(exc).__name__}: {exc}")
