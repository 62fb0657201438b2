"""The result log of a batch job: an append-only JSON-lines file that survives kills, so a run can resume.

:class:`ResultLog` writes each record as one complete line with a single ``os.write`` on an ``O_APPEND`` descriptor,
so a kill leaves at most one torn last line, which the next open detects and cuts off. It remembers which
(path, sha256) pairs are finished (:class:`DoneSet`, 16 bytes per file), so a resumed run skips them.
:func:`is_results_log` and :func:`check_results_log` tell a results log of ours from any other file, which is never
overwritten; :func:`json_safe` makes a record strict JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sgjnd.errors import UsageError
from sgjnd.fileio import check_output_file, file_kind

log = logging.getLogger(__name__)


def item_key(path: Path) -> str:
    """The path under which a file is recorded in a result log: absolute and normalised, links not resolved."""
    return os.path.abspath(path)


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
    :func:`~sgjnd.jobs.runner.run_jobs` makes has both); or a file holding only part of such a first line
    (``{"source": ...``, left by a run killed while writing its first record). Anything else (an image, a CSV,
    someone's notes) is not.
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
