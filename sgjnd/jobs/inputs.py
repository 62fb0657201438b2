"""The inputs of a batch job: which files the command-line arguments name, and reading one of them.

:func:`expand_inputs` turns command-line arguments (image files, folders searched recursively, ``.txt`` lists of
paths) into a stream of :class:`InputItem` without ever listing a whole tree in memory; :func:`check_inputs` and
:func:`first_or_refuse` refuse arguments that cannot start a run. :func:`read_input` reads one input file's bytes,
refusing anything that is not a regular file.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sgjnd.errors import UsageError
from sgjnd.fileio import file_kind, image_bytes_limit, read_regular_file

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
