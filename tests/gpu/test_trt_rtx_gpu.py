"""TensorRT-RTX on a real RTX-class GPU: engines built ahead of time (no GPU involved) run through the tensorrt-rtx
backend, agree with ONNX Runtime FP32, and leave a runtime cache that the next start reuses.

Skipped with the reason where TensorRT-RTX or a GPU it supports is missing (it has no kernels for compute
capability 9.0: H100 and H200 machines skip these tests by design).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from sgjnd.spec import read_sidecar

pytestmark = pytest.mark.gpu(product="tensorrt-rtx")

BATCH = "1,4,16"


@pytest.fixture(scope="module")
def model_dir(tiny_graphs: Path) -> Path:
    """The tiny model's FP32, FP16 and INT8 graphs (tests/gpu/conftest.py) and their TensorRT-RTX engines."""
    from sgjnd.cli import main

    for precision in ("fp32", "fp16", "int8"):
        argv = ["build", str(tiny_graphs), "--runtime", "tensorrt-rtx", "--precision", precision, "--batch", BATCH]
        assert main(argv) == 0
    return tiny_graphs


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_parity_with_onnxruntime_fp32(model_dir: Path, precision: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    from sgjnd.compare.tensors import compare_outputs, format_comparisons, tolerances_for
    from sgjnd.runtime.backends.registry import open_model

    spec = read_sidecar(model_dir / "encoder.onnx").model
    session = ort.InferenceSession(str(model_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    patches = rng.standard_normal((5, 3, spec.patch_size, spec.patch_size)).astype(np.float32)
    with open_model("tensorrt-rtx", model_dir, precision=precision) as model:
        got = model.encoder.infer({"patches": patches})
    ref = {"features": session.run(None, {"patches": patches})[0]}
    comparisons = compare_outputs(ref, got, tolerances_for(precision))
    assert all(c.passed for c in comparisons), format_comparisons(comparisons, title=f" encoder {precision}")


def test_runtime_cache_is_saved_and_reused(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from sgjnd.runtime.backends.registry import open_model

    cache = model_dir / "head.fp16.rtx.engine.runtime-cache"
    cache.unlink(missing_ok=True)
    feeds = {"f_ref": np.ones((2, 128), np.float32), "f_dis": np.zeros((2, 128), np.float32)}
    with open_model("tensorrt-rtx", model_dir, precision="fp16") as model:
        first = model.head.infer(feeds)
    assert cache.is_file() and cache.stat().st_size > 0
    with caplog.at_level(logging.INFO, logger="sgjnd.runtime.backends.trt_rtx"), \
            open_model("tensorrt-rtx", model_dir, precision="fp16") as model:
        second = model.head.infer(feeds)
    assert any("loaded the TensorRT-RTX runtime cache" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(first["q"], second["q"], rtol=0, atol=0)
