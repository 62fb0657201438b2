"""File helpers: atomic writes, output checks, bounded reads and content hashes. Imports nothing but errors.

Every file sgjnd writes at a path the user names goes through :func:`check_output_file` (before any work) and
:func:`write_atomic` (or :class:`~sgjnd.jobs.results_log.ResultLog` for results logs): an output must be a regular
file or not exist, and an existing one is replaced only when it is empty or recognisably ours; anything else is
refused with a :class:`~sgjnd.errors.UsageError` and left byte for byte as it was. Inputs are read with
:func:`read_regular_file`: regular files only, never more than a stated number of bytes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sgjnd.errors import ImageError, UsageError

_CHUNK = 1 << 20


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()
"""The mode a plain open() gives new files; read once at import, since os.umask is process-wide and racy."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_kind(mode: int) -> str:
    """A file type in words (``a folder``, ``a FIFO (named pipe)``, ``a character device``, ...)."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "a special file"


_SYSTEM_FOLDERS = ("/dev/", "/proc/", "/sys/")


def _system_path(path: Path) -> str | None:
    """The system location (``/dev/stdout``, ``/proc/self/fd/1``) that ``path`` is or links to, else None.

    Such a path may point at a regular file (stdout redirected to one) but is never ours to replace.
    """
    current = os.path.abspath(path)
    for _ in range(40):
        if current.startswith(_SYSTEM_FOLDERS):
            return current
        if not os.path.islink(current):
            return None
        current = os.path.abspath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def check_output_file(path: Path, *, what: str, ours: Callable[[Path], bool] | None = None) -> None:
    """Refuse an output path that sgjnd must not write: call it before any work, so a refusal costs nothing.

    A missing file (in a folder that exists or can be made) and an empty regular file are fine. An existing
    non-empty regular file is fine only when ``ours`` recognises it as a file sgjnd wrote (an earlier run's output,
    to be replaced or resumed). Links are followed: ``/dev/stdout`` is judged by what it points to.

    Args:
        path: the output the user named.
        what: what is written there, in words (``results file``, ``JSON report``), quoted in the message.
        ours: tells whether an existing non-empty file is one of ours; None: no existing content is ours.

    Raises:
        UsageError: the path is a folder, FIFO, device or socket, a link to one, a dangling link, or a file that is
            not ours; the file is left untouched.
    """
    system = _system_path(path)
    if system is not None:
        raise UsageError(
            f"{path} is a system file ({system}), not a regular file; expected the path of a {what} to write. "
            f"Choose a file path"
        )
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise UsageError(
                f"{path} is a link to a missing file; expected the path of a {what} to write. Remove the link or "
                f"choose another path"
            ) from None
        _check_parent(path, what)
        return
    except OSError as exc:
        raise UsageError(f"cannot use {path} as the {what}: {exc.strerror or exc}; choose another path") from exc
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(
            f"{path} is {file_kind(info.st_mode)}, not a regular file; expected the path of a {what} to write "
            f"(outputs are regular files). Choose a file path"
        )
    if info.st_size == 0:
        return
    if ours is not None:
        try:
            if ours(path):
                return
        except (OSError, ValueError):
            pass
    raise UsageError(
        f"{path} exists and is not a {what} written by sgjnd ({info.st_size:,} bytes); it was left unchanged. "
        f"Remove it or choose another path"
    )


def _check_parent(path: Path, what: str) -> None:
    parent = Path(path).parent
    for folder in (parent, *parent.parents):
        try:
            info = os.stat(folder)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(f"cannot use {path} as the {what}: {exc.strerror or exc}; choose another path") from exc
        if not stat.S_ISDIR(info.st_mode):
            raise UsageError(
                f"cannot write the {what} {path}: {folder} is {file_kind(info.st_mode)}, not a folder. "
                f"Choose another path"
            )
        return


def check_output_dir(path: Path, *, what: str) -> None:
    """Refuse an output folder that exists as something else (a file, a FIFO, a device).

    Raises:
        UsageError: ``path`` exists and is not a folder (or a link to one).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        _check_parent(Path(path) / "x", what)
        return
    except OSError as exc:
        raise UsageError(f"cannot use {path} as the {what}: {exc.strerror or exc}; choose another path") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(
            f"{path} is {file_kind(info.st_mode)}, not a folder; expected the {what} (a folder to write into). "
            f"Choose another path"
        )


OursTest = Callable[[Path], bool]
"""Whether an existing file is one sgjnd wrote (so a command may replace it)."""


