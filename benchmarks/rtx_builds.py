"""Build every precision of model directories with TensorRT-RTX (no GPU needed) and tabulate the builds.

    python benchmarks/rtx_builds.py demo-output/model models/r50 [--batch 1,16,64] > builds.md

Each MODEL_DIR needs encoder/head ONNX graphs at fp32 (`sgjnd export`), fp16 (`sgjnd calibrate --precision fp16`)
and int8 (`sgjnd calibrate --precision int8 --target tensorrt`). Prints a Markdown table per directory: build result,
engine size and build time per graph and precision (from the engine sidecars), and, for the INT8 encoder, which
compute nodes stay in float and how many Adds carry Q/DQ.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from sgjnd.cli import main as sgjnd
from sgjnd.engine_spec import EngineRecord
from sgjnd.runtime.modeldir import artifact_path
from sgjnd.spec import read_sidecar

PRECISIONS = ("fp32", "fp16", "int8")


def float_layers(onnx_path: Path) -> str:
    """Compute nodes (Conv/MatMul/Gemm) of a QDQ graph that read no DequantizeLinear output, grouped by scope."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    compute = [n for n in graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    floats = [n.name for n in compute if not any(i in dq for i in n.input)]
    scopes = collections.Counter("/".join(name.split("/")[:3]) for name in floats)
    adds = [n for n in graph.node if n.op_type == "Add"]
    qadds = sum(1 for n in adds if any(i in dq for i in n.input))
    listing = ", ".join(f"{scope} ({count})" for scope, count in scopes.items()) or "none"
    return (f"{len(compute) - len(floats)} of {len(compute)} compute nodes int8; float: {listing}; "
            f"{qadds} of {len(adds)} Adds read a Q/DQ input")


def table(model_dir: Path, batch: str) -> str:
    rows = ["| graph | precision | build | engine MiB | build s | from |", "|---|---|---|---|---|---|"]
    for precision in PRECISIONS:
        code = sgjnd(["build", str(model_dir), "--runtime", "tensorrt-rtx", "--precision", precision,
                      "--batch", batch])
        for graph in ("encoder", "head"):
            path = artifact_path(model_dir, graph, precision, "rtx.engine")
            if code != 0 or not path.is_file():
                rows.append(f"| {graph} | {precision} | FAILED (exit {code}) | | | |")
                continue
            record = EngineRecord.from_details(read_sidecar(path).artifact.details)
            rows.append(f"| {graph} | {precision} | ok | {path.stat().st_size / 2**20:.1f} | "
                        f"{record.build_seconds:.2f} | {record.onnx_file} |")
    int8 = artifact_path(model_dir, "encoder", "int8", "onnx")
    note = f"\nINT8 encoder: {float_layers(int8)}\n" if int8.is_file() else ""
    record_path = artifact_path(model_dir, "encoder", "fp32", "rtx.engine")
    targets = ""
    if record_path.is_file():
        rec = EngineRecord.from_details(read_sidecar(record_path).artifact.details)
        targets = f" TensorRT-RTX {rec.tensorrt_version}, targets {', '.join(rec.target_compute_capabilities)}"
    return f"### {model_dir}\n\nbatch profile {batch};{targets}\n\n" + "\n".join(rows) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path, metavar="MODEL_DIR")
    parser.add_argument("--batch", default="1,16,64", help="batch profile MIN,OPT,MAX")
    args = parser.parse_args(argv)
    for model_dir in args.model_dirs:
        print(table(model_dir, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
