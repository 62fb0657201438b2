"""Checks that run before a request does work: bearer token, body size, admission (concurrency), pixel count.

Each check raises :class:`~sgjnd.serve.errors.ApiError` with the status and stable code of
:mod:`sgjnd.serve.errors`.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Mapping

from starlette.types import Message, Receive

from sgjnd.runtime.decode import read_image_size
from sgjnd.serve.errors import api_error


def check_bearer(authorization: str | None, token: str | None) -> None:
    """Refuse a request whose ``Authorization`` header does not carry ``token`` (no check when ``token`` is None).

    Raises:
        ApiError: 401 ``unauthorized``, with ``WWW-Authenticate: Bearer``.
    """
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise api_error(
            "unauthorized",
            "missing or wrong bearer token: send the header 'Authorization: Bearer <token>' with the token the "
            "service was started with (--token or SGJND_SERVE_TOKEN)",
            (("WWW-Authenticate", 'Bearer realm="sgjnd"'),),
        )


def check_content_length(headers: Mapping[str, str], limit: int) -> None:
    """Refuse a body that its ``Content-Length`` declares larger than ``limit`` bytes, before reading it.

    Raises:
        ApiError: 413 ``body_too_large``, or 400 ``bad_request`` for a malformed header.
    """
    raw = headers.get("content-length")
    if raw is None:
        return
    if not raw.strip().isdigit():
        raise api_error("bad_request", f"Content-Length must be a non-negative integer, got {raw!r}")
    if int(raw) > limit:
        raise _too_large(int(raw), limit)


def _too_large(size: int | None, limit: int) -> Exception:
    got = f"{size:,} bytes" if size is not None else "more"
    return api_error(
        "body_too_large",
        f"request body too large: got {got}, the limit is {limit:,} bytes. Send a smaller image, or start the "
        f"service with a larger --max-body-bytes",
    )


def limit_receive(receive: Receive, limit: int) -> Receive:
    """An ASGI ``receive`` that raises 413 ``body_too_large`` once the body passes ``limit`` bytes.

    This catches bodies without Content-Length (chunked uploads) and bodies longer than they declared.
    """
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(None, limit)
        return message

    return wrapped


def check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels (decompression bombs), undecoded.

    Formats whose size cannot be read from the header pass here; the decoder checks them after decoding.

    Raises:
        ApiError: 413 ``too_many_pixels``.
    """
    size = read_image_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        width, height = size
        raise api_error(
            "too_many_pixels",
            f"the image header declares {width}×{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,}; refused before decoding. Send a smaller image, or start the service with a larger "
            f"--max-pixels",
        )


class Admission:
    """Counts requests in flight and refuses those beyond ``capacity`` (they would only wait and time out).

    Args:
        capacity: most requests in flight (worker threads plus the queue).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._count = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet released."""
        with self._lock:
            return self._count

    def enter(self) -> None:
        """Admit one request.

        Raises:
            ApiError: 503 ``overloaded`` with ``Retry-After``, when ``capacity`` requests are in flight.
        """
        with self._lock:
            if self._count >= self.capacity:
                raise api_error(
                    "overloaded",
                    f"the service is at its limit of {self.capacity} requests in flight; retry shortly (the "
                    f"limit is --workers + --queue)",
                    (("Retry-After", "1"),),
                )
            self._count += 1

    def leave(self) -> None:
        """Release one admitted request (when its work has really finished, not when it timed out)."""
        with self._lock:
            self._count -= 1