def check_output_files(folder: Path, files: Mapping[str, OursTest], *, what: str) -> None:
    """Refuse an output folder that holds, under a name the command writes, a file sgjnd did not write.

    The folder itself is checked by :func:`check_output_dir`; this checks what the command would replace inside it:
    each of ``files`` (name -> ``ours`` test) that exists must be a regular file that passes its test. Nothing is
    written or changed when one does not.

    Raises:
        UsageError: naming every such file, and what to do.
    """
    foreign: list[str] = []
    for name, ours in files.items():
        path = Path(folder) / name
        if not os.path.lexists(path):
            continue
        try:
            regular = stat.S_ISREG(os.lstat(path).st_mode)
            if not regular or not ours(path):
                foreign.append(name)
        except OSError:
            foreign.append(name)
    if foreign:
        raise UsageError(
            f"{folder} holds {', '.join(foreign)}, which this command writes, but sgjnd did not write "
            f"{'it' if len(foreign) == 1 else 'them'}: left as {'it is' if len(foreign) == 1 else 'they are'}. "
            f"Choose another {what}, or move {'it' if len(foreign) == 1 else 'them'} away"
        )


def matplotlib_png(path: Path) -> bool:
    """An ``ours`` test for plots: a PNG whose text chunks name Matplotlib as its software (how sgjnd draws)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"Matplotlib" in head


def jsonl_of_objects(keys: tuple[str, ...]) -> OursTest:
    """An ``ours`` test: the first line of the file is a JSON object with all of ``keys`` (or the file is empty)."""

    def test(path: Path) -> bool:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20)
        if not first.strip():
            return os.stat(path).st_size == 0
        try:
            data = json.loads(first)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return False
        return isinstance(data, dict) and all(k in data for k in keys)

    return test


def is_json_object_file(path: Path, keys: tuple[str, ...] = (), *, max_bytes: int = 64 << 20) -> bool:
    """True when ``path`` holds one JSON object (at most ``max_bytes``) with all of ``keys``: an ``ours`` test."""
    if os.stat(path).st_size > max_bytes:
        return False
    try:
        data = json.loads(Path(path).read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(data, dict) and all(key in data for key in keys)


def starts_with(prefix: bytes) -> Callable[[Path], bool]:
    """An ``ours`` test: the file's first bytes are ``prefix`` (a CSV header, a magic number)."""

    def test(path: Path) -> bool:
        with open(path, "rb") as fh:
            return fh.read(len(prefix)) == prefix

    return test


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and a crash leaves the previous file intact. An existing ``path``
    must be a regular file (or a link to one): a folder, FIFO, device (``/dev/full``, ``/dev/stdout``) or socket is
    refused, never replaced.

    Raises:
        UsageError: ``path`` is not a regular file, or the write failed (disk full, permissions); the previous file
            is intact and no temporary file is left.
    """
    path = Path(path)
    system = _system_path(path)
    if system is not None:
        raise UsageError(f"{path} is a system file ({system}), not a regular file; refusing to write to it")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}; check the path") from exc
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is {file_kind(info.st_mode)}, not a regular file; refusing to write to it")
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        hint = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check the path and permissions"
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}; {hint}, then run again") from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


IMAGE_BYTES_PER_PIXEL = 8
"""The most file bytes per pixel an image we decode can need: 16-bit RGBA stored uncompressed."""

IMAGE_BYTES_SLACK = 16 << 20
"""Bytes allowed on top of the pixels: headers, metadata (EXIF, ICC profiles), padding."""


def image_bytes_limit(max_pixels: int) -> int:
    """The largest image file read for a pixel limit: a file above it cannot be a genuine image within the limit."""
    return IMAGE_BYTES_PER_PIXEL * max(int(max_pixels), 0) + IMAGE_BYTES_SLACK


def read_regular_file(path: Path, *, max_bytes: int, what: str = "image file") -> bytes:
    """The bytes of a regular file, read without ever holding more than ``max_bytes`` + 1 of them.

    The file is opened without blocking (a FIFO with no writer cannot hang the read) and checked with ``fstat`` on
    the open descriptor, so a link to ``/dev/zero`` or a FIFO is refused before anything is read.

    Raises:
        ImageError: the file is missing, not a regular file, unreadable, or larger than ``max_bytes``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise ImageError(f"{path}: a link to a missing file; expected the path of an {what}") from exc
        raise ImageError(f"{path}: no such file; expected the path of an {what}") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{path} is not a file (a directory?); expected the path of an {what}") from exc
    except OSError as exc:
        raise ImageError(f"{path} cannot be read: {exc.strerror or exc}; check its permissions") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ImageError(f"{path} is not a file (a directory?); expected the path of an {what}")
        raise ImageError(
            f"{path} is {file_kind(mode)}, not a regular file; expected the path of an {what} "
            f"(special files are not read)"
        )
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise ImageError(f"{path} cannot be read: {exc.strerror or exc}; check its permissions") from exc
    if len(data) > max_bytes:
        raise ImageError(
            f"{path}: larger than the limit of {max_bytes:,} bytes for an {what} (refused before reading it all)"
        )
    return data


def atomic_output(path: Path) -> Path:
    """A temporary path beside ``path`` for tools that write files themselves; pair with ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def read_json(path: Path, *, missing: str, kind: str = "JSON file") -> Any:
    """The JSON document at ``path``.

    Raises:
        UsageError: ``missing`` when there is no file; "``path`` is not a readable ``kind``" when it cannot be read or
            parsed.
    """
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise UsageError(missing) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not a readable {kind} ({exc})") from exc
