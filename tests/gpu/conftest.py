"""GPU tests: anything marked ``gpu`` is skipped, with the reason, unless an NVIDIA GPU and its library are here.

``@pytest.mark.gpu`` needs full TensorRT; ``@pytest.mark.gpu(product="tensorrt-rtx")`` needs TensorRT-RTX and a GPU
of a compute capability it supports (7.5, 8.x, 12.x: not the H100/H200's 9.0). ``make test-gpu`` sets
``SGJND_REQUIRE_GPU=1``: on the GPU machine a failed detection is then an error, not a silent skip; a GPU that
TensorRT-RTX does not support still skips its tests, with that reason.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

SKIP_REASON = "no NVIDIA GPU / {title} on this machine: run `make test-gpu` on a GPU machine"


@functools.cache
def gpu_unavailable(product_name: str = "tensorrt") -> tuple[str, bool] | None:
    """Why the GPU tests of ``product_name`` cannot run here (and whether that is fatal under
    SGJND_REQUIRE_GPU=1), or None when the library, the CUDA bindings and a suitable GPU are all present."""
    from sgjnd.engine_spec import RTX_COMPUTE_CAPABILITIES, TENSORRT_RTX, trt_product
    from sgjnd.errors import BackendUnavailable
    from sgjnd.runtime import cuda
    from sgjnd.runtime.backends.trt import require_tensorrt

    product = trt_product(product_name)
    try:
        device = cuda.require_device(cuda.load_cuda())
    except BackendUnavailable as exc:
        return str(exc), True
    try:
        require_tensorrt(product)
    except BackendUnavailable as exc:
        return str(exc), product is not TENSORRT_RTX
    if product is TENSORRT_RTX and device.compute_capability not in RTX_COMPUTE_CAPABILITIES:
        return (f"TensorRT-RTX does not support {device.name} (compute capability {device.compute_capability}); "
                "its engines run on RTX-class GPUs of 7.5, 8.x and 12.x"), False
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("gpu")
        if marker is None:
            continue
        product = str(marker.kwargs.get("product", "tensorrt"))
        verdict = gpu_unavailable(product)
        if verdict is None:
            continue
        detail, fatal = verdict
        if fatal and os.environ.get("SGJND_REQUIRE_GPU") == "1":
            raise pytest.UsageError(f"SGJND_REQUIRE_GPU=1 but the GPU tests cannot run: {detail}")
        title = "TensorRT-RTX" if product == "tensorrt-rtx" else "TensorRT"
        item.add_marker(pytest.mark.skip(reason=f"{SKIP_REASON.format(title=title)} ({detail})"))


@pytest.fixture(scope="session")
def tiny_graphs(tmp_path_factory: pytest.TempPathFactory, calib_photos: Path) -> Path:
    """The untrained tiny model (max batch 16): encoder.onnx/head.onnx, and the fp16 and int8 graphs (TensorRT
    flavour, INT8 head too) made by `sgjnd calibrate` on real photos, as a user makes them before `sgjnd build`."""
    pytest.importorskip("torch", reason="the tiny model is made with torch: pip install 'sgjnd[onnx]'")
    onnx_export = pytest.importorskip("sgjnd.export.onnx")
    from sgjnd.cli import main
    from sgjnd.model import create_model, save_checkpoint

    out = tmp_path_factory.mktemp("tiny")
    checkpoint = out / "tiny.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=0), checkpoint, weights="UNTRAINED: random init, seed 0")
    onnx_export.onnx_from_checkpoint(checkpoint, out, max_batch=16)
    assert main(["calibrate", str(out), "--images", str(calib_photos), "--precision", "int8", "--target",
                 "tensorrt", "--num-patches", "64", "--head", "int8", "--no-report", "--quiet"]) == 0
    assert main(["calibrate", str(out), "--precision", "fp16", "--no-report", "--quiet"]) == 0
    return out
