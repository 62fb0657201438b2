"""Backend registry: name -> "module:Class", imported only when chosen, so the core stays lean."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from sgjnd.errors import BackendUnavailable, UsageError
from sgjnd.runtime.backends.base import Backend, ModelBackends
from sgjnd.spec import GraphName

log = logging.getLogger(__name__)

AUTO = "auto"
"""The backend name that asks :func:`open_model` to choose (see :mod:`sgjnd.runtime.backends.choose`)."""

BACKENDS: dict[str, str] = {
    "torch": "sgjnd.runtime.backends.torch_backend:TorchBackend",
    "onnxruntime": "sgjnd.runtime.backends.ort:OrtBackend",
    "tensorrt": "sgjnd.runtime.backends.trt:TrtBackend",
    "tensorrt-rtx": "sgjnd.runtime.backends.trt_rtx:RtxBackend",
    "openvino": "sgjnd.runtime.backends.openvino_backend:OpenVinoBackend",
}
"""Backend name -> implementing class."""

EXTRAS: dict[str, str] = {"torch": "torch", "onnxruntime": "ort", "tensorrt": "trt", "tensorrt-rtx": "trt-rtx",
                          "openvino": "openvino"}
"""Backend name -> the pip extra that installs its dependencies."""


def list_backends() -> list[str]:
    """Names of all registered backends (installed or not)."""
    return sorted(BACKENDS)


def backend_class(name: str) -> type[Backend]:
    """The class of backend ``name``, imported now.

    Raises:
        UsageError: the name is not registered.
        BackendUnavailable: its module cannot be imported (a dependency is missing).
    """
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}: expected one of {', '.join(list_backends())}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {name!r} needs a package that is not installed ({exc}). "
            f"Install it with: pip install 'sgjnd[{EXTRAS[name]}]'"
        ) from exc
    cls: type[Backend] = getattr(module, class_name)
    return cls


def open_model(backend: str, location: Path, *, precision: str = "fp32", **options: Any) -> ModelBackends:
    """Open both graphs of a model on ``backend`` (not loaded yet: use the result in a ``with`` block).

    Args:
        backend: a registered backend name, or ``auto``: the fastest CPU backend and precision for the model
            directory ``location`` among those whose graphs passed the accuracy gate (a ``precision`` other than fp32
            restricts the choice to it); the pick is logged (INFO).
        location: a checkpoint (torch) or a model directory (onnxruntime, openvino, tensorrt).
        precision: which prepared artifacts to use where a directory holds several (bf16: the fp32 graphs at bf16
            inference precision, openvino only).
        options: passed to the backend's constructor.
    """
    if backend == AUTO:
        from sgjnd.runtime.backends.choose import choose_for_model_dir

        choice = choose_for_model_dir(Path(location), precision=None if precision == "fp32" else precision)
        log.info("%s", choice.line())
        backend, precision = choice.backend, choice.precision
    cls = backend_class(backend)
    opener = getattr(cls, "open_model", None)
    if opener is None:
        raise UsageError(f"backend {backend!r} cannot open whole models")
    result: ModelBackends = opener(Path(location), precision=precision, **options)
    return result


def graph_names() -> tuple[GraphName, GraphName]:
    """The two graphs every model has, in run order."""
    return ("encoder", "head")
