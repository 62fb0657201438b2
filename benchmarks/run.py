"""Run ``sgjnd bench`` from a source checkout without installing the console script.

    python benchmarks/run.py --profile full -o bench-output/full
    python benchmarks/run.py --config benchmarks/quick.json --compare old/bench.json

Every argument is passed to ``sgjnd bench`` (see ``--help``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's sgjnd, when not installed

from sgjnd.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
