"""ONNX Runtime CPU ms/patch of several encoder graphs at one batch size, in interleaved rounds.

Usage (from the repository root):
    python benchmarks/device/speed.py THREADS BATCH ENCODER.onnx [ENCODER.onnx ...]

Example, FP32 against both INT8 flavours of one model directory on 16 intra-op threads, batch 16:
    python benchmarks/device/speed.py 16 16 m/encoder.onnx m/encoder.int8-ort.onnx m/encoder.int8.onnx

Every graph gets one CPUExecutionProvider session with THREADS intra-op threads and the same random input
(dynamic dimensions set to BATCH); after one warm-up call each, ROUNDS (environment, default 8) rounds run every
graph once in turn, with a short untimed pause before each call so the previous session's spinning worker threads
go idle. Prints the median ms/patch of each graph and its speed-up over the first one.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROUNDS = int(os.environ.get("ROUNDS", "8"))
USAGE = "usage: python benchmarks/device/speed.py THREADS BATCH ENCODER.onnx [ENCODER.onnx ...]"


def _parse(argv: list[str]) -> tuple[int, int, list[Path]]:
    """THREADS, BATCH and the graph paths from the command line; exits with the usage message when they are wrong."""
    if len(argv) < 3 or argv[0] in ("-h", "--help"):
        sys.exit(f"{USAGE}\n(THREADS and BATCH are positive integers; at least one graph)")
    try:
        threads, batch = int(argv[0]), int(argv[1])
    except ValueError:
        sys.exit(f"{USAGE}\nTHREADS and BATCH must be integers, got {argv[0]!r} {argv[1]!r}")
    if threads < 1 or batch < 1:
        sys.exit(f"{USAGE}\nTHREADS and BATCH must be at least 1, got {threads} {batch}")
    paths = [Path(a) for a in argv[2:]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"{USAGE}\nno such file: {', '.join(missing)}")
    return threads, batch, paths


def main(argv: list[str]) -> int:
    threads, batch, paths = _parse(argv)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    names = [p.name for p in paths]
    labels = [str(p) if names.count(p.name) > 1 else p.name for p in paths]  # file names, unless they clash
    labels = [f"{label} #{i + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]
    sessions = [(label, ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]))
                for label, p in zip(labels, paths, strict=True)]
    first = sessions[0][1].get_inputs()[0]
    shape = [d if isinstance(d, int) else batch for d in first.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feeds = {name: {s.get_inputs()[0].name: x} for name, s in sessions}
    ms: dict[str, list[float]] = {name: [] for name, _ in sessions}
    for name, s in sessions:  # warm-up: first-call allocations, ORT arenas
        s.run(None, feeds[name])
    for _ in range(ROUNDS):
        for name, s in sessions:
            time.sleep(0.02)  # untimed
            t = time.perf_counter()
            s.run(None, feeds[name])
            ms[name].append((time.perf_counter() - t) * 1e3 / batch)
    base_name = sessions[0][0]
    base = statistics.median(ms[base_name])
    for name, _ in sessions:
        m = statistics.median(ms[name])
        print(f"threads {threads} batch {batch} {name:28s} {m:7.2f} ms/patch  x{base / m:.2f} vs {base_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
