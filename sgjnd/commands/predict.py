"""`sgjnd predict`: the JND and the JPEG quality to use, per image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sgjnd.commands._args import add_model_args, add_predict_args, open_model_from_args, predict_config_from_args


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "predict",
        help="predict the JND and the recommended JPEG quality of images",
        description="Predict, per image, the JND (the highest JPEG quality at which compression is still visible) "
        "and the recommended quality (the first one judged invisible).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    add_model_args(parser)
    add_predict_args(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON line per image instead of a table")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgjnd.errors import SgjndError
    from sgjnd.progress import Progress
    from sgjnd.runtime.predictor import JNDPredictor

    config = predict_config_from_args(args)
    failures = 0
    with open_model_from_args(args) as models:
        if models.weights:
            print(f"weights: {models.weights}", file=sys.stderr)
        predictor = JNDPredictor(models, config)
        progress = Progress(len(args.images), "predict", enabled=len(args.images) > 1)
        rows = []
        for path in args.images:
            try:
                result = predictor.predict(path)
            except SgjndError as exc:
                failures += 1
                print(f"sgjnd predict: {path}: {exc}", file=sys.stderr)
                progress.step(f"{path.name}: failed")
                continue
            progress.step(path.name)
            if args.json:
                print(json.dumps(result.to_dict()), flush=True)
            else:
                rows.append(result)
        if not args.json and rows:
            print(format_table(rows))
    return 1 if failures else 0


def format_table(results: list[Any]) -> str:
    """A fixed-width table: one row per image."""
    header = f"{'image':<28} {'size':>10} {'JND QF':>6} {'use QF':>6} {'PSNR dB':>8} {'KiB':>8} {'passes':>6} {'ms':>8}"
    lines = [header, "-" * len(header)]
    for r in results:
        psnr = (
            "inf"
            if r.psnr_db is not None and r.psnr_db == float("inf")
            else (f"{r.psnr_db:.2f}" if r.psnr_db is not None else "-")
        )
        kib = f"{r.jpeg_bytes / 1024:.1f}" if r.jpeg_bytes is not None else "-"
        jnd = "-" if r.jnd_qf is None else str(r.jnd_qf)
        rec = "-" if r.recommended_qf is None else str(r.recommended_qf)
        name = Path(r.source).name[:28]
        lines.append(
            f"{name:<28} {f'{r.width}x{r.height}':>10} {jnd:>6} {rec:>6} {psnr:>8} {kib:>8} {r.encoder_passes:>6} "
            f"{r.timings_ms['total']:>8.0f}"
        )
    return "\n".join(lines)
