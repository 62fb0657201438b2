"""`sgjnd build`: TensorRT engines (encoder and head) from a model directory's ONNX graphs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sgjnd.engine_spec import (
    BUILD_PRECISIONS,
    HARDWARE_COMPATIBILITY,
    MAX_OPT_LEVEL,
    PRODUCTS,
    RTX_COMPUTE_CAPABILITIES,
    RTX_DEFAULT_COMPUTE_CAPABILITIES,
    BatchProfile,
    BuildConfig,
)

_DEFAULTS = BuildConfig()

DESCRIPTION = """\
Build encoder[.PREC].engine and head[.PREC].engine, each with a .json sidecar, in MODEL_DIR.

fp32 builds from encoder.onnx/head.onnx; fp16 and int8 from the precision-prepared graphs that `sgjnd calibrate`
writes (encoder.fp16.onnx, encoder.int8.onnx, ...) as STRONGLY_TYPED networks, which works on TensorRT 10 and 11.
An engine runs only with the TensorRT version and GPU that built it unless --version-compatible or
--hardware-compatibility says otherwise; the sidecar records both and the runtime refuses a mismatch.

--runtime tensorrt-rtx builds encoder[.PREC].rtx.engine with NVIDIA TensorRT-RTX instead, ahead of time and
without a GPU, for the compute capabilities given by --compute-capability (default: Ampere and later); they run
on RTX GPUs of those compute capabilities (not on 9.0/10.x data-centre GPUs, which need full TensorRT).
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `sgjnd build`."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "build",
        help="build TensorRT engines from a model directory",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="model directory from `sgjnd export`")
    parser.add_argument("--precision", choices=BUILD_PRECISIONS, default=_DEFAULTS.precision, help="engine precision")
    parser.add_argument(
        "--runtime",
        choices=tuple(PRODUCTS),
        default=_DEFAULTS.runtime,
        help="the NVIDIA library that builds and runs the engines: full TensorRT (on the target GPU) or TensorRT-RTX "
        "(ahead of time, no GPU needed to build)",
    )
    parser.add_argument(
        "--compute-capability",
        default=",".join(_DEFAULTS.compute_capabilities),
        metavar="CC[,CC...]",
        help=f"tensorrt-rtx only: target compute capabilities, some of {','.join(RTX_COMPUTE_CAPABILITIES)} "
        f"(default: {','.join(RTX_DEFAULT_COMPUTE_CAPABILITIES)}, Ampere and later; build 7.5 on its own)",
    )
    parser.add_argument(
        "--batch",
        default=str(_DEFAULTS.batch),
        metavar="MIN,OPT,MAX",
        help="batch-axis optimisation profile for every input; kernels are tuned for OPT, buffers sized for MAX",
    )
    parser.add_argument(
        "--workspace", type=float, default=_DEFAULTS.workspace_gib, metavar="GiB", help="builder workspace limit"
    )
    parser.add_argument(
        "--opt-level",
        type=int,
        default=_DEFAULTS.opt_level,
        metavar="N",
        help=f"builder optimisation level 0..{MAX_OPT_LEVEL}: lower builds faster, higher may run faster",
    )
    parser.add_argument(
        "--timing-cache",
        type=Path,
        default=_DEFAULTS.timing_cache,
        metavar="FILE",
        help="timing cache to load before and save after each build (speeds up rebuilds; per GPU and TensorRT)",
    )
    parser.add_argument(
        "--version-compatible",
        action="store_true",
        help="engine that later TensorRT releases of the same major version can run; it embeds host code, which "
        "the runtime loads only when allowed (allow_host_code=True)",
    )
    parser.add_argument(
        "--hardware-compatibility",
        choices=HARDWARE_COMPATIBILITY,
        default=_DEFAULTS.hardware_compatibility,
        help="ampere+: any GPU of compute capability >= 8.0; same-cc: any GPU of this GPU's compute capability "
        "(both may be slower); None: this GPU model only",
    )
    parser.add_argument(
        "--legacy-precision-flags",
        action="store_true",
        help="LEGACY, TensorRT 10 only (removed in 11): build the FP32 graphs weakly typed with BuilderFlag.FP16/INT8; "
        "int8 needs a calibration cache or calibration batches through the Python API",
    )
    parser.add_argument("--tf32", action="store_true", help="allow TF32 math in FP32 layers (faster, ~1e-3 error)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device ordinal to build on")
    parser.set_defaults(run=run)
    return parser


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The validated BuildConfig the arguments describe.

    Raises:
        UsageError: an option cannot work.
    """
    return BuildConfig(
        precision=args.precision,
        batch=BatchProfile.parse(args.batch),
        workspace_gib=args.workspace,
        opt_level=args.opt_level,
        timing_cache=args.timing_cache,
        version_compatible=args.version_compatible,
        hardware_compatibility=args.hardware_compatibility,
        legacy_precision_flags=args.legacy_precision_flags,
        tf32=args.tf32,
        runtime=args.runtime,
        compute_capabilities=tuple(cc.strip() for cc in args.compute_capability.split(",") if cc.strip()),
    ).validate()


def run(args: argparse.Namespace) -> int:
    """Build both engines and print their paths."""
    config = config_from_args(args)
    from sgjnd.export.trt import engines_from_model_dir

    for path in engines_from_model_dir(args.model_dir, config, device=args.device):
        print(path)
    return 0
