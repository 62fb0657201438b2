"""`sgjnd compress`: write each image as a JPEG at its recommended quality, keeping its ICC profile and EXIF."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sgjnd.commands._args import (
    add_job_args,
    add_model_args,
    add_predict_args,
    job_config_from_args,
    open_model_from_args,
    predict_config_from_args,
    report_failure,
)
from sgjnd.compress import CompressConfig
from sgjnd.runtime.opencv_log import quiet_opencv

_DEFAULTS = CompressConfig()


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "compress",
        help="write each image as a JPEG at its recommended quality (ICC and EXIF kept)",
        description="Write each image as a JPEG at the quality the model recommends (plus --margin, clamped to "
        "[--min-q, --max-q]) with the model's JPEG settings, keeping its ICC profile and EXIF (orientation reset to "
        "1: the pixels are written upright), and report bytes and PSNR against a fixed-quality baseline. Inputs are "
        "never overwritten; existing outputs only with --overwrite.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files, folders, or .txt lists of paths")
    parser.add_argument(
        "-o", "--out-dir", type=Path, required=True, help="output folder (files found in a folder keep their subpath)"
    )
    group = parser.add_argument_group("quality")
    group.add_argument("--margin", type=int, default=_DEFAULTS.margin, help="QF steps added to the recommended QF")
    group.add_argument("--min-q", type=int, default=_DEFAULTS.min_q, help="lowest QF written")
    group.add_argument(
        "--max-q", type=int, default=_DEFAULTS.max_q, help="highest QF written (also used when none is recommended)"
    )
    group.add_argument("--baseline-q", type=int, default=_DEFAULTS.baseline_q, help="fixed QF to compare with")
    group.add_argument("--no-metadata", action="store_true", help="do not copy EXIF and the ICC profile")
    group = parser.add_argument_group("outputs")
    exclusive = group.add_mutually_exclusive_group()
    exclusive.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    exclusive.add_argument("--skip-existing", action="store_true", help="skip images whose output exists")
    add_model_args(parser)
    add_predict_args(parser)
    add_job_args(parser)
    parser.add_argument("--json", action="store_true", help="one JSON line per image, then one with the totals")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgjnd.compress import CompressJob, CompressTotals, OutputGuard
    from sgjnd.jobs.inputs import check_inputs, expand_inputs, first_or_refuse
    from sgjnd.jobs.runner import Tally, run_jobs, serialize_backends
    from sgjnd.runtime.predictor import JNDPredictor

    predict_config = predict_config_from_args(args)
    config = CompressConfig(
        margin=args.margin,
        min_q=args.min_q,
        max_q=args.max_q,
        baseline_q=args.baseline_q,
        keep_metadata=not args.no_metadata,
    )
    jobs = job_config_from_args(args)
    check_inputs(args.images)
    quiet_opencv(getattr(args, "verbose", 0), load=True)
    # Every run-wide refusal happens before the model loads and before anything is written.
    guard = OutputGuard(args.out_dir, args.images, overwrite=args.overwrite, skip_existing=args.skip_existing)
    items = first_or_refuse(expand_inputs(args.images, exclude=[args.out_dir]), args.images)
    tally = Tally()
    totals = CompressTotals()
    with open_model_from_args(args) as models:
        if models.weights:
            print(f"weights: {models.weights}", file=sys.stderr)
        job = CompressJob(JNDPredictor(serialize_backends(models), predict_config), guard, config)
        started = False
        for outcome in run_jobs(items, job, config=jobs):
            tally.add(outcome)
            if outcome.status == "failed":
                report_failure("compress", outcome.item.path, outcome.reason)
            elif outcome.status == "skipped" and outcome.reason:
                print(f"sgjnd compress: {outcome.item.path}: skipped: {outcome.reason}", file=sys.stderr)
            if outcome.status != "done":
                continue
            totals.add(outcome.value)
            if args.json:
                print(json.dumps(outcome.value.to_dict()), flush=True)
                continue
            if not started:
                print(format_header())
                started = True
            print(format_row(outcome.value), flush=True)
    if args.json:
        print(json.dumps({"total": totals.to_dict()}), flush=True)
    elif started:
        print(format_total(totals))
    print(f"sgjnd compress: {tally.summary()} -> {args.out_dir}", file=sys.stderr)
    return tally.exit_code


_HEADER = (
    f"{'image':<28} {'size':>10} {'JND':>4} {'rec':>4} {'QF':>4} {'in KiB':>9} {'out KiB':>9} {'base KiB':>9} "
    f"{'saved':>7} {'PSNR':>7} {'base':>7}"
)


def format_header() -> str:
    """The table's header lines; the baseline columns are at --baseline-q."""
    return f"{_HEADER}\n{'-' * len(_HEADER)}"


def _db(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.2f}"


def format_row(r: Any) -> str:
    """One image: predicted JND and recommendation, QF written, sizes, saving against the baseline, PSNR."""
    jnd = "-" if r.jnd_qf is None else str(r.jnd_qf)
    rec = "-" if r.recommended_qf is None else str(r.recommended_qf)
    return (
        f"{Path(r.source).name[:28]:<28} {f'{r.width}x{r.height}':>10} {jnd:>4} {rec:>4} {r.qf:>4} "
        f"{r.input_bytes / 1024:>9.1f} {r.output_bytes / 1024:>9.1f} {r.baseline_bytes / 1024:>9.1f} "
        f"{r.saving:>7.1%} {_db(r.psnr_db):>7} {_db(r.baseline_psnr_db):>7}"
    )


def format_total(totals: Any) -> str:
    """The total row: summed sizes, overall saving and mean PSNR."""
    t = totals.to_dict()
    saving = f"{t['saving']:.1%}" if t["saving"] is not None else "-"
    psnr = f"{t['mean_psnr_db']:.2f}" if t["mean_psnr_db"] is not None else "-"
    base = f"{t['mean_baseline_psnr_db']:.2f}" if t["mean_baseline_psnr_db"] is not None else "-"
    label = f"total ({t['images']} images)"
    return (
        f"{'-' * len(_HEADER)}\n{label:<28} {'':>10} {'':>4} {'':>4} {'':>4} {t['input_bytes'] / 1024:>9.1f} "
        f"{t['output_bytes'] / 1024:>9.1f} {t['baseline_bytes'] / 1024:>9.1f} {saving:>7} {psnr:>7} {base:>7}"
    )
