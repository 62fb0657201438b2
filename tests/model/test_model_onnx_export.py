"""Both graphs export to ONNX with a dynamic batch and agree with PyTorch in ONNX Runtime.

This is a property of the network (no data-dependent control flow, exportable attention), tested here with the plain
``torch.onnx.export``; the export stage's own API is tested in ``tests/export``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sgjnd.model import SGJND, create_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


class _Head(torch.nn.Module):
    """The head with named outputs in a tuple, as the exporter wants them."""

    def __init__(self, model: SGJND) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, f_ref: torch.Tensor, f_dis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(f_ref, f_dis)


@pytest.fixture(scope="module")
def tiny() -> SGJND:
    return create_model("sgjnd_tiny", seed=0)


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    *,
    dynamo: bool,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(
                module,
                args,
                path,
                input_names=inputs,
                output_names=outputs,
                opset_version=18,
                dynamo=True,
                dynamic_shapes={name: {0: batch} for name in inputs},
                verbose=False,
            )
        else:
            torch.onnx.export(
                module,
                args,
                path,
                input_names=inputs,
                output_names=outputs,
                opset_version=17,
                dynamo=False,
                dynamic_axes={name: {0: "batch"} for name in inputs + outputs},
            )


def _check_parity(tiny: SGJND, enc_path: Path, head_path: Path, opset: int) -> None:
    for path in (enc_path, head_path):
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= opset
    enc = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(head_path), providers=["CPUExecutionProvider"])
    s = tiny.spec.patch_size
    for batch in (1, 3, 7):  # none of them the export batch
        ref = torch.randn(batch, 3, s, s)
        dis = ref + 0.3 * torch.randn(batch, 3, s, s)
        with torch.inference_mode():
            f_ref, f_dis = tiny.encoder(ref), tiny.encoder(dis)
            q, w = tiny.head(f_ref, f_dis)
        (features,) = enc.run(None, {"patches": ref.numpy()})
        np.testing.assert_allclose(features, f_ref.numpy(), rtol=1e-4, atol=1e-5)
        q_ort, w_ort = head.run(None, {"f_ref": f_ref.numpy(), "f_dis": f_dis.numpy()})
        assert q_ort.shape == w_ort.shape == (batch,)
        np.testing.assert_allclose(q_ort, q.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(w_ort, w.numpy(), rtol=1e-4, atol=1e-6)


def test_torchscript_export_opset17_dynamic_batch(tiny: SGJND, tmp_path: Path) -> None:
    s = tiny.spec.patch_size
    f = tiny.spec.feature_dim
    _export(
        tiny.encoder, (torch.randn(2, 3, s, s),), tmp_path / "encoder.onnx", ["patches"], ["features"], dynamo=False
    )
    _export(
        _Head(tiny),
        (torch.randn(2, f), torch.randn(2, f)),
        tmp_path / "head.onnx",
        ["f_ref", "f_dis"],
        ["q", "w"],
        dynamo=False,
    )
    _check_parity(tiny, tmp_path / "encoder.onnx", tmp_path / "head.onnx", opset=17)


@pytest.mark.slow
def test_dynamo_export_opset18_dynamic_batch(tiny: SGJND, tmp_path: Path) -> None:
    s = tiny.spec.patch_size
    f = tiny.spec.feature_dim
    _export(tiny.encoder, (torch.randn(2, 3, s, s),), tmp_path / "encoder.onnx", ["patches"], ["features"], dynamo=True)
    _export(
        _Head(tiny),
        (torch.randn(2, f), torch.randn(2, f)),
        tmp_path / "head.onnx",
        ["f_ref", "f_dis"],
        ["q", "w"],
        dynamo=True,
    )
    _check_parity(tiny, tmp_path / "encoder.onnx", tmp_path / "head.onnx", opset=18)
