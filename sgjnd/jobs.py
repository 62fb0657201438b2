"""Batch jobs: expand inputs, stream them through worker threads, and keep a JSONL result log that survives kills.

The pieces, each usable alone:

- :func:`expand_inputs` turns command-line arguments (image files, folders searched recursively, ``.txt`` lists of
  paths) into a stream of :class:`InputItem` without ever listing a whole tree in memory.
- :class:`ResultLog` is an append-only JSON-lines file. Each record is one complete line written with a single
  ``os.write`` on an ``O_APPEND`` descriptor, so a kill leaves at most one torn last line, which the next open
  detects and cuts off. It remembers which (path, sha256) pairs are finished, so a resumed run skips them.
- :func:`run_jobs` reads, hashes and processes items on a pool of worker threads with a bounded window of items in
  flight, and yields an :class:`Outcome` per item in input order. A per-file :class:`~sgjnd.errors.SgjndError`
  becomes a failed outcome (with its reason) and the run goes on.
- :func:`serialize_backends` lets worker threads share one model: inference runs one call at a time while the other
  threads decode and make JPEG trials (OpenCV releases the GIL), so the backend stays busy.

Memory is bounded by the window (``workers + prefetch`` images in flight) plus a 16-byte key per finished file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from sgjnd.errors import ImageError, SgjndError, UsageError
from sgjnd.fileio import check_output_file, file_kind, image_bytes_limit, read_regular_file, sha256_bytes
from sgjnd.runtime.backends.base import ModelBackends, Runner
from sgjnd.runtime.predictor import JNDPredictor, JNDResult

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff",
        ".avif", ".heic", ".heif", ".jp2", ".j2k", ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras",
    }
)  # fmt: skip
"""File suffixes (lower case) picked up when searching a folder; files named explicitly are always taken."""

LIST_SUFFIX = ".txt"
"""An argument with this suffix is a list of paths, one per line."""

INTERNAL_ERROR = "InternalError"
"""``error_type`` recorded for an exception that is not an SgjndError: a bug in sgjnd, to be reported."""

Status = Literal["done", "skipped", "failed"]


# -- inputs --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputItem:
    """One file to process.

    Attributes:
        path: the file, as given or as found (relative paths stay relative to the working directory).
        root: the folder argument it was found in; None for a file named directly or in a list.
    """

    path: Path
    root: Path | None = None


def is_list_file(path: Path) -> bool:
    """True when ``path`` names a list of paths (a ``.txt`` file) rather than an image."""
    return path.suffix.lower() == LIST_SUFFIX


def check_inputs(args: Sequence[Path]) -> None:
    """Refuse arguments that cannot start a run: none at all, or a list file that cannot be read.

    Missing image files are not refused here: each becomes a failed item of the run, with its reason.

    Raises:
        UsageError: no arguments, or a ``.txt`` list is missing or is not a file.
    """
    if not args:
        raise UsageError("no inputs: give image files, folders or .txt lists of paths")
    for arg in args:
        if is_list_file(arg) and not arg.is_file():
            try:
                mode = os.stat(arg).st_mode
            except OSError:
                mode = None
            if mode is None:
                raise UsageError(f"{arg}: no such list file; expected a .txt file with one image path per line")
            raise UsageError(
                f"{arg} is {file_kind(mode)}, not a regular file; expected a .txt file with one image path per line"
            )


def expand_inputs(args: Iterable[Path], *, exclude: Iterable[Path] = ()) -> Iterator[InputItem]:
    """Stream the files that ``args`` name, in a deterministic order.

    An image file is taken as is (even a missing one, which then fails with its reason). A folder is searched
    recursively in sorted order for files with an :data:`IMAGE_SUFFIXES` suffix (any case); hidden entries (names
    starting with ``.``, such as the temporary files of atomic writes) and symbolic links to folders are skipped. A
    ``.txt`` file is a list: one path per line, blank lines and lines starting with ``#`` ignored, relative paths
    taken relative to the list's folder; an entry may be a folder.

    Args:
        args: files, folders and lists, in order.
        exclude: paths never to yield or enter (the run's own outputs).

    Yields:
        One item per file.
    """
    skip = {key for p in exclude for key in (_entry_key(Path(p)), os.path.realpath(p))}
    for arg in args:
        if is_list_file(arg) and arg.is_file():
            for entry in read_list(arg):
                yield from _expand_one(entry, skip)
        else:
            yield from _expand_one(arg, skip)


def first_or_refuse(items: Iterator[InputItem], args: Sequence[Path]) -> Iterator[InputItem]:
    """``items`` unchanged, after checking that it yields at least one item (it reads the first one ahead).

    Raises:
        UsageError: the arguments name no file at all (empty folders or lists, or none with an image suffix).
    """
    first = next(items, None)
    if first is None:
        names = ", ".join(str(a) for a in args[:3]) + (", ..." if len(args) > 3 else "")
        raise UsageError(
            f"no image files found in {names}: folders are searched for .jpg, .png, .webp, .tif, .bmp, .gif and the "
            f"other image suffixes (hidden files skipped); name a file directly to take it whatever its suffix"
        )
    return itertools.chain([first], items)


def read_list(path: Path) -> Iterator[Path]:
    """The paths of a ``.txt`` list, read line by line (see :func:`expand_inputs`)."""
    base = path.parent
    # surrogateescape: a path that is not valid UTF-8 still names its file.
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            text = line.strip()
            if text and not text.startswith("#"):
                entry = Path(text)
                yield entry if entry.is_absolute() else base / entry


def _expand_one(path: Path, skip: set[str]) -> Iterator[InputItem]:
    if _entry_key(path) in skip:
        return
    if path.is_dir():
        for found in _walk(path, skip):
            yield InputItem(found, root=path)
    else:
        yield InputItem(path)


def _walk(root: Path, skip: set[str]) -> Iterator[Path]:
    """Image files under ``root``, depth first, each folder's entries sorted by name; one folder listed at a time."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            # An unreadable folder is reported as a failed item rather than silently skipped.
            log.warning("cannot list %s: %s", folder, exc.strerror or exc)
            yield folder
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if _entry_key(path) in skip:
                continue
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(path)
            elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and not entry.is_dir():
                # A special file (FIFO, device, socket, dangling link) with an image name is yielded, not skipped
                # in silence: reading it fails that item with the reason, without reading (or hanging on) it.
                yield path
        stack.extend(reversed(subfolders))  # popped in sorted order


def _entry_key(path: Path) -> str:
    """The real location of a directory entry: its folder resolved, its own name kept (a link is not followed)."""
    absolute = Path(os.path.abspath(path))
    return os.path.join(os.path.realpath(absolute.parent), absolute.name)


def item_key(path: Path) -> str:
    """The path under which a file is recorded in a result log: absolute and normalised, links not resolved."""
    return os.path.abspath(path)


# -- the result log ------------------------------------------------------------------------------------------------


class DoneSet:
    """Which (path, sha256) pairs are finished, at 16 bytes per pair (a keyed digest, not the strings)."""

    def __init__(self) -> None:
        self._keys: set[bytes] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    @staticmethod
    def _digest(path: str, sha256: str | None) -> bytes:
        return hashlib.blake2b(f"{path}\0{sha256 or '-'}".encode("utf-8", "surrogateescape"), digest_size=16).digest()

    def __contains__(self, key: tuple[str, str | None]) -> bool:
        return self._digest(*key) in self._keys

    def add(self, path: str, sha256: str | None) -> bool:
        """Mark a pair done; False when it already was."""
        digest = self._digest(path, sha256)
        with self._lock:
            if digest in self._keys:
                return False
            self._keys.add(digest)
            return True


class ResultLog:
    """An append-only JSON-lines file of per-file records that a killed run can resume from.

    Only a results log of ours is opened (see :func:`is_results_log`): any other existing file, and anything that is
    not a regular file, is refused with a UsageError and left untouched. Opening reads the existing records, cuts off
    a torn last line (a line without its newline, left by a kill or a
    full disk), and remembers each record's ``path`` and ``sha256``. A failed record counts as finished unless
    ``retry_failed``. An exclusive lock (``flock``) keeps a second run from appending to the same file.

    Args:
        path: the ``.jsonl`` file; created (with its folder) if missing.
        fsync_every: call ``fsync`` after this many records; 0 syncs only when closing.
        retry_failed: do not count failed records as finished, so that their files are tried again.
    """

    def __init__(self, path: Path, *, fsync_every: int = 1, retry_failed: bool = False) -> None:
        if fsync_every < 0:
            raise UsageError(f"fsync_every must be >= 0 (0: only at the end), got {fsync_every}")
        self.path = Path(path)
        self.fsync_every = fsync_every
        self.retry_failed = retry_failed
        self.done = DoneSet()
        self.loaded = 0
        """Records read from the existing file."""
        self.torn_bytes = 0
        """Bytes of a torn last line that were cut off when opening."""
        self.unreadable = 0
        """Complete lines that were not JSON objects with a ``path`` (left in place, ignored)."""
        self._fd: int | None = None
        self._unsynced = 0

    def __enter__(self) -> ResultLog:
        if self.path.is_dir():
            raise UsageError(f"{self.path} is a folder; expected the path of a .jsonl results file")
        check_results_log(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            # O_NONBLOCK: a FIFO swapped in after the check cannot hang the open; fstat below refuses it.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o644)
            if created:
                _fsync_folder(self.path.parent)  # the new name survives a power cut, not only a kill
        except OSError as exc:
            raise UsageError(f"cannot open {self.path} for appending: {exc.strerror or exc}; check the path") from exc
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise UsageError(
                    f"{self.path} is {file_kind(mode)}, not a regular file; expected the path of a .jsonl results file"
                )
            os.set_blocking(fd, True)
            _lock_exclusive(fd, self.path)
            self._load(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._unsynced:
                os.fsync(fd)
        finally:
            os.close(fd)

    def is_done(self, path: str, sha256: str | None) -> bool:
        """True when a record for this file content is already in the log."""
        return (path, sha256) in self.done

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line, with a single ``os.write`` (retried only for the rest of a short write).

        Raises:
            UsageError: the log is not open, or the record has no ``path``.
            OSError: the disk refused the write (full, gone); the line may then be torn and is cut off on resume.
        """
        if self._fd is None:
            raise UsageError(f"{self.path} is not open: use the ResultLog in a `with` block")
        if "path" not in record:
            raise UsageError("a result record needs a 'path' field")
        line = (json.dumps(json_safe(record), allow_nan=False) + "\n").encode()
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._unsynced += 1
        if self.fsync_every and self._unsynced >= self.fsync_every:
            os.fsync(self._fd)
            self._unsynced = 0
        if "error" not in record or not self.retry_failed:
            self.done.add(str(record["path"]), record.get("sha256"))

    def _load(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        good_end = 0
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # torn: written only in part when the run died
                good_end += len(line)
                self._remember(line)
        if good_end < size:
            self.torn_bytes = size - good_end
            log.warning("%s: cut off a torn last line (%d bytes) left by a killed run", self.path, self.torn_bytes)
            os.ftruncate(fd, good_end)
            os.fsync(fd)

    def _remember(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            self.unreadable += 1
            log.warning("%s: ignoring a line that is not a result record: %.60r", self.path, line)
            return
        self.loaded += 1
        if "error" in record and self.retry_failed:
            return
        sha = record.get("sha256")
        self.done.add(record["path"], sha if isinstance(sha, str) else None)


RESULTS_LOG_WHAT = "results file (.jsonl)"

_FIRST_LINE_LIMIT = 64 << 20
"""The longest first line read to recognise a results log (a record with every patch of a large image fits)."""

_TORN_FIRST_RECORD = b'{"source": '
"""How every record of ours starts: a file with only part of its first line is ours when it starts so."""


def is_results_log(path: Path) -> bool:
    """True when ``path`` is a results log sgjnd wrote, which a run may resume (and cut a torn last line from).

    Ours: an empty file; a file whose first line is a JSON object with ``path`` and ``sha256`` (every record
    :func:`run_jobs` makes has both); or a file holding only part of such a first line (``{"source": ...``, left by
    a run killed while writing its first record). Anything else (an image, a CSV, someone's notes) is not.
    """
    with open(path, "rb") as fh:
        first = fh.readline(_FIRST_LINE_LIMIT)
    if not first:
        return True
    if not first.endswith(b"\n"):
        return len(first) < _FIRST_LINE_LIMIT and first.startswith(_TORN_FIRST_RECORD)
    try:
        record = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and isinstance(record.get("path"), str) and "sha256" in record


def check_results_log(path: Path) -> None:
    """Refuse a ``--out`` that is not a results log of ours (or missing, or empty), before any work.

    Raises:
        UsageError: the path is a folder, FIFO, device, or a file that is not a results log; it is left untouched.
    """
    check_output_file(path, what=RESULTS_LOG_WHAT, ours=is_results_log)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _lock_exclusive(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; a second writer is the user's problem
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        raise UsageError(
            f"{path} is locked by another running sgjnd job; wait for it to finish or choose another --out"
        ) from exc


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None and numpy scalars as Python numbers, so it is strict JSON."""
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


# -- running -------------------------------------------------------------------------------------------------------


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
        done: tells whether (path, sha256) is already finished (a :meth:`ResultLog.is_done`); None: nothing is.

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


DEFAULT_INPUT_BYTES = image_bytes_limit(100_000_000)
"""The largest input file read when a job states no limit (the bytes of the default pixel limit)."""


def read_input(path: Path, max_bytes: int = DEFAULT_INPUT_BYTES) -> bytes:
    """The bytes of an input file, with the messages :func:`~sgjnd.runtime.decode.decode_image` gives for paths.

    Only regular files are read (a FIFO, a device such as a link to ``/dev/zero``, a socket is refused before any
    byte is read), and never more than ``max_bytes``.

    Raises:
        ImageError: the file is missing, not a regular file, unreadable, or larger than ``max_bytes``.
    """
    return read_regular_file(path, max_bytes=max_bytes)


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
