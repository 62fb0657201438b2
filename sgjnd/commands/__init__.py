"""CLI subcommands, one module each. A module's top level imports nothing heavy; ``run`` imports what it needs.

Each module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` (registering itself with
``set_defaults(run=run)``) and ``run(args) -> int``. What several share lives in :mod:`sgjnd.commands._args`, the
only command module another may import; the rest is library code, which never imports this package. An option's
default is taken from the library's config (``CompressConfig().margin``), not repeated as a literal.
"""
