"""Cross-request dynamic batching, in the manner of Triton's dynamic batcher, as a runner wrapper.

Many request threads call :meth:`DynamicBatcher.infer` at once. Each call is queued; one worker thread takes the
oldest call, waits at most ``max_delay_ms`` (counted from that call's arrival) for more, stops at ``max_batch``
rows, concatenates the feeds along the batch axis, runs the real backend once and hands each caller its rows of the
outputs. A caller blocks until its rows are back, so an ordinary :class:`~sgjnd.runtime.predictor.JNDPredictor`
over batched encoder and head backends shares backend batches with every concurrent request.

A call never splits: it is at most ``max_batch`` rows (the wrapper's ``max_batch_size`` tells the predictor so), and
a call that would overflow the batch being gathered opens the next one. A request's deadline, set with
:func:`request_deadline` on its thread, bounds both its wait in the queue and the wait for its rows; a call whose
caller gave up is dropped before it reaches the backend.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sgjnd.errors import BackendError, SgjndError, UsageError
from sgjnd.runtime.backends.base import ModelBackends, Runner, check_feeds
from sgjnd.spec import GraphSpec

log = logging.getLogger(__name__)

BatchObserver = Callable[[str, int, int, float], None]
"""Called after every backend run with (graph name, rows, calls merged, seconds)."""


class RequestTimeout(SgjndError):
    """The request's deadline passed before its inference was done."""

    exit_code = 6


_local = threading.local()


@contextlib.contextmanager
def request_deadline(deadline: float | None) -> Iterator[None]:
    """Bound every batched inference made on this thread by ``deadline`` (a ``time.monotonic()`` value).

    Args:
        deadline: when the request gives up; None for no bound.
    """
    previous = getattr(_local, "deadline", None)
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = previous


def _current_deadline() -> float | None:
    deadline: float | None = getattr(_local, "deadline", None)
    return deadline


@dataclass(eq=False)
class _Call:
    """One caller's feeds, waiting for their rows of the outputs."""

    feeds: Mapping[str, np.ndarray]
    rows: int
    arrived: float
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None
    abandoned: bool = False

    def finish(self, outputs: dict[str, np.ndarray] | None = None, error: BaseException | None = None) -> None:
        self.outputs, self.error = outputs, error
        self.done.set()


_SHUTDOWN = _Call(feeds={}, rows=0, arrived=0.0)
"""Queued by ``__exit__`` to stop the worker."""


