"""The `sgjnd` command line: a thin shell over the library, one module per subcommand in sgjnd.commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code. Errors of sgjnd print one line and exit with the error's code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
        return code
    except SgjndError as exc:
        print(f"sgjnd {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"sgjnd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
