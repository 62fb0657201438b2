"""`sgjnd label`: proxy JND labels of images from an oracle metric (NOT human data)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from sgjnd.labels.oracle import ORACLES
    from sgjnd.labels.proxy import ProxyConfig

    defaults = ProxyConfig()
    thresholds = ", ".join(
        f"{o.unit} {'>' if o.higher_is_worse else '<'} {o.default_threshold:g}" for o in ORACLES.values()
    )
    parser: argparse.ArgumentParser = sub.add_parser(
        "label",
        help="proxy JND labels of images from an oracle metric (not human data)",
        description="Label images (and their patches) with the JND under an oracle metric: the highest JPEG quality "
        "at which the oracle still finds the round trip visible, with the runtime's JPEG settings. These are PROXY "
        "labels for training and checks, NOT human data; the CSV says so on its first line. Scores are cached per "
        "image, so an interrupted run resumes and a new --threshold reuses them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files, or folders of images (not recursive)")
    parser.add_argument("-o", "--output", type=Path, help="labels CSV to write (a .json sidecar goes beside it)")
    parser.add_argument(
        "--oracle",
        choices=tuple(ORACLES),
        default=defaults.oracle,
        help="butteraugli: libjxl butteraugli_main 3-norm; ssimulacra2: the Python port",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help=f"visibility threshold (default: the oracle's calibrated one: {thresholds})",
    )
    parser.add_argument("--min-qf", type=int, default=defaults.qfs[0], help="lowest candidate QF")
    parser.add_argument("--max-qf", type=int, default=defaults.qfs[-1], help="highest candidate QF")
    parser.add_argument(
        "--qf-step",
        type=int,
        default=defaults.coarse_step,
        help="coarse pass stride over the candidates before refining near the crossing (1: every QF)",
    )
    parser.add_argument(
        "--patch-size", type=int, default=defaults.patch_size, help="side of the patches labelled individually"
    )
    parser.add_argument(
        "--max-patches", type=int, default=defaults.max_patches, help="patches labelled per image (0: images only)"
    )
    parser.add_argument(
        "--subsampling",
        choices=("420", "422", "444"),
        default=defaults.jpeg.subsampling,
        help="JPEG chroma subsampling (must equal the model spec's; the runtime default is "
        f"{defaults.jpeg.subsampling})",
    )
    parser.add_argument("-j", "--jobs", type=int, default=1, help="images labelled in parallel (processes)")
    parser.add_argument(
        "--cache", type=Path, default=None, help="score cache folder (default: OUTPUT.cache/ beside the labels CSV)"
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the score cache")
    parser.add_argument(
        "--calibrate-to",
        type=int,
        default=None,
        metavar="QF",
        help="instead of labelling, print the threshold that puts the median proxy JND at QF",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgjnd.errors import UsageError
    from sgjnd.labels.proxy import ProxyConfig, calibrate, expand_inputs, label_images, statement, write_labels
    from sgjnd.spec import JpegSettings

    if not 1 <= args.min_qf <= args.max_qf <= 100:
        raise UsageError(f"need 1 <= --min-qf <= --max-qf <= 100, got {args.min_qf} and {args.max_qf}")
    if args.output is None and args.calibrate_to is None:
        raise UsageError("give the labels CSV with -o/--output, e.g. -o labels.csv")
    if args.output is not None:  # before any work: a refused output costs nothing and is left intact
        from sgjnd.fileio import check_output_file, is_json_object_file
        from sgjnd.labels.proxy import is_labels_csv

        check_output_file(args.output, what="labels CSV", ours=is_labels_csv)
        check_output_file(
            args.output.with_name(args.output.name + ".json"),
            what="labels sidecar (.json)",
            ours=lambda p: is_json_object_file(p, ("proxy", "statement")),
        )
    config = ProxyConfig(
        oracle=args.oracle,
        threshold=args.threshold,
        qfs=tuple(range(args.min_qf, args.max_qf + 1)),
        coarse_step=args.qf_step,
        patch_size=args.patch_size,
        max_patches=args.max_patches,
        jpeg=JpegSettings(subsampling=args.subsampling),
    )
    paths = expand_inputs(args.images)
    cache_dir: Path | None = None
    if not args.no_cache:  # beside the output (never beside the inputs); --calibrate-to alone caches only with --cache
        default = args.output.with_name(args.output.name + ".cache") if args.output else None
        cache_dir = args.cache or default

    if args.calibrate_to is not None:
        result, failures = calibrate(
            paths, config, args.calibrate_to, cache_dir=cache_dir, jobs=args.jobs, progress=not args.quiet
        )
        print(
            f"{'image':<36} {'score@' + str(result.target_qf):>10} {'score@' + str(result.target_qf + 1):>10} "
            f"{'midpoint':>10}"
        )
        for name, (a, b, m) in result.per_image.items():
            print(f"{name[:36]:<36} {a:>10.4f} {b:>10.4f} {m:>10.4f}")
        print(
            f"{args.oracle} threshold for a median proxy JND at QF {result.target_qf}: {result.threshold:.4f} "
            f"(median of {len(result.per_image)} image(s))"
        )
        _report_failures(failures)
        return 1 if failures else 0

    labels, failures = label_images(paths, config, cache_dir=cache_dir, jobs=args.jobs, progress=not args.quiet)
    if labels:
        write_labels(args.output, labels, config)
    print(statement(config), file=sys.stderr)
    header = f"{'image':<36} {'size':>10} {'JND QF':>6} {'patch JNDs':>24} {'evals':>6}"
    print(header)
    print("-" * len(header))
    for item in labels:
        pj = [p.jnd_qf for p in item.patches]
        spread = f"{min(pj)}..{max(pj)} (median {sorted(pj)[len(pj) // 2]})" if pj else "-"
        print(
            f"{item.name[:36]:<36} {f'{item.width}x{item.height}':>10} {item.jnd_qf:>6} {spread:>24} "
            f"{item.evaluated:>6}"
        )
    if labels:
        print(f"wrote {args.output} and {args.output.name}.json: {len(labels)} image(s), proxy labels (not human data)")
    _report_failures(failures)
    return 1 if failures else 0


def _report_failures(failures: list[Any]) -> None:
    for failure in failures:
        print(f"sgjnd label: {failure.path}: {failure.error}", file=sys.stderr)
