"""`sgjnd bench`: latency, throughput, end-to-end time and accuracy drift of every backend and precision, in one run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _batch_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,8,16, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("give at least one batch size")
    return values


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from sgjnd.bench.config import PROFILES

    parser: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="benchmark every backend and precision against the PyTorch reference",
        description="Measure, in one run, encoder and head latency per batch size, end-to-end time per photo per "
        "search strategy, accuracy drift against the PyTorch reference, and the machine's matmul peak, for every "
        "backend and precision installed (the rest are reported as SKIPPED with the reason). Writes bench.json, "
        "bench.csv, bench.md and PNG plots to --out. Without --model it makes an UNTRAINED seeded "
        "checkpoint and its ONNX graphs in --out/model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default="quick",
        help="built-in settings: quick (tiny model, seconds; CI) or full (sgjnd_r50, ~15 min on 2 "
        "cores); benchmarks/<profile>.json shows them",
    )
    source.add_argument("--config", type=Path, help="a JSON config (fields of sgjnd.bench.config.BenchConfig)")
    parser.add_argument("-o", "--out", type=Path, default=Path("bench-output"), help="output directory")
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--model",
        type=Path,
        help="a checkpoint (exported into --out/model) or a model directory, benchmarked as it is (read "
        "only; a matching .pt in it or its parent is the PyTorch reference)",
    )
    model.add_argument("--weights", type=Path, help=argparse.SUPPRESS)  # deprecated alias of --model
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="OLD.json",
        help="compare with an earlier bench.json: print and write regressions and improvements",
    )
    parser.add_argument(
        "--results", type=Path, metavar="NEW.json", help="with --compare: compare this bench.json instead of measuring"
    )
    parser.add_argument(
        "--fail-on-regression", action="store_true", help="exit with status 1 when --compare finds a regression"
    )
    overrides = parser.add_argument_group("overrides of the profile or config (default: its value)")
    overrides.add_argument("--batch-sizes", type=_batch_list, default=argparse.SUPPRESS, help="e.g. 1,8,16,32")
    overrides.add_argument(
        "--targets",
        default=argparse.SUPPRESS,
        help="comma-separated target names to keep (torch/fp32 is always kept: the reference)",
    )
    overrides.add_argument("--warmup", type=int, default=argparse.SUPPRESS, help="untimed calls per point")
    overrides.add_argument("--iters", type=int, default=argparse.SUPPRESS, help="most timed calls per point")
    overrides.add_argument("--min-iters", type=int, default=argparse.SUPPRESS, help="fewest timed calls per point")
    overrides.add_argument("--max-seconds", type=float, default=argparse.SUPPRESS, help="time budget per point")
    overrides.add_argument("--threads", type=int, default=argparse.SUPPRESS, help="intra-op threads of every backend")
    overrides.add_argument(
        "--threshold",
        type=float,
        default=argparse.SUPPRESS,
        dest="compare_threshold",
        help="relative change that --compare flags (0.1 = 10%%)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--dump-config", action="store_true", help="print the effective config as JSON and exit")
    parser.set_defaults(run=run)
    return parser


def config_from_args(args: argparse.Namespace) -> Any:
    """The BenchConfig that --profile/--config and the overrides describe."""
    from sgjnd.bench.config import REFERENCE, load_config, profile_config
    from sgjnd.errors import UsageError

    config = load_config(args.config) if args.config else profile_config(args.profile)
    changes: dict[str, Any] = {}
    for name in ("batch_sizes", "warmup", "iters", "min_iters", "max_seconds", "threads", "compare_threshold"):
        if hasattr(args, name):
            changes[name] = getattr(args, name)
    if "iters" in changes and "min_iters" not in changes:
        changes["min_iters"] = min(config.min_iters, changes["iters"])
    if hasattr(args, "targets"):
        wanted = {t.strip() for t in args.targets.split(",") if t.strip()} | {REFERENCE}
        unknown = sorted(wanted - {t.name for t in config.targets})
        if unknown:
            raise UsageError(
                f"unknown target(s) {unknown} in --targets: expected some of {[t.name for t in config.targets]}"
            )
        changes["targets"] = tuple(t for t in config.targets if t.name in wanted)
        changes["e2e_strategies"] = {
            s: tuple(n for n in names if n == "*" or n in wanted) for s, names in config.e2e_strategies.items()
        }
    return config.replace(**changes) if changes else config


def run(args: argparse.Namespace) -> int:
    from sgjnd.bench.config import dump_config
    from sgjnd.errors import UsageError

    config = config_from_args(args)
    if args.dump_config:
        print(dump_config(config), end="")
        return 0
    if args.results is not None:
        if args.compare is None:
            raise UsageError("--results NEW.json compares an existing run: give the baseline with --compare OLD.json")
        return _compare_only(args, config.compare_threshold)

    from sgjnd.bench.api import benchmark, output_files
    from sgjnd.bench.report import compare_text, speedup_rows
    from sgjnd.fileio import check_output_dir, check_output_files

    check_output_dir(args.out, what="benchmark output folder (-o)")
    check_output_files(args.out, output_files(), what="benchmark output folder (-o)")

    weights, model_dir = _model(args)
    outcome = benchmark(
        config,
        args.out,
        weights=weights,
        model_dir=model_dir,
        compare_with=args.compare,
        plots=not args.no_plots,
        show_progress=not args.quiet,
    )
    rows = speedup_rows(outcome.run)
    print(f"sgjnd bench ({config.profile}, {outcome.run.model.get('name')}, {outcome.run.duration_s / 60:.1f} min)")
    print(
        f"{'target':<20} {'status':<10} {'ms/patch@' + str(config.speedup_batch):>12} {'speed-up':>9} "
        f"{'ms/image':>9} {'speed-up':>9}"
    )
    for r in rows:
        print(f"{r[0].strip('`'):<20} {r[2][:10]:<10} {r[3]:>12} {r[4]:>9} {r[6]:>9} {r[7]:>9}")
    for role, path in outcome.files.items():
        print(f"{role}: {path}")
    if args.compare is not None:
        print(compare_text(outcome.changes, config.compare_threshold))
    return 1 if args.fail_on_regression and outcome.regressions else 0


def _compare_only(args: argparse.Namespace, threshold: float) -> int:
    from sgjnd.bench.api import compare_files, output_files
    from sgjnd.bench.report import compare_text, regressions
    from sgjnd.bench.results import read_run
    from sgjnd.fileio import check_output_dir, check_output_files

    check_output_dir(args.out, what="benchmark output folder (-o)")
    check_output_files(args.out, output_files(), what="benchmark output folder (-o)")
    new = read_run(args.results)
    args.out.mkdir(parents=True, exist_ok=True)
    changes, paths = compare_files(args.compare, new, args.out, threshold=threshold, new_name=str(args.results))
    print(compare_text(changes, threshold))
    for role, path in paths.items():
        print(f"{role}: {path}")
    if regressions(changes):
        print(f"sgjnd bench: {len(regressions(changes))} regression(s) against {args.compare}", file=sys.stderr)
    return 1 if args.fail_on_regression and regressions(changes) else 0


def _model(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(checkpoint, model directory) from --model (either kind) or the deprecated --weights."""
    import sys

    if args.weights is not None:
        print("sgjnd: --weights is deprecated and will be removed in the next release: use --model", file=sys.stderr)
        return args.weights, None
    if args.model is None:
        return None, None
    return (None, args.model) if args.model.is_dir() else (args.model, None)
