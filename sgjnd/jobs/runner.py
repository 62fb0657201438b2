"""The runner of a batch job: stream input items through worker threads and yield one outcome per item, in order.

:func:`run_jobs` reads, hashes and processes items on a pool of worker threads with a bounded window of items in
flight, and yields an :class:`Outcome` per item in input order. A per-file :class:`~sgjnd.errors.SgjndError` becomes a
failed outcome (with its reason) and the run goes on. :func:`serialize_backends` lets worker threads share one model:
inference runs one call at a time while the other threads decode and make JPEG trials (OpenCV releases the GIL), so
the backend stays busy. :class:`PredictJob` is the job of ``sgjnd predict``.

Memory is bounded by the window (``workers + prefetch`` images in flight) plus a 16-byte key per finished file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from sgjnd.errors import ImageError, SgjndError, UsageError
from sgjnd.fileio import image_bytes_limit, sha256_bytes
from sgjnd.jobs.inputs import DEFAULT_INPUT_BYTES, InputItem, read_input
from sgjnd.jobs.results_log import DoneSet, item_key
from sgjnd.runtime.backends.base import ModelBackends, Runner
from sgjnd.runtime.predictor import JNDPredictor, JNDResult

log = logging.getLogger(__name__)

INTERNAL_ERROR = "InternalError"
"""``error_type`` recorded for an exception that is not an SgjndError: a bug in sgjnd, to be reported."""

Status = Literal["done", "skipped", "failed"]


class Skip(Exception):
    """Raised by :meth:`Job.prepare` to skip an item without reading it (e.g. its output exists)."""


class Job(Protocol):
    """What :func:`run_jobs` does with each item."""

    def prepare(self, item: InputItem) -> Any:
        """Called in the main thread, in input order, before the item is read; cheap.

        Raise :class:`Skip` to skip the item, or an SgjndError to fail it. The return value goes to ``process``.
        """
        ...

    def process(self, item: InputItem, data: bytes, prepared: Any) -> tuple[dict[str, Any], Any]:
        """Called on a worker thread with the file's bytes; returns (the JSON record, the result object)."""
        ...


@dataclass(frozen=True)
class Outcome:
    """What happened to one item.

    Attributes:
        item: the input.
        status: done, skipped (already in the log, a duplicate, or skipped by the job) or failed.
        record: the JSON record to log: the job's record, or ``error``/``error_type``/``exit_code`` for a failure;
            both with ``source``, ``path`` (absolute) and ``sha256`` (None when the file could not be read).
        value: the job's result object (done only).
        reason: why the item was skipped or failed, in words.
        exit_code: the failure's CLI exit code (failed only).
    """

    item: InputItem
    status: Status
    record: dict[str, Any] | None = None
    value: Any = None
    reason: str = ""
    exit_code: int = 0

    @property
    def key(self) -> tuple[str, str | None]:
        """(path, sha256) under which the outcome is recorded."""
        sha = None if self.record is None else self.record.get("sha256")
        return item_key(self.item.path), sha


@dataclass
class Tally:
    """Counts of outcomes and the run's time; ``summary()`` is the closing line."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    exit_codes: set[int] = field(default_factory=set)
    start: float = field(default_factory=time.perf_counter)

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        if outcome.status == "done":
            self.done += 1
        elif outcome.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            self.exit_codes.add(outcome.exit_code)

    @property
    def seconds(self) -> float:
        """Wall time since the tally was made."""
        return time.perf_counter() - self.start

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; the failures' exit code when they share one; 1 when they differ."""
        if not self.failed:
            return 0
        return next(iter(self.exit_codes)) if len(self.exit_codes) == 1 else 1

    def summary(self) -> str:
        """``12 done, 3 skipped, 1 failed in 4.2 s``."""
        return f"{self.done} done, {self.skipped} skipped, {self.failed} failed in {self.seconds:.1f} s"


@dataclass(frozen=True)
class JobConfig:
    """How a batch runs.

    Attributes:
        workers: threads that read, decode, make JPEG trials and run the model (inference is serialised).
        prefetch: items read ahead beyond one per worker; with ``workers`` it bounds the images held in memory.
    """

    workers: int = 2
    prefetch: int = 2

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UsageError(f"workers must be at least 1, got {self.workers}")
        if self.prefetch < 0:
            raise UsageError(f"prefetch must be >= 0, got {self.prefetch}")


def run_jobs(
    items: Iterable[InputItem],
    job: Job,
    *,
    config: JobConfig | None = None,
    done: Callable[[str, str | None], bool] | None = None,
) -> Generator[Outcome, None, None]:
    """Process ``items`` with ``job`` on worker threads and yield one outcome per item, in input order.

    Each item is read once and hashed (sha256); an item whose (path, hash) ``done`` reports finished, or that
    already appeared earlier in this run, is skipped. SgjndErrors become failed outcomes naming the file; any other
    exception is logged with its traceback and recorded as ``InternalError`` (a bug), and the run goes on.

    Args:
        items: the inputs, consumed lazily.
        job: what to do with each item.
        config: threads and read-ahead; None uses :class:`JobConfig`'s defaults.
        done: tells whether (path, sha256) is already finished (a
            :meth:`~sgjnd.jobs.results_log.ResultLog.is_done`); None: nothing is.

    Yields:
        The outcomes, in the order of ``items``.
    """
    cfg = config or JobConfig()
    seen = DoneSet()
    is_done = done or (lambda path, sha: False)
    iterator = iter(items)
    window: deque[Future[Outcome]] = deque()
    pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="sgjnd-job")

    def submit_next() -> bool:
        item = next(iterator, None)
        if item is None:
            return False
        try:
            prepared = job.prepare(item)
        except Skip as exc:
            window.append(_resolved(Outcome(item, "skipped", reason=str(exc))))
        except SgjndError as exc:
            window.append(_resolved(_failed(item, exc, None)))
        else:
            window.append(pool.submit(_run_one, job, item, prepared, is_done))
        return True

    try:
        while len(window) < cfg.workers + cfg.prefetch and submit_next():
            pass
        while window:
            outcome = window.popleft().result()
            submit_next()
            if outcome.status != "skipped" and not seen.add(*outcome.key):
                outcome = Outcome(outcome.item, "skipped", reason="listed more than once; processed once")
            yield outcome
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _resolved(outcome: Outcome) -> Future[Outcome]:
    future: Future[Outcome] = Future()
    future.set_result(outcome)
    return future


