"""What this machine has: library versions, CPU features, backends and devices (for `sgjnd info` and reports)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform
from typing import Any

from sgjnd.engine_spec import PRODUCTS
from sgjnd.runtime.backends.registry import EXTRAS, list_backends
from sgjnd.runtime.cpu import cpu_info as cpu_info  # re-exported: `sgjnd info` and reports use it from here

_LIBRARIES = (
    "numpy",
    "opencv-python-headless",
    "torch",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorrt",
    "tensorrt-rtx-cu13",
    "openvino",
    "cuda-python",
    "cuda-bindings",
    "nvidia-modelopt",
    "scikit-image",
)


def library_versions() -> dict[str, str | None]:
    """Installed distribution versions (None when absent), read from package metadata without importing."""
    versions: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def tensorrt_available(product: str = "tensorrt") -> bool:
    """True only for a real TensorRT or TensorRT-RTX (the stubs or an empty namespace package do not count): the
    backend's own check (:func:`sgjnd.runtime.backends.trt.trt_module`)."""
    from sgjnd.errors import BackendUnavailable
    from sgjnd.runtime.backends.trt import trt_module

    try:
        trt_module(PRODUCTS[product])
    except BackendUnavailable:
        return False
    return True


_PROBES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
           **{name: product.module for name, product in PRODUCTS.items()}}
"""Backend name -> the module whose presence decides "installed"."""
_NOTES = {"tensorrt-rtx": " (builds engines without a GPU; running them needs an RTX-class GPU, cc 7.5/8.x/12.x)"}


def backend_status() -> dict[str, str]:
    """Backend name -> 'available' or the reason it is not (checked without loading a model)."""
    status: dict[str, str] = {}
    for name in list_backends():
        module = _PROBES.get(name, name)
        if importlib.util.find_spec(module) is None:
            status[name] = f"not installed (pip install 'sgjnd[{EXTRAS[name]}]')"
        elif name in PRODUCTS and not tensorrt_available(name):
            status[name] = f"not usable: `{module}` imports but is not a real build (stubs?)"
        else:
            status[name] = "available" + _NOTES.get(name, "")
    return status


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's available execution providers, or [] when it is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    providers: list[str] = onnxruntime.get_available_providers()
    return providers


def openvino_cpu() -> dict[str, Any]:
    """What OpenVINO's CPU plugin reports (version, ``OPTIMIZATION_CAPABILITIES``), or why it cannot say.

    Returns:
        ``{"version": ..., "capabilities": [...]}`` (``BF16``, ``INT8``, ``FP32``, ...), or ``{"reason": ...}`` when
        OpenVINO is not installed or its CPU plugin cannot be queried.
    """
    if importlib.util.find_spec("openvino") is None:
        return {"reason": f"not installed (pip install 'sgjnd[{EXTRAS['openvino']}]')"}
    try:
        import openvino

        core = openvino.Core()
        capabilities = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        return {"version": openvino.__version__.split("-")[0], "capabilities": capabilities}
    except Exception as exc:  # a broken install or a CPU the plugin refuses: report, never fail `sgjnd info`
        return {"reason": f"{type(exc).__name__}: {exc}"}


def environment() -> dict[str, Any]:
    """Everything above in one JSON-serialisable dictionary."""
    import cv2

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "libraries": library_versions(),
        "opencv_build": cv2.__version__,
        "backends": backend_status(),
        "onnxruntime_providers": onnxruntime_providers(),
        "openvino_cpu": openvino_cpu(),
    }
