"""MAC counting (analytic cases, torch against ONNX) and the sgemm peak."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sgjnd.bench.frame import count_macs_onnx, count_macs_torch, matmul_peak  # noqa: E402


def test_conv_and_linear_counts_are_analytic():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    count = count_macs_torch(net, torch.zeros(2, 3, 6, 6))
    assert count.by_kind["conv"] == 8 * 6 * 6 * 3 * 3 * 3  # output elements x (Cin x k x k), per sample
    assert count.by_kind["linear"] == 10 * 288
    assert count.total == count.by_kind["conv"] + count.by_kind["linear"]
    assert count.gflop == pytest.approx(2 * count.total / 1e9)


def test_attention_count_is_analytic():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mha(x[:, :3], x, x, need_weights=False)[0]

    count = count_macs_torch(Block().eval(), torch.zeros(1, 10, 16))
    lq, lk, e = 3, 10, 16
    assert count.by_kind["linear"] == lq * e * e + 2 * lk * e * e + lq * e * e  # q, k, v and output projections
    assert count.by_kind["attention"] == 2 * lq * lk * e  # QK^T and attention x V


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_torch_and_onnx_counts_agree_on_the_tiny_encoder(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from sgjnd.model import create_model

    encoder = create_model("sgjnd_tiny", seed=0).encoder
    x = torch.zeros(1, 3, 64, 64)
    path = tmp_path / "encoder.onnx"
    torch.onnx.export(encoder, (x,), str(path), input_names=["patches"], output_names=["features"],
                      dynamic_axes={"patches": {0: "batch"}}, opset_version=17, dynamo=False)
    from_torch = count_macs_torch(encoder, x)
    from_onnx = count_macs_onnx(path)
    assert from_onnx.uncounted == ()
    assert from_onnx.by_kind == from_torch.by_kind
    assert from_torch.by_kind["attention"] > 0 and from_torch.by_kind["conv"] > 0


def test_r50_backbone_is_about_resnet50():
    from sgjnd.model.resnet import ResNet

    count = count_macs_torch(ResNet().eval(), torch.zeros(1, 3, 224, 224))
    assert count.gmac == pytest.approx(4.09, abs=0.02)  # the published ResNet-50 figure without the classifier


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_matmul_peak(library):
    peak = matmul_peak(library, size=128, repeats=1)
    assert peak.gflops > 0 and peak.seconds > 0 and peak.size == 128
    assert peak.gflops == pytest.approx(2 * 128**3 / peak.seconds / 1e9)
    assert peak.threads is None or peak.threads >= 1


def test_matmul_peak_honours_threads_and_restores_torch():
    before = torch.get_num_threads()
    peak = matmul_peak("torch", size=128, repeats=1, threads=1)
    assert peak.threads == 1 and torch.get_num_threads() == before
    numpy_peak = matmul_peak("numpy", size=128, repeats=1, threads=1)
    assert numpy_peak.threads == 1 or "threadpoolctl is not installed" in numpy_peak.note
