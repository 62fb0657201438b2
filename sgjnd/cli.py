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
from collections.abc import Callable, Sequence

from sgjnd import __version__
from sgjnd.errors import SgjndError

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand whose module imports."""
    parser = argparse.ArgumentParser(prog="sgjnd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sgjnd {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"sgjnd.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"sgjnd.commands.{name}":
                continue  # not built yet
            raise
        module.add_parser(sub)
    return parser


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


def quiet_opencv(verbose: int) -> None:
    """Hide OpenCV's own log lines (``[ WARN:0@0.8] ... PNG input buffer is incomplete``) unless ``-v``.

    They repeat, less clearly, what the one-line error of each refused image says. libpng's and libjpeg's own
    warnings (``libpng warning: iCCP: ...``, ``Corrupt JPEG data: ...``) are printed by those libraries straight to
    file descriptor 2 and cannot be hidden without silencing every thread's stderr; they are documented instead.
    """
    if not verbose:
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # read by cv2 when it is first imported
    if "cv2" in sys.modules:
        cv_logging = sys.modules["cv2"].utils.logging
        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_WARNING if verbose else cv_logging.LOG_LEVEL_ERROR)


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
