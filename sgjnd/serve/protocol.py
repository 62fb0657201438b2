"""The service's HTTP/1.1 connection handling: uvicorn's h11 protocol with time and count bounds per connection.

uvicorn bounds a connection's idle time only between requests (``timeout_keep_alive``), and its
``limit_concurrency`` counts idle connections, so sockets that never send a request can hold the service at its
limit and every request, health checks included, gets a plain-text 503. :class:`GuardedH11Protocol` replaces that:

- **Head deadline**: a connection must send a complete request head within ``header_timeout_s`` of opening, or of
  its previous response (an absolute deadline: trickling bytes does not extend it). Else it is closed, with a 408
  ``request_timeout`` when part of a head had come.
- **Connection limit without starvation**: at ``max_connections``, a new connection closes the connection idle
  longest (no request in progress; ones never served first). When none is idle, :data:`PROBE_CONNECTIONS` more are
  taken for ``/healthz`` and ``/readyz`` only; beyond those the connection is refused with 503 ``overloaded``.
- **Our error shape**: the responses uvicorn writes itself (400 for malformed HTTP, 503 at its limit) are written
  here as ``{"error": {"code", "message"}}`` with ``X-Error-Code``; oversized heads get 431 ``headers_too_large``.
- **Metrics**: every connection opened, refused, timed out or evicted is counted (``sgjnd_connections_*``).

uvicorn's ``limit_concurrency`` is left off: the app's admission (``--workers + --queue``) bounds the work, and the
connection limit above bounds sockets. The protocol finds the service's limits and metrics in the lifespan state
(:data:`STATE_KEY`); without them (another app) it applies the default limits with its own metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
from typing import Any

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from sgjnd.serve.config import PROBE_CONNECTIONS, ServeLimits
from sgjnd.serve.errors import ApiError, api_error
from sgjnd.serve.metrics import Metrics

STATE_KEY = "sgjnd_service"
"""Key of the :class:`~sgjnd.serve.app.Service` in the lifespan state that uvicorn hands to each connection."""

PROBE_PATHS = frozenset({"/healthz", "/readyz"})
"""Paths a connection taken beyond ``max_connections`` may request."""


def raw_error_response(err: ApiError) -> bytes:
    """``err`` as a complete HTTP/1.1 response (JSON body, ``X-Error-Code``, ``Connection: close``), as bytes.

    For responses written outside a request cycle (before a request head was parsed, or after a malformed one).
    """
    body = json.dumps(err.body()).encode()
    reason = http.HTTPStatus(err.status).phrase
    head = [
        f"HTTP/1.1 {err.status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        f"x-error-code: {err.code}",
        *(f"{name}: {value}" for name, value in err.headers),
        "connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a head deadline, an evicting connection limit and JSON error responses."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        service = app_state.get(STATE_KEY)
        self.limits: ServeLimits = service.config.limits if service is not None else ServeLimits()
        self.metrics: Metrics = service.metrics if service is not None else Metrics()
        self.timeout_keep_alive = self.limits.keep_alive_s  # type: ignore[assignment]  # call_later takes floats
        self._max_head = config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes of the next request head received so far
        self._in_request = False
        self._served = 0
        self._idle_since = self.loop.time()
        self._counted = False

    # -- opening -----------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        probe_only = False
        if self._open_count() >= self.limits.max_connections and not self._evict_one():
            if self._open_count() >= self.limits.max_connections + PROBE_CONNECTIONS:
                super().connection_made(transport)
                self._refuse(
                    "refused",
                    api_error(
                        "overloaded",
                        f"the service is at its limit of {self.limits.max_connections} open connections, all busy; "
                        f"retry shortly (the limit is --max-connections)",
                        (("Retry-After", "1"),),
                    ),
                )
                return
            probe_only = True
        super().connection_made(transport)
        self._counted = True
        self.metrics.connections_opened.inc()
        self.metrics.connections_open.add(1)
        if probe_only:
            self.metrics.connections_probe_only.inc()
            self.app = _probe_only(self.app, self.metrics)
        self._arm_head_timer()

    def _open_count(self) -> int:
        return sum(1 for c in self.connections if c.transport is not None and not c.transport.is_closing())

    def _evict_one(self) -> bool:
        """Close the connection idle longest (never-served ones first); False when every connection is busy."""
        idle = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and not c._in_request and not c.transport.is_closing()
        ]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c._served > 0, c._idle_since))
        victim._close("evicted")
        return True

    # -- reading -----------------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():  # refused or timed out: what still arrives is dropped
            return
        if not self._in_request:
            self._head_bytes += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle and self.cycle is not None:  # a request head was parsed: its cycle began
            self._in_request = True
            self._head_bytes = 0
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        self._in_request = False
        self._served += 1
        self._idle_since = self.loop.time()
        if not self.transport.is_closing():
            self._arm_head_timer()
        super().on_response_complete()  # may start a pipelined request: handle_events cancels the timer again

    # -- closing -----------------------------------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._counted:
            self._counted = False
            self.metrics.connections_open.add(-1)
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A malformed request head (uvicorn's plain-text 400): 431 for an oversized head, else 400, as JSON."""
        self._cancel_head_timer()
        if len(self.conn.trailing_data[0]) > self._max_head:
            err = api_error(
                "headers_too_large",
                f"the request head (request line and headers) is larger than {self._max_head:,} bytes; send "
                f"fewer or shorter headers",
            )
        else:
            err = api_error("bad_request", "malformed HTTP/1.1 request head; send a valid HTTP/1.1 request")
        self._refuse("bad_http", err)

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.metrics.connections_closed.inc(reason="keep_alive_timeout")
        super().timeout_keep_alive_handler()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._on_head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _on_head_timeout(self) -> None:
        self._head_timer = None
        if self._in_request or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # nothing came (a pre-connect, an idle socket): close without a word
            self._close("idle_timeout" if self._served == 0 else "keep_alive_timeout")
            return
        self._refuse(
            "header_timeout",
            api_error(
                "request_timeout",
                f"the request head did not arrive within {self.limits.header_timeout_s:g} s; send the request "
                f"line and headers at once (the limit is the service's --header-timeout)",
            ),
        )

    def _refuse(self, reason: str, err: ApiError) -> None:
        """Write ``err`` outside any request cycle, then close."""
        if not self.transport.is_closing():
            self.transport.write(raw_error_response(err))
        self.metrics.errors.inc(code=err.code)
        self._close(reason)

    def _close(self, reason: str) -> None:
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        if not self.transport.is_closing():
            self.metrics.connections_closed.inc(reason=reason)
            if self.conn.our_state not in (h11.ERROR, h11.CLOSED, h11.MUST_CLOSE):
                with contextlib.suppress(h11.LocalProtocolError):
                    self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def _probe_only(app: Any, metrics: Metrics) -> Any:
    """``app`` for a connection taken beyond the limit: health and readiness only, else 503 ``overloaded``."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") in PROBE_PATHS:
            await app(scope, receive, send)
            return
        err = api_error(
            "overloaded",
            "the service is at its connection limit (--max-connections) with every connection busy; only /healthz "
            "and /readyz are answered beyond it. Retry shortly",
            (("Retry-After", "1"),),
        )
        metrics.errors.inc(code=err.code)
        body = json.dumps(err.body()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"x-error-code", err.code.encode()),
            (b"connection", b"close"),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in err.headers]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return guarded
