"""The `sgjnd` command line: a thin shell over the library, one module per subcommand in sgjnd.commands."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from sgjnd import __version__
from sgjnd.errors import SgjndError
from sgjnd.runtime.opencv_log import quiet_opencv

COMMANDS: tuple[str, ...] = (
    "info",
    "init",
    "label",
    "train",
    "evaluate",
    "predict",
    "compress",
    "serve",
    "export",
    "calibrate",
    "build",
    "inspect",
    "compare",
    "bench",
)
"""Subcommands in pipeline order; each is the module sgjnd.commands.<name>."""


EXIT_NOT_LOADED = 2
"""Exit code of a subcommand whose module could not be loaded (a broken or partial install; docs/errors.md)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of :data:`COMMANDS`.

    A subcommand whose module fails to import (or to register its parser) is never left out silently: it is
    registered as a stub that ``sgjnd --help`` lists with the reason, and whose run says in one line that it could
    not be loaded and why, and exits with :data:`EXIT_NOT_LOADED`. The other subcommands work as usual.
    """
    parser = argparse.ArgumentParser(prog="sgjnd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sgjnd {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            importlib.import_module(f"sgjnd.commands.{name}").add_parser(sub)
        except Exception as exc:  # whatever broke, the other commands must still work
            _add_unloaded(sub, name, exc)
    return parser


def _add_unloaded(sub: Any, name: str, exc: Exception) -> None:
    """Register ``name``, whose module raised ``exc``, as a stub that takes any arguments and reports the failure."""
    # A parser that failed halfway through add_parser may be registered already: replace it.
    if name in sub.choices:
        del sub.choices[name]
        sub._choices_actions[:] = [a for a in sub._choices_actions if a.dest != name]
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the exception's text
    stub = sub.add_parser(
        name,
        help=f"(could not be loaded: {reason}; reinstall sgjnd)".replace("%", "%%"),
        description=f"The '{name}' command could not be loaded: {reason}; reinstall sgjnd.",
        add_help=False,
        prefix_chars="\0",  # no option prefix: every argument, -h included, goes to the stub's run
    )
    stub.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    stub.set_defaults(run=functools.partial(_run_unloaded, name, reason, exc))


def _run_unloaded(name: str, reason: str, exc: Exception, args: argparse.Namespace) -> int:
    """The run of a subcommand that could not be loaded: one line on stderr (the traceback too with ``-v``)."""
    print(f"sgjnd: the '{name}' command could not be loaded: {reason}; reinstall sgjnd", file=sys.stderr)
    if getattr(args, "verbose", 0):
        traceback.print_exception(exc, file=sys.stderr)
    return EXIT_NOT_LOADED


def _opencv_pixel_limit(argv: Sequence[str]) -> None:
    """Raise OpenCV's own decoding limit to ``--max-pixels`` when that is above the default.

    OpenCV reads ``OPENCV_IO_MAX_IMAGE_PIXELS`` once, when it loads, and the parser's subcommands load it; so the
    option is read from the raw arguments first. A limit set in the environment by the user is kept.
    """
    from sgjnd.runtime.pixel_limit import bound_opencv

    value = None
    for i, arg in enumerate(argv):
        if arg == "--max-pixels" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--max-pixels="):
            value = arg.partition("=")[2]
    bound_opencv(int(value) if value is not None and value.isdigit() else 0)


EXIT_BROKEN_PIPE = 141
"""Exit code when stdout's reader went away (``sgjnd predict --json | head -1``): 128 + SIGPIPE, as a shell reports."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code. Errors of sgjnd print one line and exit with the error's code.

    File names are printed as they are: on a UTF-8 stdout a name that is not valid UTF-8 is written as its original
    bytes (``surrogateescape``), elsewhere escaped (``backslashreplace``, as stderr always is); never a traceback. A
    closed stdout (a pipe into ``head``) ends the run quietly with :data:`EXIT_BROKEN_PIPE`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    _opencv_pixel_limit(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    quiet_opencv(args.verbose)
    restore = _tolerant_streams()
    try:
        code: int = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except SgjndError as exc:
        print(f"sgjnd {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"sgjnd {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        restore()


def _tolerant_streams() -> Callable[[], None]:
    """Make printing a file name that is not valid UTF-8 safe; returns what restores the previous settings."""
    undo: list[Callable[[], None]] = []
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        if not isinstance(stream, io.TextIOWrapper) or stream.errors != "strict":
            continue
        wanted = errors if (stream.encoding or "").lower().replace("-", "") == "utf8" else "backslashreplace"
        try:
            stream.reconfigure(errors=wanted)
        except (ValueError, OSError):  # pragma: no cover - a closed or detached stream
            continue
        undo.append(functools.partial(stream.reconfigure, errors="strict"))

    def restore() -> None:
        for step in undo:
            with contextlib.suppress(ValueError, OSError):  # closed meanwhile
                step()

    return restore


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that the final flush at exit raises nothing (Python docs)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
