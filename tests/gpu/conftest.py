"""GPU tests: anything marked ``gpu`` is skipped, with the reason, unless an NVIDIA GPU and TensorRT are here.

``make test-gpu`` sets ``SGJND_REQUIRE_GPU=1``: on the GPU machine a failed detection is then an error, not a
silent skip.
"""

from __future__ import annotations

import os

import pytest

SKIP_REASON = "no NVIDIA GPU / TensorRT on this machine: run `make test-gpu` on a GPU machine"


def gpu_unavailable() -> str | None:
    """Why the GPU tests cannot run here, or None when TensorRT, the CUDA bindings and a GPU are all present."""
    from sgjnd.errors import BackendUnavailable
    from sgjnd.runtime import cuda
    from sgjnd.runtime.backends.trt import require_tensorrt

    try:
        require_tensorrt()
        cuda.require_device(cuda.load_cuda())
    except BackendUnavailable as exc:
        return str(exc)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    detail = gpu_unavailable()
    if detail is None:
        return
    if os.environ.get("SGJND_REQUIRE_GPU") == "1":
        raise pytest.UsageError(f"SGJND_REQUIRE_GPU=1 but the GPU tests cannot run: {detail}")
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in gpu_items:
        item.add_marker(skip)
