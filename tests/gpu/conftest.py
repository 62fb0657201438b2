"""GPU tests: anything marked ``gpu`` is skipped, with the reason, unless an NVIDIA GPU and its library are here.

``@pytest.mark.gpu`` needs full TensorRT; ``@pytest.mark.gpu(product="tensorrt-rtx")`` needs TensorRT-RTX and a GPU
of a compute capability it supports (7.5, 8.x, 12.x: not the H100/H200's 9.0). ``make test-gpu`` sets
``SGJND_REQUIRE_GPU=1``: on the GPU machine a failed detection is then an error, not a silent skip; a GPU that
TensorRT-RTX does not support still skips its tests, with that reason.
"""

from __future__ import annotations

import functools
import os

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
