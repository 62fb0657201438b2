"""`sgjnd compare`: run a reference and targets on the same images; compare tensors and JND QFs (exit 0 = all pass)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sgjnd.commands._args import add_predict_args, predict_config_from_args
from sgjnd.compare.task import COMPARE_QFS


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from sgjnd.runtime.backends.ort import DEFAULT_PROVIDERS

    parser: argparse.ArgumentParser = sub.add_parser(
        "compare",
        help="compare backends and precisions against a reference (tensors and JND QF)",
        description="Run the reference and every target on the same reference and JPEG-distorted patches, compare "
        "each output with per-precision tolerances (max/mean abs and rel error, cosine), then predict the JND QF "
        "of every image on each target and compare it with the reference's. Exit code 0 only when all pass. A "
        "target is BACKEND:LOCATION[:PRECISION], e.g. torch:model.pt, onnxruntime:models/r50, "
        "onnxruntime:models/r50:int8-ort, auto:models/r50 (what `--backend auto` would run).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("images", nargs="*", type=Path, help="image files (none: the bundled sample photos)")
    parser.add_argument("--ref", required=True, help="reference target, e.g. torch:model.pt")
    parser.add_argument(
        "--target",
        action="append",
        required=True,
        dest="targets",
        help="target to compare (repeat for several), e.g. onnxruntime:models/r50:fp16",
    )
    parser.add_argument(
        "--qf",
        default=",".join(map(str, COMPARE_QFS)),
        help="JPEG qualities of the distorted patches at the tensor level, comma-separated",
    )
    parser.add_argument("--patches", type=int, default=4, help="reference patches per image at the tensor level")
    parser.add_argument(
        "--task",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare the JND QF per image (the task level) besides the tensors",
    )
    parser.add_argument(
        "--providers",
        default=None,
        help="ONNX Runtime execution providers for onnxruntime targets, comma-separated (default: "
        f"{','.join(DEFAULT_PROVIDERS)})",
    )
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the library's choice)")
    parser.add_argument("--device", default=None, help="torch device for torch targets (default: cpu)")
    parser.add_argument("--json", type=Path, help="also write the full report as JSON to this file")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="also write DIR/report.html: every target's S(QF) curve on one plot and its JND per image, the patch "
        "grid and the zoomed versions of the reference (self-contained, no network; needs the task level)",
    )
    add_predict_args(parser)
    # A cheaper task level than `predict`'s defaults: it runs once per target and image, and the search and patch
    # choice are the same for every target, so the comparison stays fair.
    parser.set_defaults(run=run, search="coarse-to-fine", max_patches=8)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgjnd.compare.task import run_comparison
    from sgjnd.errors import UsageError
    from sgjnd.fileio import write_atomic

    try:
        qfs = tuple(int(q) for q in args.qf.split(",") if q.strip())
    except ValueError:
        raise UsageError(f"--qf takes comma-separated integers in 1..100, got {args.qf!r}") from None
    if args.patches < 1:
        raise UsageError(f"--patches must be at least 1, got {args.patches}")
    if args.json is not None:  # before any work: a refused output costs nothing and is left intact
        from sgjnd.fileio import check_output_file, is_json_object_file

        check_output_file(
            args.json, what="JSON report", ours=lambda p: is_json_object_file(p, ("reference", "targets", "passed"))
        )
    if args.report is not None:
        from sgjnd.visual.report import check_report_dir

        if not args.task:
            raise UsageError("--report shows the task level: drop --no-task")
        check_report_dir(args.report)
    images = list(args.images)
    if not images:
        from sgjnd.samples import sample_photos

        images = sample_photos()
    report = run_comparison(
        images,
        _target(args.ref, args),
        [_target(t, args) for t in args.targets],
        qfs=qfs,
        max_patches=args.patches,
        task=args.task,
        predict_config=predict_config_from_args(args),
    )
    print(report.format())
    if args.json is not None:
        write_atomic(args.json, (json.dumps(report.to_dict(), indent=2) + "\n").encode())
        print(f"report written to {args.json}", file=sys.stderr)
    if args.report is not None:
        page = _write_visual_report(args.report, report, images, predict_config_from_args(args))
        print(f"visual report: {page}", file=sys.stderr)
    return 0 if report.passed else 1


def _write_visual_report(directory: Path, report: Any, images: list[Path], config: Any) -> Path:
    """One view per image with every target's curve; the pictures are the reference's recommendation."""
    from sgjnd.errors import UsageError
    from sgjnd.runtime.jpeg import JpegCodec
    from sgjnd.spec import ModelSpec
    from sgjnd.visual.report import RunReport
    from sgjnd.visual.views import ViewSettings

    labels = list(report.predictions)
    first = report.predictions[labels[0]]
    spec: ModelSpec | None = report.model
    if spec is None or not labels:
        raise UsageError("the comparison has no task-level predictions to show")
    run_report = RunReport(
        directory,
        ViewSettings(patch_size=spec.patch_size, threshold=config.search.threshold),
        JpegCodec(spec.jpeg),
        max_pixels=config.max_pixels,
    )
    run_report.header += [f"JND QF {label}" for label in labels[1:]]
    for index, (path, result) in enumerate(zip(images, first, strict=True)):
        run_report.add(path, result, series=[(label, report.predictions[label][index]) for label in labels])
    verdict = "all targets PASS" if report.passed else "some targets FAIL"
    return run_report.write("JND comparison", f"reference {report.reference} vs {', '.join(labels[1:])}: {verdict}")


def _target(text: str, args: argparse.Namespace) -> Any:
    """``BACKEND:LOCATION[:PRECISION]`` with the command's options that its backend takes (they apply to every
    target, and targets run on different backends)."""
    from sgjnd.commands._args import announce
    from sgjnd.runtime.source import BACKEND_OPTIONS, ModelSource, concrete_source

    source = concrete_source(ModelSource.parse(text), announce=announce)
    options: dict[str, Any] = {"threads": args.threads, "device": args.device}
    if args.providers is not None:
        options["providers"] = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    taken = {k: v for k, v in options.items() if k in BACKEND_OPTIONS[source.backend] and v is not None}
    return ModelSource(source.backend, source.location, source.precision, taken)
