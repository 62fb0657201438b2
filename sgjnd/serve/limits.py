"""Checks that run before a request does work: bearer token, body size, admission (concurrency), pixel count;
and the parsing of what a client sends (Content-Length, Authorization, multipart bodies).

Each check raises :class:`~sgjnd.serve.errors.ApiError` with the status and stable code of
:mod:`sgjnd.serve.errors`, and nothing else, whatever the input (a property test fuzzes them).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import Message, Receive

from sgjnd.runtime.container import read_image_size
from sgjnd.serve.errors import api_error


def check_bearer(authorization: str | None, token: str | None) -> None:
    """Refuse a request whose ``Authorization`` header does not carry ``token`` (no check when ``token`` is None).

    Raises:
        ApiError: 401 ``unauthorized``, with ``WWW-Authenticate: Bearer``.
    """
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right. surrogatepass: any str encodes.
    given_bytes = given.strip().encode("utf-8", "surrogatepass")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, token.encode("utf-8", "surrogatepass")):
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
    value = raw.strip(" \t")  # HTTP's optional whitespace only: str.strip() would also drop '\x1f' and friends
    if not _DIGITS.fullmatch(value):  # ASCII digits only: str.isdigit() also takes '²' and '٣'
        raise api_error("bad_request", f"Content-Length must be a non-negative integer, got {raw[:40]!r}")
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(limit)):  # longer than the limit: too large, without int() of a huge string
        raise _too_large(None, limit)
    if int(digits) > limit:
        raise _too_large(int(digits), limit)


_DIGITS = re.compile(r"[0-9]+")


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


class BodyBudget:
    """Bytes of request bodies held in memory at once, across requests, on the event loop.

    A request reserves its declared size (``Content-Length``, else the body limit) before its body is read; when the
    budget is spent it waits, without reading its body (TCP keeps the rest at the client), until earlier requests
    release theirs, first come first served; its deadline still runs. A request larger than the whole budget is
    admitted when nothing else is held, so it is delayed, never refused. Reservations are released when the request's
    work has finished (:meth:`release` may be called from any thread).

    Args:
        limit: the budget in bytes.
        on_change: called with the bytes held after each change (on the event loop), e.g. to set a gauge.
    """

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.held = 0
        self._on_change = on_change
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting for their reservation."""
        return sum(1 for _, f in self._waiters if not f.done())

    async def reserve(self, nbytes: int) -> None:
        """Wait until ``nbytes`` fit in the budget (in arrival order), then hold them."""
        self._loop = asyncio.get_running_loop()
        if not self._waiters and self._fits(nbytes):
            self.held += nbytes
            self._changed()
            return
        future: asyncio.Future[None] = self._loop.create_future()
        entry = (nbytes, future)
        self._waiters.append(entry)
        try:
            await future
        except BaseException:  # cancelled (deadline, disconnect): give back what was granted meanwhile
            if future.done() and not future.cancelled():
                self._release_now(nbytes)
            elif entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()
            raise

    def release(self, nbytes: int) -> None:
        """Give ``nbytes`` back; safe from worker threads."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self.held -= nbytes
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._release_now(nbytes)
        else:
            loop.call_soon_threadsafe(self._release_now, nbytes)

    def _fits(self, nbytes: int) -> bool:
        return self.held + nbytes <= self.limit or self.held == 0

    def _release_now(self, nbytes: int) -> None:
        self.held -= nbytes
        self._wake()
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.held)

    def _wake(self) -> None:
        while self._waiters:
            nbytes, future = self._waiters[0]
            if future.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            if not self._fits(nbytes):
                return
            self._waiters.popleft()
            self.held += nbytes
            future.set_result(None)
            self._changed()


MAX_MULTIPART_PARTS = 16
"""Most parts of a multipart body (one is the image)."""

MAX_PART_HEADER_BYTES = 4096
"""Largest header line of one multipart part."""


def image_from_body(content_type: str, body: bytes) -> tuple[bytes, str]:
    """The image of a request body (raw, or the field ``file`` of a multipart form) and a name for the result.

    Runs on a worker thread (never the event loop): parsing a large multipart body is CPU work in Python.

    Raises:
        ApiError: 400 ``bad_request`` for a malformed multipart body, or one without a ``file`` field.
    """
    if not content_type.lower().lstrip().startswith("multipart/form-data"):
        return body, "<request body>"
    from python_multipart.multipart import parse_options_header

    try:  # an HTTP header is latin-1; any other text (a library caller's) is not a valid Content-Type
        _, params = parse_options_header(content_type.encode("latin-1"))
    except (UnicodeEncodeError, ValueError) as exc:
        raise api_error("bad_request", f"malformed Content-Type {content_type[:80]!r}") from exc
    boundary = params.get(b"boundary")
    if not boundary:
        raise api_error("bad_request", "malformed multipart body: the Content-Type has no boundary parameter")
    parts = _multipart_parts(boundary, body)
    names: list[str] = []
    for headers, data in parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        names.append(name)
        if name == "file" and b"filename" in disposition:
            filename = disposition[b"filename"].decode("utf-8", "replace")
            return data, os.path.basename(filename.replace("\\", "/"))[:200] or "<upload>"
    raise api_error(
        "bad_request",
        f"the multipart form needs the image in a file field named 'file'; got fields {sorted(names)[:16]}",
    )


def _multipart_parts(boundary: bytes, body: bytes) -> list[tuple[dict[bytes, bytes], bytes]]:
    """The parts of a multipart body: (headers with lower-case names, data)."""
    from python_multipart.multipart import FormParserError, MultipartParser

    parts: list[tuple[dict[bytes, bytes], bytes]] = []
    headers: dict[bytes, bytes] = {}
    field: list[bytes] = []
    value: list[bytes] = []
    data: list[bytes] = []
    ended = False

    def too_many() -> None:
        if len(parts) >= MAX_MULTIPART_PARTS:
            raise api_error("bad_request", f"malformed multipart body: more than {MAX_MULTIPART_PARTS} parts")

    def header_end() -> None:
        headers[b"".join(field).lower()] = b"".join(value)
        field.clear()
        value.clear()

    def part_end() -> None:
        parts.append((dict(headers), b"".join(data)))
        headers.clear()
        data.clear()

    def end() -> None:
        nonlocal ended
        ended = True

    callbacks: Any = {
        "on_part_begin": too_many,
        "on_header_field": lambda b, start, stop: field.append(b[start:stop]),
        "on_header_value": lambda b, start, stop: value.append(b[start:stop]),
        "on_header_end": header_end,
        "on_part_data": lambda b, start, stop: data.append(b[start:stop]),
        "on_part_end": part_end,
        "on_end": end,
    }
    try:
        parser = MultipartParser(boundary, callbacks, max_header_size=MAX_PART_HEADER_BYTES)
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as exc:  # MultipartParseError, a boundary too long, ...
        raise api_error("bad_request", f"malformed multipart body: {str(exc)[:200]}") from exc
    if not ended:
        raise api_error("bad_request", "malformed multipart body: it ends before its closing boundary")
    return parts
