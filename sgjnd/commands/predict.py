"""`sgjnd predict`: the JND and the JPEG quality to use, per image; over folders and lists into a resumable JSONL."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from sgjnd.commands._args import (
    add_job_args,
    add_model_args,
    add_predict_args,
    job_config_from_args,
    open_model_from_args,
    predict_config_from_args,
    report_failure,
)
from sgjnd.runtime.opencv_log import quiet_opencv


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "predict",
        help="predict the JND and the recommended JPEG quality of images",
        description="Predict, per image, the JND (the highest JPEG quality at which compression is still visible) "
        "and the recommended quality (the first one judged invisible). Inputs are image files, folders (searched "
        "recursively) and .txt lists of paths. With --out, one JSON line per image is appended to a results file "
        "that a killed run resumes from.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files, folders, or .txt lists of paths")
    add_model_args(parser)
    add_predict_args(parser)
    add_job_args(parser)
    from sgjnd.distributed.ray_job import add_ray_args

    add_ray_args(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON line per image instead of a table")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="also write DIR/report.html: a self-contained page (no network) with, per image, the S(QF) curve, the "
        "patch grid coloured by q and w, and the most-weighted patch in the original, at the recommended quality and "
        "a few QFs below the JND (first 50 images in full, all in its table)",
    )
    group = parser.add_argument_group("results file")
    group.add_argument(
        "--out",
        type=Path,
        help="append one JSON line per image (results and failures) to this .jsonl file and resume from it: files "
        "already recorded with the same content are skipped; nothing goes to stdout",
    )
    group.add_argument("--fsync-every", type=int, default=1, help="fsync the results file every N lines (0: at end)")
    group.add_argument("--retry-failed", action="store_true", help="try files recorded as failed again")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.ray is not None:
        return predict_on_ray_from_args(args)
    from sgjnd.jobs.inputs import check_inputs, expand_inputs, first_or_refuse, is_list_file
    from sgjnd.jobs.results_log import ResultLog
    from sgjnd.jobs.runner import PredictJob, Tally, run_jobs, serialize_backends
    from sgjnd.runtime.predictor import JNDPredictor

    config = predict_config_from_args(args)
    jobs = job_config_from_args(args)
    check_inputs(args.images)
    if args.out is not None:
        from sgjnd.jobs.results_log import check_results_log

        check_results_log(args.out)  # before the model loads: a refused --out costs nothing and is left intact
    quiet_opencv(getattr(args, "verbose", 0), load=True)
    many = args.out is not None or len(args.images) > 1 or any(p.is_dir() or is_list_file(p) for p in args.images)
    exclude = [args.out] if args.out is not None else []
    items = first_or_refuse(expand_inputs(args.images, exclude=exclude), args.images)
    tally = Tally()
    if args.report is not None:
        from sgjnd.visual.report import check_report_dir

        check_report_dir(args.report)  # before any work: a refused directory costs nothing
    with open_model_from_args(args) as models:
        if models.weights:
            print(f"weights: {models.weights}", file=sys.stderr)
        predictor = JNDPredictor(serialize_backends(models), config)
        job = PredictJob(predictor)
        report = _run_report(args.report, predictor, config) if args.report is not None else None
        if args.out is not None:
            with ResultLog(args.out, fsync_every=args.fsync_every, retry_failed=args.retry_failed) as results:
                if results.loaded:
                    print(f"sgjnd predict: resuming: {results.loaded} records in {args.out}", file=sys.stderr)
                for outcome in run_jobs(items, job, config=jobs, done=results.is_done):
                    tally.add(outcome)
                    if outcome.status != "skipped" and outcome.record is not None:
                        _write_record(results, outcome.record, args.out)
                    if outcome.status == "failed":
                        report_failure("predict", outcome.item.path, outcome.reason)
                    elif outcome.status == "done" and report is not None:
                        report.add(outcome.item.path, outcome.value)
        else:
            table = _TableWriter(sys.stdout)
            for outcome in run_jobs(items, job, config=jobs):
                tally.add(outcome)
                if outcome.status == "failed":
                    report_failure("predict", outcome.item.path, outcome.reason)
                elif outcome.status == "done":
                    if args.json:
                        print(_dumps(outcome.value.to_dict()), flush=True)
                    else:
                        table.row(outcome.value)
                    if report is not None:
                        report.add(outcome.item.path, outcome.value)
        if report is not None:
            page = report.write(
                "JND report",
                f"{models.model.name} on {models.encoder.description}; weights: {models.weights or 'unknown'}",
            )
            print(f"sgjnd predict: report: {page}", file=sys.stderr)
    if many:
        where = f" -> {args.out}" if args.out is not None else ""
        print(f"sgjnd predict: {tally.summary()}{where}", file=sys.stderr)
    return tally.exit_code


def _run_report(directory: Path, predictor: Any, config: Any) -> Any:
    """The report collector of a run (imported only when --report is given)."""
    from sgjnd.visual.report import RunReport
    from sgjnd.visual.views import ViewSettings

    settings = ViewSettings(patch_size=predictor.spec.patch_size, threshold=config.search.threshold)
    return RunReport(directory, settings, predictor.codec, max_pixels=config.max_pixels)


def _write_record(results: Any, record: dict[str, Any], path: Path) -> None:
    from sgjnd.errors import UsageError

    try:
        results.append(record)
    except OSError as exc:
        raise UsageError(f"cannot append to {path}: {exc.strerror or exc}; check free space, then resume") from exc


def _dumps(record: dict[str, Any]) -> str:
    from sgjnd.jobs.results_log import json_safe

    return json.dumps(json_safe(record), allow_nan=False)


class _TableWriter:
    """Prints the header before the first row, then one row per result as it comes (no list of results)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = False

    def row(self, result: Any) -> None:
        if not self.started:
            print(format_table([]), file=self.stream)
            self.started = True
        print(format_row(result), file=self.stream, flush=True)