class DynamicBatcher:
    """A :class:`~sgjnd.runtime.backends.base.Runner` whose ``infer`` merges concurrent calls into shared batches.

    The wrapped runner must already be entered (its owner loads and frees it); ``with batcher:`` starts and stops
    the worker thread.

    Args:
        inner: the real runner, already loaded.
        graph: the graph it runs (feeds are checked against it before they are queued).
        max_batch: most rows per backend run; 1 turns cross-request batching off (every call runs alone, row by
            row, since the predictor then sends single rows).
        max_delay_ms: how long the oldest queued call may wait for company; 0 merges only what is already queued.
        lock: held around every backend run; share one between the encoder's and the head's batcher so that one
            inference runs at a time (on a CPU, two would compete for the same cores; a TensorRT context allows one).
        observer: told about every backend run (for metrics).

    Raises:
        UsageError: ``max_batch`` is below 1 or above the artifact's own maximum, or ``max_delay_ms`` is negative.
    """

    def __init__(
        self,
        inner: Runner,
        graph: GraphSpec,
        *,
        max_batch: int = 32,
        max_delay_ms: float = 5.0,
        lock: threading.Lock | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise UsageError(f"max batch must be a positive integer, got {max_batch!r}")
        limit = inner.max_batch_size
        if limit is not None and max_batch > limit:
            raise UsageError(
                f"max batch {max_batch} exceeds the {graph.name} artifact's maximum batch {limit}; "
                f"use --max-batch {limit} or less, or re-export with a larger max batch"
            )
        if not max_delay_ms >= 0:
            raise UsageError(f"max delay must be >= 0 ms, got {max_delay_ms!r}")
        self.inner = inner
        self.graph = graph
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1e3
        self._lock = lock or threading.Lock()
        self._observer = observer
        self._queue: queue.Queue[_Call] = queue.Queue()
        self._carry: _Call | None = None
        self._worker: threading.Thread | None = None
        self._active = False

    # -- lifecycle: the worker thread ------------------------------------------------------------------------
    def __enter__(self) -> DynamicBatcher:
        self._worker = threading.Thread(target=self._serve, name=f"sgjnd-batcher-{self.graph.name}", daemon=True)
        self._worker.start()
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._active = False
        self._queue.put(_SHUTDOWN)  # wakes the worker, which fails whatever is still queued and exits
        if self._worker is not None:
            self._worker.join(timeout=10)
            self._worker = None

    # -- Runner interface -----------------------------------------------------------------------------------
    @property
    def max_batch_size(self) -> int:
        """``max_batch``: a single call may not exceed what one backend run holds."""
        return self.max_batch

    @property
    def preferred_batch_size(self) -> int:
        """The inner backend's preference, bounded by ``max_batch``."""
        return min(self.inner.preferred_batch_size, self.max_batch)

    @property
    def description(self) -> str:
        """The inner backend's label (results name the backend that really ran)."""
        return self.inner.description

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Queue ``feeds``, wait for the shared backend run, and return this call's rows of the outputs.

        Raises:
            UsageError: the feeds do not match the graph, or hold more than ``max_batch`` rows.
            BackendError: the batcher is not running, or the backend run failed.
            RequestTimeout: the deadline set with :func:`request_deadline` passed first.
        """
        if not self._active:
            raise BackendError(f"batcher for {self.graph.name} is not running: use it in a `with` block")
        rows = check_feeds(self.graph, feeds, self.max_batch)
        deadline = _current_deadline()
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise RequestTimeout(f"request deadline passed before the {self.graph.name} inference was queued")
        call = _Call(feeds=feeds, rows=rows, arrived=now)
        self._queue.put(call)
        if not call.done.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0)):
            call.abandoned = True  # the worker drops it if it has not started it yet
            raise RequestTimeout(f"request deadline passed while waiting for the {self.graph.name} inference")
        if call.error is not None:
            raise call.error
        if call.outputs is None:  # pragma: no cover - finish() always sets one of the two
            raise BackendError(f"batcher for {self.graph.name} returned nothing")
        return call.outputs

    # -- worker ----------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                self._drain()
                return
            if batch:
                self._run(batch)

    def _next(self, timeout: float | None) -> _Call | None:
        """The next call (the carried-over one first), or None when ``timeout`` passed first."""
        if self._carry is not None:
            call, self._carry = self._carry, None
            return call
        try:
            return self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _gather(self) -> list[_Call] | None:
        """Calls for one backend run: the oldest, then more until full or until the oldest waited max_delay.

        Returns None on shutdown, and an empty list when the oldest call was abandoned.
        """
        first = self._next(None)
        if first is None or first is _SHUTDOWN:
            return None
        if first.abandoned:
            first.finish(error=RequestTimeout("abandoned"))
            return []
        batch, rows = [first], first.rows
        close = first.arrived + self.max_delay
        while rows < self.max_batch:
            item = self._next(close - time.monotonic())
            if item is None:
                break
            if item is _SHUTDOWN:
                self._queue.put(_SHUTDOWN)  # seen again by the next loop, after this batch has run
                break
            if item.abandoned:
                item.finish(error=RequestTimeout("abandoned"))
                continue
            if rows + item.rows > self.max_batch:
                self._carry = item  # opens the next batch
                break
            batch.append(item)
            rows += item.rows
        return batch

    def _run(self, batch: list[_Call]) -> None:
        rows = sum(c.rows for c in batch)
        try:
            if len(batch) == 1:
                feeds: Mapping[str, np.ndarray] = batch[0].feeds
            else:
                feeds = {name: np.concatenate([c.feeds[name] for c in batch]) for name in batch[0].feeds}
            start = time.perf_counter()
            with self._lock:
                outputs = self.inner.infer(feeds)
            seconds = time.perf_counter() - start
        except SgjndError as exc:
            for call in batch:
                call.finish(error=exc)
            return
        except Exception as exc:  # a backend bug must fail its callers, not kill the worker
            log.exception("%s backend failed on a batch of %d rows", self.graph.name, rows)
            error = BackendError(f"{self.graph.name} inference failed: {type(exc).__name__}: {exc}")
            for call in batch:
                call.finish(error=error)
            return
        offset = 0
        for call in batch:
            end = offset + call.rows
            call.finish({name: np.asarray(value)[offset:end] for name, value in outputs.items()})
            offset = end
        if self._observer is not None:
            try:
                self._observer(self.graph.name, rows, len(batch), seconds)
            except Exception:  # metrics must never break inference
                log.exception("batch observer failed")

    def _drain(self) -> None:
        error = BackendError(f"batcher for {self.graph.name} stopped: the service is shutting down")
        if self._carry is not None:
            self._carry.finish(error=error)
            self._carry = None
        while True:
            try:
                call = self._queue.get_nowait()
            except queue.Empty:
                return
            if call is not _SHUTDOWN:
                call.finish(error=error)


@contextlib.contextmanager
def batched_models(
    models: ModelBackends,
    *,
    max_batch: int = 32,
    max_delay_ms: float = 5.0,
    observer: BatchObserver | None = None,
) -> Iterator[ModelBackends]:
    """The (already entered) ``models`` with both graphs behind running :class:`DynamicBatcher` s.

    The encoder's and the head's batchers share one lock, so one inference runs at a time.

    Args:
        models: both graphs, loaded.
        max_batch: most rows per backend run (1: no cross-request batching).
        max_delay_ms: longest wait of the oldest queued call for company.
        observer: told about every backend run.

    Yields:
        A :class:`ModelBackends` over the batchers; the batchers stop when the block ends.
    """
    lock = threading.Lock()
    options: dict[str, Any] = {"max_batch": max_batch, "max_delay_ms": max_delay_ms, "lock": lock, "observer": observer}
    encoder = DynamicBatcher(models.encoder, models.model.encoder_graph(), **options)
    head = DynamicBatcher(models.head, models.model.head_graph(), **options)
    with encoder, head:
        yield ModelBackends(model=models.model, encoder=encoder, head=head, weights=models.weights)