def _run_one(job: Job, item: InputItem, prepared: Any, is_done: Callable[[str, str | None], bool]) -> Outcome:
    path = item_key(item.path)
    try:
        data = read_input(item.path, getattr(job, "max_input_bytes", DEFAULT_INPUT_BYTES))
    except ImageError as exc:
        if is_done(path, None):
            return Outcome(item, "skipped", reason="already recorded")
        return _failed(item, exc, None)
    sha = sha256_bytes(data)
    if is_done(path, sha):
        return Outcome(item, "skipped", reason="already recorded")
    try:
        record, value = job.process(item, data, prepared)
    except SgjndError as exc:
        return _failed(item, name_source(exc, item.path), sha)
    except Exception as exc:  # a bug: keep the batch going, but say so loudly
        log.exception("internal error on %s", item.path)
        return _failed(item, exc, sha)
    return Outcome(item, "done", {"source": str(item.path), "path": path, "sha256": sha, **record}, value)


def error_fields(exc: BaseException, where: str = "") -> dict[str, Any]:
    """The ``error``, ``error_type`` and ``exit_code`` of a failure, as results files (and services) report them.

    Args:
        exc: an SgjndError, or any other exception (reported as ``InternalError``, a bug, exit code 1).
        where: what failed (a path), prefixed to an internal error's message.
    """
    if isinstance(exc, SgjndError):
        return {"error": str(exc), "error_type": type(exc).__name__, "exit_code": exc.exit_code}
    prefix = f"{where}: " if where else ""
    message = f"{prefix}internal error (a bug in sgjnd; please report it): {type(exc).__name__}: {exc}"
    return {"error": message, "error_type": INTERNAL_ERROR, "exit_code": 1}


def _failed(item: InputItem, exc: BaseException, sha: str | None) -> Outcome:
    fields = error_fields(exc, str(item.path))
    record = {"source": str(item.path), "path": item_key(item.path), "sha256": sha, **fields}
    return Outcome(item, "failed", record, reason=fields["error"], exit_code=fields["exit_code"])


_BYTES_LABELS = ("the image bytes", "image bytes")


def name_source(exc: SgjndError, path: Path) -> SgjndError:
    """``exc`` with a message naming ``path`` where it names the decoded bytes (the run decodes bytes it read)."""
    message = str(exc)
    for label in _BYTES_LABELS:
        if message.startswith(label):
            renamed = type(exc)(str(path) + message[len(label) :])
            renamed.__cause__ = exc.__cause__
            return renamed
    return exc


class PredictJob:
    """The job of ``sgjnd predict``: decode the bytes and predict the JND; the record is ``JNDResult.to_dict()``.

    Args:
        predictor: the predictor; shared by the worker threads (make it over :func:`serialize_backends`).
    """

    def __init__(self, predictor: JNDPredictor) -> None:
        self.predictor = predictor
        self.max_input_bytes = image_bytes_limit(predictor.config.max_pixels)
        """The largest input file read: no genuine image within the pixel limit is larger."""

    def prepare(self, item: InputItem) -> None:
        """Nothing to plan."""

    def process(self, item: InputItem, data: bytes, prepared: Any) -> tuple[dict[str, Any], JNDResult]:
        """Predict one image from its bytes."""
        result = self.predictor.predict(data, source=str(item.path))
        return result.to_dict(), result


# -- sharing one model between threads -----------------------------------------------------------------------------


class _Serialized:
    """A loaded runner whose ``infer`` runs under a lock shared with its sibling graph (a Runner by composition)."""

    def __init__(self, inner: Runner, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock

    @property
    def max_batch_size(self) -> int | None:
        return self._inner.max_batch_size

    @property
    def preferred_batch_size(self) -> int:
        return self._inner.preferred_batch_size

    @property
    def description(self) -> str:
        return self._inner.description

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            return self._inner.infer(feeds)


def serialize_backends(models: ModelBackends) -> ModelBackends:
    """The same (already entered) model, safe to call from several threads: one inference at a time.

    Not every backend allows concurrent calls (a TensorRT execution context does not), and on a CPU two concurrent
    inferences only compete for the same cores; the other threads meanwhile decode and make JPEG trials.
    """
    lock = threading.Lock()
    return ModelBackends(
        model=models.model,
        encoder=_Serialized(models.encoder, lock),
        head=_Serialized(models.head, lock),
        weights=models.weights,
    )
