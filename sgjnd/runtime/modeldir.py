"""The layout of a model directory: which file holds which graph at which precision.

``sgjnd export`` writes ``encoder.onnx`` and ``head.onnx`` (FP32); ``sgjnd calibrate`` adds precision-prepared
graphs such as ``encoder.int8.onnx`` (TensorRT flavour, symmetric int8 QDQ), ``encoder.int8-ort.onnx`` (ONNX
Runtime CPU flavour, U8S8 QDQ) and ``encoder.fp16.onnx``; ``sgjnd build`` writes ``encoder.engine``,
``encoder.fp16.engine`` and so on
(``encoder.fp16.rtx.engine`` for TensorRT-RTX). Every file has a ``.json`` sidecar (see :mod:`sgjnd.spec`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from sgjnd.errors import SpecError, UsageError
from sgjnd.fileio import OursTest, check_output_files, is_json_object_file
from sgjnd.spec import GraphName, sidecar_path

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "int8-ort")
"""Precisions a model directory can hold; ``int8`` is the TensorRT QDQ flavour, ``int8-ort`` the U8S8 CPU one."""

INFERENCE_ONLY_PRECISIONS: dict[str, str] = {"bf16": "fp32"}
"""Precisions that are a way of running another precision's graphs, not files: name -> the graphs they run.
``bf16``: the fp32 graphs at inference precision bf16, offered by the ``openvino`` backend on CPUs with AVX-512-BF16
or AMX."""

RUN_PRECISIONS: tuple[str, ...] = (*PRECISIONS, *INFERENCE_ONLY_PRECISIONS)
"""Every precision a target may name (``--precision``, ``BACKEND:DIR:PRECISION``); backends refuse what they lack."""

Extension = Literal["onnx", "engine", "rtx.engine"]
"""``engine``: a TensorRT engine; ``rtx.engine``: a TensorRT-RTX engine (``encoder.fp16.rtx.engine``), so both can
live in one model directory."""


def artifact_name(graph: GraphName, precision: str = "fp32", ext: Extension = "onnx") -> str:
    """File name of ``graph`` at ``precision``: ``encoder.onnx``, ``encoder.int8.onnx``, ``head.fp16.engine``."""
    if precision in INFERENCE_ONLY_PRECISIONS:
        raise UsageError(
            f"precision {precision!r} runs the {INFERENCE_ONLY_PRECISIONS[precision]} graphs at {precision} inference "
            f"precision and is offered by the openvino backend only; with this backend, use one of "
            f"{', '.join(PRECISIONS)}"
        )
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return f"{graph}.{ext}" if precision == "fp32" else f"{graph}.{precision}.{ext}"


def artifact_path(model_dir: Path, graph: GraphName, precision: str = "fp32", ext: Extension = "onnx") -> Path:
    """Path of ``graph`` at ``precision`` inside ``model_dir``."""
    return Path(model_dir) / artifact_name(graph, precision, ext)


def require_model_dir(model_dir: Path, *, rebuild_hint: str) -> Path:
    """Check that ``model_dir`` is an existing directory, naming the command that creates it otherwise."""
    path = Path(model_dir)
    if not path.exists():
        raise SpecError(f"model directory {path} does not exist. Create it with: {rebuild_hint}")
    if not path.is_dir():
        raise SpecError(f"{path} is a file, but a model directory was expected. Create one with: {rebuild_hint}")
    return path


def available_precisions(model_dir: Path, ext: Extension = "onnx") -> list[str]:
    """Precisions for which both graphs exist in ``model_dir``."""
    return [
        p
        for p in PRECISIONS
        if artifact_path(model_dir, "encoder", p, ext).is_file() and artifact_path(model_dir, "head", p, ext).is_file()
    ]


def check_artifacts_ours(paths: Iterable[Path], *, what: str = "model directory") -> None:
    """Refuse to replace, under an artifact's name, a file sgjnd did not write: a graph or engine is ours when its
    sidecar is a sidecar (a JSON object with ``model`` and ``artifact``), a sidecar when it is one. Checked before
    any work by export, calibration and engine builds, so that a user's ``encoder.onnx`` is never overwritten.

    Raises:
        UsageError: naming the files, left as they are.
    """
    def is_sidecar(path: Path) -> bool:
        return is_json_object_file(path, ("model", "artifact"))

    def has_sidecar(path: Path) -> bool:
        return sidecar_path(path).is_file() and is_sidecar(sidecar_path(path))

    by_folder: dict[Path, dict[str, OursTest]] = {}
    for path in map(Path, paths):
        tests = by_folder.setdefault(path.parent, {})
        tests[path.name] = has_sidecar
        tests[sidecar_path(path).name] = is_sidecar
    for folder, tests in by_folder.items():
        check_output_files(folder, tests, what=what)
