"""`sgjnd init`: a checkpoint with deterministic, UNTRAINED weights from a seed (for demos and benchmarks)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "init",
        help="write a checkpoint with untrained weights drawn from a seed",
        description="Write a checkpoint of a registered model with deterministic random (UNTRAINED) weights. "
        "Its predictions carry no perceptual meaning; every output made with it says so.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("name", help="registered model name (see `sgjnd init --list`)", nargs="?", default="sgjnd_r50")
    parser.add_argument("-o", "--output", type=Path, help="checkpoint path (.pt); a .json sidecar is written beside it")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the initialisation")
    parser.add_argument("--list", action="store_true", help="list the registered models and exit")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgjnd.errors import UsageError
    from sgjnd.model import create_model, list_models, save_checkpoint

    if args.list:
        print("\n".join(list_models()))
        return 0
    if args.output is None:
        raise UsageError("give the checkpoint path with -o/--output, e.g. -o sgjnd_r50_seed0.pt")
    from sgjnd.fileio import check_output_file
    from sgjnd.spec import sidecar_path

    # Only a checkpoint of ours (one with its sidecar) is replaced; anything else is refused and left intact.
    check_output_file(args.output, what="checkpoint (.pt)", ours=lambda p: sidecar_path(p).is_file())
    model = create_model(args.name, seed=args.seed)
    weights = f"UNTRAINED: deterministic random initialisation of {args.name} from seed {args.seed}"
    sidecar = save_checkpoint(model, args.output, weights=weights)
    print(f"wrote {args.output} (sha256 {sidecar.artifact.sha256[:12]}…) and its sidecar; weights: {weights}")
    return 0
