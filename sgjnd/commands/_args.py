"""Argument groups shared by several subcommands (model selection, prediction settings)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sgjnd.errors import UsageError
from sgjnd.runtime.backends.base import ModelBackends
from sgjnd.runtime.backends.registry import list_backends, open_model
from sgjnd.runtime.modeldir import RUN_PRECISIONS
from sgjnd.runtime.predictor import PredictConfig
from sgjnd.runtime.search import STRATEGIES, SearchConfig

_SEARCH_DEFAULTS = SearchConfig()
_PREDICT_DEFAULTS = PredictConfig()


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--backend, --weights/--model, --precision and backend options."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--backend",
        choices=[*list_backends(), "auto"],
        default="torch",
        help="inference backend; auto: the fastest CPU backend and precision for --model DIR among those whose graphs "
        "passed `sgjnd calibrate`'s accuracy gate (a --precision other than fp32 restricts it to that precision)",
    )
    group.add_argument(
        "--weights", type=Path, help="PyTorch checkpoint (.pt with its .json sidecar), for --backend torch"
    )
    group.add_argument(
        "--model", type=Path, help="model directory from `sgjnd export` (onnxruntime, openvino, tensorrt, auto)"
    )
    group.add_argument(
        "--precision",
        choices=RUN_PRECISIONS,
        default="fp32",
        help="which prepared graphs to run; bf16: the fp32 graphs at bf16 inference precision (openvino, on CPUs "
        "with AVX-512-BF16 or AMX)",
    )
    group.add_argument(
        "--providers",
        default="cpu",
        help="ONNX Runtime execution providers in order of preference, comma-separated (cpu, cuda, tensorrt)",
    )
    group.add_argument("--threads", type=int, default=None, help="intra-op threads (None: the library's choice)")
    group.add_argument("--device", default="cpu", help="torch device for --backend torch")


def model_location(args: argparse.Namespace) -> Path:
    """The checkpoint or model directory the arguments name, checked against the backend."""
    if args.backend == "torch":
        if args.weights is None:
            raise UsageError("--backend torch needs --weights CKPT (a checkpoint written by sgjnd)")
        return Path(args.weights)
    if args.model is None:
        raise UsageError(f"--backend {args.backend} needs --model DIR (create one with: sgjnd export CKPT -o DIR)")
    return Path(args.model)


def open_model_from_args(args: argparse.Namespace) -> ModelBackends:
    """Open (not yet load) the model the arguments name; ``--backend auto`` chooses, and says what it chose."""
    backend, precision = args.backend, args.precision
    if backend == "auto":
        from sgjnd.runtime.backends.choose import choose_for_model_dir

        choice = choose_for_model_dir(model_location(args), precision=None if precision == "fp32" else precision)
        print(choice.line(), file=sys.stderr)
        backend, precision = choice.backend, choice.precision
    options: dict[str, object] = {"threads": args.threads}
    if backend == "onnxruntime":
        options["providers"] = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    if backend == "torch":
        options["device"] = args.device
    return open_model(backend, model_location(args), precision=precision, **options)


def add_predict_args(parser: argparse.ArgumentParser) -> None:
    """Search and patch settings."""
    group = parser.add_argument_group("prediction")
    group.add_argument("--search", choices=STRATEGIES, default=_SEARCH_DEFAULTS.strategy, help="QF search strategy")
    group.add_argument("--window", type=int, default=_SEARCH_DEFAULTS.window, help="majority window width along QF")
    group.add_argument(
        "--threshold", type=float, default=_SEARCH_DEFAULTS.threshold, help="S at which a QF is invisible"
    )
    group.add_argument("--min-qf", type=int, default=_SEARCH_DEFAULTS.qfs[0], help="lowest candidate QF")
    group.add_argument("--max-qf", type=int, default=_SEARCH_DEFAULTS.qfs[-1], help="highest candidate QF")
    group.add_argument("--max-patches", type=int, default=_PREDICT_DEFAULTS.max_patches, help="patches per image cap")
    group.add_argument(
        "--stride", type=int, default=_PREDICT_DEFAULTS.stride, help="patch stride (default: patch size)"
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=_PREDICT_DEFAULTS.batch_size,
        help="encoder batch size (default: the backend's preferred)",
    )
    group.add_argument(
        "--max-pixels",
        type=int,
        default=_PREDICT_DEFAULTS.max_pixels,
        help="refuse images with more pixels, read from the header before decoding",
    )


def predict_config_from_args(args: argparse.Namespace) -> PredictConfig:
    """The PredictConfig the arguments describe."""
    if not 1 <= args.min_qf <= args.max_qf <= 100:
        raise UsageError(f"need 1 <= --min-qf <= --max-qf <= 100, got {args.min_qf} and {args.max_qf}")
    search = SearchConfig(
        strategy=args.search,
        qfs=tuple(range(args.min_qf, args.max_qf + 1)),
        window=args.window,
        threshold=args.threshold,
    )
    return PredictConfig(
        search=search,
        stride=args.stride,
        max_patches=args.max_patches,
        batch_size=args.batch_size,
        max_pixels=args.max_pixels,
    )
