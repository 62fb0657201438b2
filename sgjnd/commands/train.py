"""`sgjnd train`: train a registered model on MCL-JCI, KonJND-1k or proxy labels from a config file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "train",
        help="train a model from a JSON/TOML config (see configs/)",
        description="Train any registered model on MCL-JCI, KonJND-1k or proxy labels (sgjnd label). Writes "
        "last.pt and best.pt (checkpoints with sidecars), train_state.pt (to resume), metrics.jsonl and run.json "
        "into the run folder; a run found there is resumed. Validation runs the runtime predictor on held-out "
        "source groups and stops early on the JND MAE.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("config", type=Path, help="training config (.json or .toml)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="run folder (default: the config's output)")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder or label CSV (overrides data.path)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if the run folder holds a run")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--threads", type=int, default=None, help="override the config's torch threads")
    parser.add_argument("--backbone-weights", type=Path, default=None,
                        help="backbone weights: a torchvision-layout ResNet-50 file for sgjnd_r50, a lukemelas-layout "
                        "EfficientNet-Lite0 file for sgjnd_effl0 (overrides model.backbone_weights)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and the split, then exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgjnd.train.config import load_config

    config = load_config(args.config)
    changes: dict[str, Any] = {}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.threads is not None:
        changes["threads"] = args.threads
    if args.data is not None:
        changes["data"] = dataclasses.replace(config.data, path=str(args.data))
    if args.backbone_weights is not None:
        changes["model"] = dataclasses.replace(config.model, backbone_weights=str(args.backbone_weights))
    config = dataclasses.replace(config, **changes)
    if args.dry_run:
        from sgjnd.train.loop import dataset_summary

        print(json.dumps({"config": config.to_dict(), "split": dataset_summary(config)}, indent=2))
        return 0
    from sgjnd.fileio import check_output_dir, check_output_files
    from sgjnd.train.loop import run_files, train

    if args.output is not None:
        check_output_dir(args.output, what="run folder (-o)")  # before any work
        check_output_files(args.output, run_files(), what="run folder (-o)")
    result = train(config, args.output, resume=not args.no_resume, progress=not args.quiet, max_steps=args.max_steps)
    best = "n/a" if result.best_mae is None else f"{result.best_mae:.2f} QF"
    print(f"run {result.out_dir}: {result.epochs_run} epoch(s), best epoch {result.best_epoch} (validation JND MAE "
          f"{best}){', stopped early' if result.stopped_early else ''}; best checkpoint {result.best}", file=sys.stderr)
    return 0
