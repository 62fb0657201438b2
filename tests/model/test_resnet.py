"""The backbone loads torchvision ``resnet50`` weights key for key; the layout here is written from torchvision's
architecture, independently of ``sgjnd.model.resnet``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sgjnd.errors import CheckpointError, UsageError
from sgjnd.model import ResNet, create_model, load_backbone_weights

TORCHVISION_RESNET50_PARAMS = 25_557_032
"""Parameter count of torchvision.models.resnet50 as published in its model table (classifier included)."""


def torchvision_resnet50_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``torchvision.models.resnet50().state_dict()``.

    Written from torchvision's definition: ``ResNet(Bottleneck, [3, 4, 6, 3])``; a 7x7/2 stem of 64 channels;
    Bottleneck = 1x1 (planes) -> 3x3 (planes, stride) -> 1x1 (4·planes), each followed by BatchNorm; the first
    block of a stage gets ``downsample = Sequential(conv1x1(stride), BatchNorm)`` when its stride or width
    changes; ``fc = Linear(2048, 1000)``.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks, stride) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2), strict=True), start=1
    ):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0 and (stride != 1 or inplanes != planes * 4):
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


def fake_torchvision_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.tensor(7, dtype=torch.int64) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g)
        for k, s in torchvision_resnet50_shapes().items()
    }


@pytest.fixture(scope="module")
def tv_state() -> dict[str, torch.Tensor]:
    return fake_torchvision_state_dict()


@pytest.fixture(scope="module")
def r50() -> ResNet:
    """One ResNet-50 backbone shared by the module: a strict load replaces every tensor or raises before any."""
    return ResNet()


def test_layout_written_here_is_torchvision_resnet50() -> None:
    shapes = torchvision_resnet50_shapes()
    params = [k for k in shapes if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(shapes) == 320 and len(params) == 161
    total = sum(torch.Size(shapes[k]).numel() for k in params)
    assert total == TORCHVISION_RESNET50_PARAMS


def test_backbone_keys_and_shapes_equal_torchvision_without_fc(r50: ResNet) -> None:
    ours = {k: tuple(v.shape) for k, v in r50.state_dict().items()}
    expected = {k: s for k, s in torchvision_resnet50_shapes().items() if not k.startswith("fc.")}
    assert ours == expected


def test_torchvision_state_dict_loads_strictly(r50: ResNet, tv_state: dict[str, torch.Tensor]) -> None:
    ignored = load_backbone_weights(r50, tv_state)
    assert ignored == ["fc.bias", "fc.weight"]
    loaded = r50.state_dict()
    for key, value in tv_state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


@pytest.mark.parametrize("prefix", ["module.", "backbone.", "module.backbone."])
def test_wrapper_prefixes_are_stripped(r50: ResNet, prefix: str) -> None:
    other = fake_torchvision_state_dict(seed=len(prefix))
    load_backbone_weights(r50, {prefix + k: v for k, v in other.items()})
    assert torch.equal(r50.conv1.weight, other["conv1.weight"])


def test_loads_into_the_sgjnd_r50_encoder_from_a_file(tmp_path: Path, tv_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": tv_state, "epoch": 90}, path)  # a training-checkpoint wrapper
    model = create_model("sgjnd_r50", seed=0)
    load_backbone_weights(model, path)
    assert torch.equal(model.state_dict()["encoder.backbone.layer4.2.conv3.weight"], tv_state["layer4.2.conv3.weight"])


def test_wrong_shape_is_named(r50: ResNet, tv_state: dict[str, torch.Tensor]) -> None:
    bad = dict(tv_state)
    bad["layer2.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    with pytest.raises(
        CheckpointError,
        match=r"1 shape mismatch.*layer2\.0\.conv2\.weight expected \(128, 128, 3, 3\) "
        r"got \(128, 128, 1, 1\)",
    ):
        load_backbone_weights(r50, bad)


def test_extra_and_missing_keys_are_named(r50: ResNet, tv_state: dict[str, torch.Tensor]) -> None:
    bad = dict(tv_state)
    bad["layer5.0.conv1.weight"] = torch.zeros(1)
    del bad["bn1.running_var"]
    with pytest.raises(CheckpointError) as info:
        load_backbone_weights(r50, bad)
    message = str(info.value)
    assert "1 missing key(s): bn1.running_var" in message
    assert "1 unexpected key(s): layer5.0.conv1.weight" in message


def test_only_fc_is_ignored(r50: ResNet, tv_state: dict[str, torch.Tensor]) -> None:
    bad = dict(tv_state)
    bad["fc_extra.weight"] = torch.zeros(1)  # starts like fc but is not fc.*
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): fc_extra\.weight"):
        load_backbone_weights(r50, bad)


def test_resnet50_weights_do_not_fit_the_tiny_backbone(tv_state: dict[str, torch.Tensor]) -> None:
    with pytest.raises(CheckpointError, match=r"blocks \(1, 1, 1, 1\), width 8.*unexpected key\(s\).*… and \d+ more"):
        load_backbone_weights(create_model("sgjnd_tiny"), tv_state)


def test_not_a_model_and_not_a_state_dict(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="SGJND network or a ResNet"):
        load_backbone_weights(torch.nn.Linear(2, 2), {})  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="non-empty mapping"):
        load_backbone_weights(ResNet(blocks=(1, 1, 1, 1), width=8), {})
    path = tmp_path / "weights.txt"
    path.write_text("not weights\n")
    with pytest.raises(CheckpointError, match="text starting 'not weights"):
        load_backbone_weights(ResNet(blocks=(1, 1, 1, 1), width=8), path)


@pytest.mark.parametrize(("blocks", "width"), [((1, 1, 1, 1), 8), ((2, 1, 3, 1), 4)])
def test_stage_outputs_have_the_resnet_strides_and_widths(blocks: tuple[int, int, int, int], width: int) -> None:
    backbone = ResNet(blocks, width).eval()
    with torch.inference_mode():
        stages = backbone(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in stages] == [
        (2, 4 * width, 16, 24),
        (2, 8 * width, 8, 12),
        (2, 16 * width, 4, 6),
        (2, 32 * width, 2, 3),
    ]
    assert [len(getattr(backbone, f"layer{i}")) for i in range(1, 5)] == list(blocks)
