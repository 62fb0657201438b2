"""`sgjnd evaluate`: score a model (any backend) against a JND dataset's labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sgjnd.commands._args import add_model_args, add_predict_args, open_model_from_args, predict_config_from_args
from sgjnd.errors import UsageError


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from sgjnd.data.datasets import KINDS
    from sgjnd.data.labels import AGGREGATIONS, LabelConfig

    labels = LabelConfig()
    parser: argparse.ArgumentParser = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint or model directory against a JND dataset",
        description="Predict every image of a dataset through the runtime (the same path as `sgjnd predict`, so "
        "exported and INT8 models are scored the same way) and compare with the labels: pair accuracy, JND MAE "
        "(QF), ΔPSNR at the JND, share within ±k QF, PLCC/SRCC. Writes per_image.csv, summary.md, metrics.json and "
        "plots into the output folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "model_arg",
        type=Path,
        metavar="MODEL",
        help="checkpoint (.pt) or model directory (sgjnd export); same as --model",
    )
    parser.add_argument("data", type=Path, help="dataset folder (MCL-JCI, KonJND-1k) or proxy-label CSV")
    parser.add_argument("-o", "--output", type=Path, default=Path("eval-output"), help="report folder")
    parser.add_argument("--kind", default="auto", choices=("auto", *KINDS), help="dataset layout")
    parser.add_argument("--label", default=labels.method, choices=AGGREGATIONS, help="label aggregation")
    parser.add_argument("--sur-p", type=float, default=labels.p, help="p of --label sur")
    parser.add_argument("--only", nargs="*", default=None, help="evaluate only these source names or groups")
    parser.add_argument("--exclude", nargs="*", default=None, help="leave out these source names or groups")
    parser.add_argument("--baseline-jnd", type=float, default=None, metavar="QF",
                        help="a constant JND guess scored beside the model on the same images (default: the training "
                        "labels' median that `sgjnd train` records in a checkpoint's sidecar, if there is one)")
    parser.add_argument("--no-plots", action="store_true", help="skip the matplotlib plots")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    add_model_args(parser)
    add_predict_args(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgjnd.data.datasets import open_dataset
    from sgjnd.data.labels import LabelConfig
    from sgjnd.fileio import check_output_dir, check_output_files
    from sgjnd.train.evaluate import evaluate_dataset, metrics_line, report_files, write_report

    check_output_dir(args.output, what="report folder (-o)")  # before any work
    check_output_files(args.output, report_files(), what="report folder (-o)")
    dataset = open_dataset(args.data, args.kind)
    if args.only:
        keep = set(args.only)
        dataset = dataset.subset(s.name for s in dataset.sources if s.name in keep or s.group in keep)
    if args.exclude:
        drop = set(args.exclude)
        dataset = dataset.subset(s.name for s in dataset.sources if s.name not in drop and s.group not in drop)
    config = predict_config_from_args(args)
    if args.model is not None:
        raise UsageError(f"give the model once: as MODEL ({args.model_arg}), not also as --model")
    baseline = args.baseline_jnd if args.baseline_jnd is not None else recorded_baseline(args.model_arg)
    if baseline is not None and not 0 <= baseline <= 100:
        raise UsageError(f"--baseline-jnd is a JPEG quality in 0..100, got {baseline:g}")
    with open_model_from_args(args) as models:
        result = evaluate_dataset(models, dataset, config, LabelConfig(args.label, args.sur_p),
                                  progress=not args.quiet, baseline=baseline)
    files = write_report(result, args.output, plots=not args.no_plots)
    if not dataset.human:
        print("labels: PROXY LABELS (oracle metric), not human data", file=sys.stderr)
    print(f"weights: {result.weights}", file=sys.stderr)
    print(f"{result.model} on {result.backend}: {metrics_line(result.metrics)} ({len(result.images)} image(s))")
    print(f"wrote {', '.join(str(f) for f in files)}")
    for name, why in result.failures:
        print(f"sgjnd evaluate: {name}: {why}", file=sys.stderr)
    return 1 if result.failures else 0


def recorded_baseline(model: Path) -> float | None:
    """The training labels' median JND that ``sgjnd train`` recorded in a checkpoint's sidecar, else None."""
    from sgjnd.errors import SgjndError
    from sgjnd.spec import read_sidecar

    if not model.is_file():
        return None
    try:
        value = read_sidecar(model, verify_hash=False).artifact.details.get("train_label_median_qf")
    except SgjndError:
        return None  # loading the model reports what is wrong with its sidecar
    return float(value) if isinstance(value, int | float) else None
