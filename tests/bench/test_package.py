"""The bench package is importable without heavy libraries (they load when a suite runs)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "onnx", "onnxruntime", "tensorrt", "matplotlib")


def test_importing_the_bench_package_and_command_loads_no_heavy_library():
    probe = ("import sys, sgjnd.bench, sgjnd.commands.bench, sgjnd.bench.plots\n"
             "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert not set(HEAVY) & set(out.stdout.split())
