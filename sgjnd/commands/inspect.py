"""`sgjnd inspect`: an artifact's sidecar and, for a TensorRT engine, its layers and their precisions."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `sgjnd inspect`."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "inspect",
        help="show an artifact's sidecar and a TensorRT engine's layers",
        description="Print one JSON document: the artifact's sidecar (hash-checked) and, for an engine on a machine "
        "with TensorRT and a GPU, the engine inspector's layers with the precision each runs in. An engine built "
        "on another GPU model of the same compute capability is inspected with a warning (inference refuses it "
        "unless allowed).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("artifact", type=Path, metavar="ENGINE", help="an .engine (or .onnx/.pt) with its sidecar")
    parser.add_argument("--raw", action="store_true", help="include TensorRT's full inspector JSON")
    parser.add_argument("--no-layers", action="store_true", help="only the sidecar: do not load the engine")
    parser.add_argument("--device", type=int, default=0, help="CUDA device ordinal")
    parser.add_argument(
        "--allow-host-code", action="store_true",
        help="allow a version-compatible engine's embedded host code to run on load (trusted engines only)",
    )
    parser.set_defaults(run=run)
    return parser


def inspect_artifact(
    path: Path,
    *,
    layers: bool = True,
    raw: bool = False,
    device: int = 0,
    allow_host_code: bool = False,
    allow_other_gpu_model: bool = True,
) -> dict[str, Any]:
    """The report ``sgjnd inspect`` prints.

    Loading an engine for its layers applies the TensorRT backend's checks (``load_checked_engine``), with one
    difference: an engine built on another GPU model of the same compute capability, which the backend refuses
    unless ``allow_other_gpu_model``, is only warned about here by default. Inspection is read-only (no inference
    runs), and it is how one looks at such an engine before deciding to run or rebuild it.

    Args:
        path: the artifact (``.engine``, ``.onnx``, ``.pt``); its sidecar must be beside it.
        layers: load an engine to report its layers (needs TensorRT and a GPU).
        raw: include TensorRT's full inspector JSON.
        device: CUDA device ordinal.
        allow_host_code: allow a version-compatible engine's embedded host code to run on load.
        allow_other_gpu_model: warn (True) or refuse (False, as the backend's default) when the engine was built
            on another GPU model of the same compute capability.

    Raises:
        SpecError: the artifact or its sidecar is missing or they do not match, or the engine cannot load here
            (another TensorRT release or compute capability; another GPU model with ``allow_other_gpu_model`` off).
    """
    from sgjnd.spec import read_sidecar

    sidecar = read_sidecar(path)
    report: dict[str, Any] = {"artifact": str(path), "sidecar": dataclasses.asdict(sidecar), "layers": None}
    if sidecar.artifact.kind != "engine":
        report["layers_unavailable"] = "layer information exists for TensorRT engines only"
    elif not layers:
        report["layers_unavailable"] = "not requested (--no-layers)"
    else:
        from sgjnd.errors import BackendUnavailable
        from sgjnd.export.trt import engine_information

        try:
            info = engine_information(
                path, device=device, allow_host_code=allow_host_code, allow_other_gpu_model=allow_other_gpu_model
            )
        except BackendUnavailable as exc:  # the sidecar is still worth showing
            report["layers_unavailable"] = str(exc)
        else:
            report["layers"] = info["summary"]
            if raw:
                report["inspector"] = info["raw"]
    return report


def run(args: argparse.Namespace) -> int:
    """Print the report as JSON."""
    report = inspect_artifact(
        args.artifact, layers=not args.no_layers, raw=args.raw, device=args.device,
        allow_host_code=args.allow_host_code,
    )
    print(json.dumps(report, indent=2, sort_keys=False, default=str))
    return 0
