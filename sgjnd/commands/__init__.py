"""CLI subcommands, one module each. A module's top level imports nothing heavy; ``run`` imports what it needs.

Each module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` (registering itself with
``set_defaults(run=run)``) and ``run(args) -> int``.
"""
