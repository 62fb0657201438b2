"""What a service runs and what it accepts: the model, batching, and the limits enforced before any work."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgjnd.errors import UsageError
from sgjnd.runtime.predictor import PredictConfig
from sgjnd.runtime.search import SearchConfig
from sgjnd.runtime.source import ModelSource

PROBE_CONNECTIONS = 8
"""Connections taken beyond ``max_connections`` when none is idle, for ``/healthz`` and ``/readyz`` only."""


@dataclass(frozen=True)
class ServeLimits:
    """Limits checked before a request does work; exceeding one is a 4xx/5xx JSON error, never a crash.

    Attributes:
        max_body_bytes: largest request body (413 ``body_too_large``); checked against Content-Length first, then
            while the body streams in.
        workers: threads that run requests (decode, JPEG trials, waiting for batched inference).
        queue: admitted requests that may wait for a worker thread; beyond ``workers + queue`` requests in flight,
            a request is refused at once with 503 ``overloaded`` and ``Retry-After``.
        timeout_s: a request's deadline from its arrival, body upload included (504 ``timeout``); work for a
            request that timed out stops at its next inference.
        header_timeout_s: a connection must send a complete request head (request line and headers) within this
            many seconds of opening, or of its previous response; else it is closed (408 ``request_timeout`` when
            part of a head had come, silently when nothing had). Bounds idle and slow-header (slowloris) sockets.
        keep_alive_s: an idle keep-alive connection is closed this many seconds after its last response.
        max_connections: open connections; at the limit, a new connection closes the connection that has been
            idle longest (no request in progress: waiting for a first request, a slow head or keep-alive); when
            none is idle, :data:`PROBE_CONNECTIONS` more are taken for ``/healthz`` and ``/readyz`` only (other
            paths get 503 ``overloaded``), and beyond those a connection is refused with 503 ``overloaded``.
        max_body_memory: bytes of request bodies held in memory at once (None: ``workers × max_body_bytes``). A
            request reserves its declared size before reading its body, and waits unread (within its deadline)
            while the budget is spent, so queued requests do not hold their bodies: without it, ``workers + queue``
            bodies of up to ``max_body_bytes`` each could be in memory (2.3 GB at the defaults).
    """

    max_body_bytes: int = 32 << 20
    workers: int = 8
    queue: int = 64
    timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 256
    max_body_memory: int | None = None

    @property
    def body_memory(self) -> int:
        """The effective body budget in bytes."""
        return self.max_body_memory if self.max_body_memory is not None else self.workers * self.max_body_bytes

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "workers", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        memory = self.max_body_memory
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int) or memory < 1):
            raise UsageError(f"max_body_memory must be a positive number of bytes or None, got {memory!r}")
        if isinstance(self.queue, bool) or not isinstance(self.queue, int) or self.queue < 0:
            raise UsageError(f"queue must be an integer >= 0, got {self.queue!r}")
        for name, flag in (
            ("timeout_s", "timeout"),
            ("header_timeout_s", "header timeout"),
            ("keep_alive_s", "keep-alive"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or value == float("inf"):
                raise UsageError(f"{flag} must be > 0 seconds, got {value!r}")


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``create_app`` needs; serialisable to JSON so that uvicorn worker processes can rebuild it.

    Attributes:
        backend: a registered backend name.
        location: a model directory, or a checkpoint for the torch backend.
        precision: which prepared graphs to run.
        backend_options: passed to the backend (providers, threads, device).
        predict: prediction settings (search, patches, ``max_pixels``).
        max_batch: most rows per backend run across requests; 1 turns cross-request batching off.
        max_delay_ms: how long the oldest queued inference waits for others to join its batch.
        limits: request limits.
        token: when set, every ``/v1`` and ``/metrics`` request needs ``Authorization: Bearer <token>``.
    """

    backend: str
    location: Path
    precision: str = "fp32"
    backend_options: dict[str, Any] = field(default_factory=dict)
    predict: PredictConfig = field(default_factory=PredictConfig)
    max_batch: int = 32
    max_delay_ms: float = 5.0
    limits: ServeLimits = field(default_factory=ServeLimits)
    token: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise UsageError(f"max batch must be a positive integer (1 turns batching off), got {self.max_batch!r}")
        if not self.max_delay_ms >= 0:
            raise UsageError(f"max delay must be >= 0 ms, got {self.max_delay_ms!r}")
        if self.token is not None and (not self.token or any(c.isspace() for c in self.token)):
            raise UsageError("the token must be non-empty and without whitespace (it travels in an HTTP header)")

    @property
    def source(self) -> ModelSource:
        """The model to serve, as every command names one."""
        return ModelSource(self.backend, self.location, self.precision, self.backend_options)

    def to_json(self) -> str:
        """The config as JSON (see :meth:`from_json`)."""
        data = dataclasses.asdict(self)
        data["location"] = str(self.location)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """The config :meth:`to_json` wrote."""
        data = json.loads(text)
        predict = dict(data.pop("predict"))
        search = dict(predict.pop("search"))
        search["qfs"] = tuple(search["qfs"])
        search["coarse_steps"] = tuple(search["coarse_steps"])
        options = dict(data.pop("backend_options"))
        if "providers" in options:
            options["providers"] = tuple(options["providers"])
        return cls(
            location=Path(data.pop("location")),
            predict=PredictConfig(search=SearchConfig(**search), **predict),
            limits=ServeLimits(**data.pop("limits")),
            backend_options=options,
            **data,
        )
