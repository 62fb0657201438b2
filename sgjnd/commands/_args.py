"""What several subcommands share: argument groups (model selection, prediction settings, batch workers) and the
one-line stderr messages of a run. Subcommand modules import this one, never each other."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sgjnd.errors import UsageError
from sgjnd.jobs.runner import JobConfig
from sgjnd.runtime.backends.base import ModelBackends
from sgjnd.runtime.backends.ort import DEFAULT_PROVIDERS
from sgjnd.runtime.backends.registry import list_backends
from sgjnd.runtime.modeldir import RUN_PRECISIONS
from sgjnd.runtime.predictor import JPEG_TRIALS, ROUNDS, PredictConfig
from sgjnd.runtime.search import STRATEGIES, SearchConfig
from sgjnd.runtime.source import AUTO, ModelSource, open_source

_SEARCH_DEFAULTS = SearchConfig()
_PREDICT_DEFAULTS = PredictConfig()
_JOB_DEFAULTS = JobConfig()


def add_model_args(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    """The one way every command that runs a model names it: --model [--backend] [--precision] and options.

    Args:
        parser: the command's parser.
        positional: the command takes the model as its first positional argument (``sgjnd serve DIR``) as well.
    """
    group = parser.add_argument_group("model")
    if positional:
        group.add_argument("model_arg", nargs="?", type=Path, metavar="MODEL", help="same as --model")
    group.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a model directory from `sgjnd export` or a checkpoint (.pt); default: the bundled demo model",
    )
    group.add_argument("--weights", type=Path, default=None, help=argparse.SUPPRESS)  # deprecated alias of --model
    group.add_argument(
        "--backend",
        choices=[*list_backends(), AUTO],
        default=AUTO,
        help="inference backend; auto: torch for a checkpoint; for a model directory its TensorRT engines where a GPU "
        "can run them, else the fastest CPU backend and precision whose graphs passed `sgjnd calibrate`'s accuracy "
        "gate (a --precision restricts it to that precision)",
    )
    group.add_argument(
        "--precision",
        choices=RUN_PRECISIONS,
        default=None,
        help="which prepared graphs to run (default: fp32, or auto's choice); bf16: the fp32 graphs at bf16 inference "
        "precision (openvino, on CPUs with AVX-512-BF16 or AMX)",
    )
    group.add_argument(
        "--providers",
        default=None,
        help="ONNX Runtime execution providers in order of preference, comma-separated (cpu, cuda, tensorrt); "
        f"default: {','.join(DEFAULT_PROVIDERS)}",
    )
    group.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the library's choice)")
    group.add_argument("--device", default=None, help="torch device for --backend torch (default: cpu)")


def source_from_args(args: argparse.Namespace) -> ModelSource:
    """The :class:`ModelSource` the model arguments describe (options checked once the backend is known)."""
    location = getattr(args, "model_arg", None) or args.model
    if args.weights is not None:
        print("sgjnd: --weights is deprecated and will be removed in the next release: use --model", file=sys.stderr)
        if location is not None and Path(location) != Path(args.weights):
            raise UsageError(f"--weights {args.weights} and --model {location} name two models: give one (--model)")
        location = args.weights
    options: dict[str, object] = {"threads": args.threads, "device": args.device}
    if args.providers is not None:
        options["providers"] = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    return ModelSource(args.backend, location, args.precision, options)


def announce(line: str) -> None:
    """Print what a resolution picked, on stderr (stdout stays the command's output)."""
    print(line, file=sys.stderr)


def report_failure(command: str, path: Path, reason: str) -> None:
    """One stderr line for a file that failed; the path is not repeated when the reason starts with it."""
    prefix = "" if reason.startswith(str(path)) else f"{path}: "
    print(f"sgjnd {command}: {prefix}{reason}", file=sys.stderr, flush=True)


def open_model_from_args(args: argparse.Namespace) -> ModelBackends:
    """Open (not yet load) the model the arguments name; says on stderr what it picked when something was left open."""
    return open_source(source_from_args(args), announce=announce)


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
    group.add_argument(
        "--jpeg",
        choices=JPEG_TRIALS,
        default=_PREDICT_DEFAULTS.jpeg,
        help="how JPEG trials are made (same pixels every way): opencv (libjpeg on the CPU), exact (the integer "
        "array pipeline: on the encoder's CUDA device, else numpy), auto (exact on a CUDA encoder, else opencv)",
    )
    group.add_argument(
        "--rounds",
        choices=ROUNDS,
        default=_PREDICT_DEFAULTS.rounds,
        help="where a search round runs: auto (on the GPU where both graphs take tensors on one CUDA device, else "
        "the host), host, or device (forced, a CPU included: for tests)",
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
        jpeg=getattr(args, "jpeg", _PREDICT_DEFAULTS.jpeg),
        rounds=getattr(args, "rounds", _PREDICT_DEFAULTS.rounds),
    )


def add_job_args(parser: argparse.ArgumentParser) -> None:
    """--workers and --prefetch of a batch over many files (`sgjnd predict`, `sgjnd compress`)."""
    group = parser.add_argument_group("batch")
    group.add_argument(
        "--workers",
        type=int,
        default=_JOB_DEFAULTS.workers,
        help="threads that decode, make JPEG trials and run the model (one inference at a time)",
    )
    group.add_argument("--prefetch", type=int, default=_JOB_DEFAULTS.prefetch, help="images read ahead of the workers")


def job_config_from_args(args: argparse.Namespace) -> JobConfig:
    """The JobConfig the arguments describe."""
    return JobConfig(workers=args.workers, prefetch=args.prefetch)
