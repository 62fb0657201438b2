"""`sgjnd calibrate`: INT8 (QDQ, calibrated on real patches) or FP16 (mixed precision) graphs beside the FP32 ones;
BF16 (OpenVINO) writes only the accuracy report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from sgjnd.calibration.pipeline import AUTO_HOLDOUT_MIN_IMAGES, TARGETS, CalibrateConfig
    from sgjnd.calibration.quantize import METHODS, QuantizeConfig
    from sgjnd.calibration.reader import ReaderConfig

    config, quantize, reader = CalibrateConfig(), QuantizeConfig(), ReaderConfig()
    parser: argparse.ArgumentParser = sub.add_parser(
        "calibrate",
        help="prepare INT8 (QDQ) or FP16 graphs of an exported model",
        description="Write reduced-precision ONNX graphs beside the FP32 ones in MODEL_DIR, then compare them with "
        "FP32 on held-out images (tensor metrics and JND QF drift). INT8 for TensorRT: encoder.int8.onnx, symmetric "
        "int8 QDQ (zero points 0, per-channel weights), for a STRONGLY_TYPED build on TensorRT 10 and 11. INT8 for "
        "ONNX Runtime CPU: encoder.int8-ort.onnx, uint8 activations and int8 per-channel weights (U8S8). FP16: "
        "encoder.fp16.onnx with LayerNorm, Softmax and the attention kept in FP32. Calibration patches are made "
        "with the runtime's own decoding, patch grid and JPEG codec; results are cached in "
        "MODEL_DIR/.calibration-cache keyed by graph, preprocessing, data and tool versions. BF16: no graph (it is "
        "the FP32 graphs at bf16 inference precision on OpenVINO, AVX-512-BF16/AMX CPUs); only the report, "
        "calibration.bf16.json, the accuracy gate --backend auto reads.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a directory written by `sgjnd export`")
    parser.add_argument(
        "--images",
        type=Path,
        help="folder of calibration photos (searched recursively), or a .npz of patches from "
        "--save-patches; required for int8",
    )
    parser.add_argument(
        "--precision",
        choices=("int8", "fp16", "bf16"),
        required=True,
        help="precision to prepare (bf16: report only, on OpenVINO)",
    )
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default=config.target,
        help="INT8 flavour: tensorrt (*.int8.onnx), ort-cpu (*.int8-ort.onnx) or all (both, one calibration)",
    )
    group = parser.add_argument_group("calibration data")
    group.add_argument("--num-patches", type=int, default=reader.num_patches, help="calibration patches in all")
    group.add_argument(
        "--reference-share",
        type=float,
        default=reader.reference_share,
        help="fraction of pristine reference patches (the rest are JPEG-distorted)",
    )
    group.add_argument(
        "--patches-per-image", type=int, default=reader.patches_per_image, help="cap on the patch grid of each image"
    )
    group.add_argument("--min-qf", type=int, default=reader.qf_min, help="lowest QF of the distorted patches")
    group.add_argument("--max-qf", type=int, default=reader.qf_max, help="highest QF of the distorted patches")
    group.add_argument("--seed", type=int, default=reader.seed, help="seed of every random choice")
    group.add_argument("--save-patches", type=Path, help="also save the calibration patches to this .npz")
    group = parser.add_argument_group("quantisation")
    group.add_argument("--method", choices=METHODS, default=quantize.method, help="activation range calibration")
    group.add_argument(
        "--exclude-nodes",
        action="append",
        metavar="NAMES",
        help="node names to keep in float, comma-separated (repeatable); shell-style patterns "
        "match many, e.g. '/backbone/_conv_stem/*,/backbone/_blocks.[0-5]/*'",
    )
    group.add_argument(
        "--quantize-attention",
        action="store_true",
        help="also quantise the attention's activation x activation MatMuls (QK^T, PV); kept in "
        "float by default because int8 logits distort the softmax",
    )
    group.add_argument(
        "--reduce-range",
        choices=("auto", "on", "off"),
        default=quantize.reduce_range,
        help="ort-cpu: 7-bit weights, which avoids the U8S8 saturation of CPUs without VNNI; auto: "
        "on when this CPU lacks VNNI",
    )
    group.add_argument(
        "--exclude-op-types",
        action="append",
        metavar="TYPES",
        help="op types to keep in float, comma-separated (repeatable), e.g. MatMul,Add",
    )
    group.add_argument(
        "--head",
        choices=("fp32", "int8"),
        default=config.head,
        help="keep the head of an INT8 pair in FP32 (it costs <1%% of the encoder) or quantise it",
    )
    group.add_argument(
        "--sensitivity",
        action="store_true",
        help="also measure the quantisation noise (SQNR) of every quantised encoder tensor with ONNX "
        "Runtime's QDQ debugging and list the noisiest: candidates for --exclude-nodes",
    )
    group.add_argument("--no-cache", action="store_true", help="recompute instead of reusing cached calibration")
    group = parser.add_argument_group("report")
    group.add_argument(
        "--holdout",
        metavar="DIR_OR_N",
        help="held-out images for the report: a folder, or a number N of --images to withhold "
        f"(default: a fifth of --images if it has {AUTO_HOLDOUT_MIN_IMAGES} or more, else the bundled "
        "sample photos; none with --no-report)",
    )
    group.add_argument(
        "--report-patches", type=int, default=config.report_patches, help="patches per image in the report"
    )
    group.add_argument("--no-report", action="store_true", help="skip the accuracy report")
    group.add_argument("--threads", type=int, default=config.threads, help="intra-op threads (ONNX Runtime, OpenVINO)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON instead of text")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(run=run)
    return parser


def _holdout(value: str | None) -> Path | int | None:
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    return Path(text)


def run(args: argparse.Namespace) -> int:
    from sgjnd.calibration.pipeline import CalibrateConfig, calibrate_model
    from sgjnd.calibration.quantize import QuantizeConfig, split_names
    from sgjnd.calibration.reader import ReaderConfig

    reader = ReaderConfig(
        num_patches=args.num_patches,
        reference_share=args.reference_share,
        patches_per_image=args.patches_per_image,
        qf_min=args.min_qf,
        qf_max=args.max_qf,
        seed=args.seed,
    )
    quantize = QuantizeConfig(
        method=args.method,
        exclude_nodes=split_names(args.exclude_nodes),
        exclude_op_types=split_names(args.exclude_op_types),
        quantize_attention=args.quantize_attention,
        reduce_range=args.reduce_range,
    )
    config = CalibrateConfig(
        precision=args.precision,
        target=args.target,
        reader=reader,
        quantize=quantize,
        head=args.head,
        report=not args.no_report,
        report_patches=args.report_patches,
        sensitivity=args.sensitivity,
        save_patches=args.save_patches,
        use_cache=not args.no_cache,
        threads=args.threads,
        progress=not args.quiet,
    )
    outcome = calibrate_model(args.model_dir, images=args.images, holdout=_holdout(args.holdout), config=config)
    if args.json:
        doc = {p: r.to_dict() for p, r in outcome.report.items()}
        json.dump(
            {"files": [str(g.path) for g in outcome.graphs], "reports": doc, "notes": outcome.notes},
            sys.stdout,
            indent=2,
            sort_keys=True,
        )
        print()
    else:
        print(outcome.format())
    failed = [p for p, r in outcome.report.items() if not r.passed]
    return 1 if failed else 0
