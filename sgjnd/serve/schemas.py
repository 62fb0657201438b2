"""The service's OpenAPI vocabulary: response models and the documented request bodies.

The handlers return plain JSON (``JNDResult.to_dict()``); these models only document it, so that clients and
schemathesis know what to expect.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="stable machine-readable code (bad_request, invalid_image, body_too_large, ...)")
    message: str = Field(description="what was expected, what came, and what to do")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class PatchOut(BaseModel):
    """One patch: top-left corner, quality q and weight w."""

    y: int
    x: int
    q: float | None
    w: float | None


class JNDResponse(BaseModel):
    """The prediction for one image (the fields of ``JNDResult.to_dict()``)."""

    source: str
    width: int
    height: int
    jnd_qf: int | None = Field(description="highest QF at which compression is still visible")
    recommended_qf: int | None = Field(description="lowest QF judged invisible: the one to use")
    strategy: str
    scores: dict[str, float] = Field(description="S(QF) per evaluated QF")
    patches: list[PatchOut]
    psnr_db: float | None
    jpeg_bytes: int | None
    encoder_passes: int
    host_input_bytes: int = Field(description="bytes of input handed to the backend: encoder batches, or the image "
                                  "once where the rounds stay on the device")
    timings_ms: dict[str, float]
    backend: str
    weights: str
    notes: list[str]


class HealthResponse(BaseModel):
    """Liveness."""

    status: str


class ReadyResponse(BaseModel):
    """Readiness: the model is loaded."""

    status: str
    model: str
    backend: str
    max_batch: int
    max_delay_ms: float


_IMAGE_TYPES = ("application/octet-stream", "image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff")
_BINARY: dict[str, Any] = {"type": "string", "format": "binary"}

IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the image file's bytes as the body, or a multipart form with the file in the field 'file'",
        "content": {
            **{media: {"schema": _BINARY} for media in _IMAGE_TYPES},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]}
            },
        },
    }
}
"""``openapi_extra`` of the image routes: the body is read by the handler (after the limits), not by FastAPI."""

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "bad request (malformed multipart, bad parameter)"),
        (401, "missing or wrong bearer token"),
        (413, "body or image too large"),
        (422, "not a decodable image"),
        (503, "overloaded or not ready"),
        (504, "timed out"),
    )
}
"""Documented error responses of the image routes."""