_HEADER = f"{'image':<28} {'size':>10} {'JND QF':>6} {'use QF':>6} {'PSNR dB':>8} {'KiB':>8} {'passes':>6} {'ms':>8}"


def format_table(results: list[Any]) -> str:
    """A fixed-width table: one row per image."""
    return "\n".join([_HEADER, "-" * len(_HEADER), *(format_row(r) for r in results)])


def format_row(r: Any) -> str:
    """One row of :func:`format_table`."""
    psnr = (
        "inf"
        if r.psnr_db is not None and r.psnr_db == float("inf")
        else (f"{r.psnr_db:.2f}" if r.psnr_db is not None else "-")
    )
    kib = f"{r.jpeg_bytes / 1024:.1f}" if r.jpeg_bytes is not None else "-"
    jnd = "-" if r.jnd_qf is None else str(r.jnd_qf)
    rec = "-" if r.recommended_qf is None else str(r.recommended_qf)
    name = Path(r.source).name[:28]
    return (
        f"{name:<28} {f'{r.width}x{r.height}':>10} {jnd:>6} {rec:>6} {psnr:>8} {kib:>8} {r.encoder_passes:>6} "
        f"{r.timings_ms['total']:>8.0f}"
    )


def predict_on_ray_from_args(args: argparse.Namespace) -> int:
    """``sgjnd predict --ray``: the arguments of ``sgjnd predict`` -> ``predict_on_ray``; the exit code.

    Returns:
        0 when every file was scored; otherwise the failures' exit code, as ``sgjnd predict``.
    """
    from sgjnd.commands._args import source_from_args
    from sgjnd.distributed.ray_job import predict_on_ray, ray_job_config_from_args, split_ray_argument
    from sgjnd.errors import UsageError

    if args.out is None:
        raise UsageError("--ray needs --out results.parquet (or .jsonl): the records are written to a file")
    address, images = split_ray_argument(args.ray, args.images)
    summary = predict_on_ray(
        images,
        args.out,
        source=source_from_args(args),
        predict=predict_config_from_args(args),
        job=ray_job_config_from_args(args, address),
    )
    print(f"sgjnd predict --ray: {summary.line()}", file=sys.stderr)
    return summary.exit_code
