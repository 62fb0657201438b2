"""`sgjnd export`: a checkpoint -> encoder.onnx and head.onnx (FP32, dynamic batch) with their sidecars."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sgjnd.export.onnx import DEFAULT_MAX_BATCH, MIN_OPSET


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (encoder.onnx, head.onnx)",
        description="Export the encoder and head of a checkpoint to ONNX with a dynamic batch, check both graphs "
        "(onnx.checker, shape inference, ONNX Runtime against PyTorch on real patches) and write them with their "
        "JSON sidecars. Nothing is written unless every check passes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint (.pt) with its .json sidecar")
    parser.add_argument("-o", "--output", type=Path, required=True, help="model directory to write")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                        help="largest batch the runtime may send (recorded for TensorRT profiles)")
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                        help="torch exporter (dynamo needs --opset 18 or later)")
    parser.add_argument("--encoder-input", choices=("uint8", "float32"), default="uint8",
                        help="what the encoder graph takes: uint8 BGR pixels (N, s, s, 3), normalised inside the graph "
                        "(a quarter of the bytes to a GPU, no normalisation pass on the host), or normalised float32 "
                        "(N, 3, s, s) patches (graphs exported before uint8 inputs existed)")
    parser.add_argument("--simplify", action=argparse.BooleanOptionalAction, default=True,
                        help="run onnxslim (or onnx-simplifier) when installed, keeping its result only if the outputs "
                        "are verifiably unchanged")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgjnd.export.onnx import onnx_from_checkpoint
    from sgjnd.fileio import check_output_dir

    check_output_dir(args.output, what="model directory (-o)")  # before any work

    report = onnx_from_checkpoint(
        args.checkpoint,
        args.output,
        opset=args.opset,
        max_batch=args.max_batch,
        exporter=args.exporter,
        simplify=args.simplify,
        encoder_input=args.encoder_input,
    )
    print(report.summary())
    weights = report.sidecars["encoder"].artifact.weights
    if weights:
        print(f"weights: {weights}")
    return 0
