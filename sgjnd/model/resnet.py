"""A ResNet (Bottleneck) backbone whose state_dict matches torchvision's ``resnet50`` key for key.

torchvision does not import beside the torch we pin, so the backbone is ours. Its module tree mirrors torchvision's
(``conv1``, ``bn1``, ``layer1``..``layer4`` of ``Bottleneck`` blocks with ``downsample`` = conv + BN on the first
block of a stage), so an ImageNet ``resnet50`` state_dict (torchvision or timm layout) loads into it with only the
classifier ``fc.*`` left over. ``blocks`` and ``width`` scale it down for tests without changing that structure.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

RESNET50_BLOCKS = (3, 4, 6, 3)
"""Bottleneck blocks per stage in ResNet-50."""

EXPANSION = 4
"""Output channels of a Bottleneck block divided by its inner width (torchvision's ``Bottleneck.expansion``)."""

TORCHVISION_IGNORED_PREFIXES = ("fc.",)
"""Key prefixes of a torchvision ResNet state_dict that the backbone has no place for (the ImageNet classifier)."""


def stage_channels(width: int) -> tuple[int, int, int, int]:
    """Output channels of stages 1..4 for a stem of ``width`` channels (256, 512, 1024, 2048 for width 64)."""
    return (width * EXPANSION, width * 2 * EXPANSION, width * 4 * EXPANSION, width * 8 * EXPANSION)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 Bottleneck: 1x1 -> 3x3 (stride here) -> 1x1, plus an identity or projected shortcut.

    Args:
        inplanes: input channels.
        planes: inner width; the block outputs ``planes * 4`` channels.
        stride: stride of the 3x3 convolution (and of the shortcut projection).
        downsample: the shortcut projection, or None for an identity shortcut.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def init_conv_bn(module: nn.Module) -> None:
    """He-normal (fan-out) convolutions and identity BatchNorm throughout ``module`` (torchvision's CNN init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """ResNet stem and four Bottleneck stages, without the classifier; returns the four stage outputs.

    Args:
        blocks: Bottleneck blocks in each of the four stages; ResNet-50 is ``(3, 4, 6, 3)``.
        width: channels of the stem; stage i outputs ``width * 2**(i-1) * 4`` channels. ResNet-50 is 64.
    """

    def __init__(self, blocks: Sequence[int] = RESNET50_BLOCKS, width: int = 64) -> None:
        super().__init__()
        if len(blocks) != 4 or any(int(n) < 1 for n in blocks):
            raise ValueError(f"blocks must be four positive counts, got {tuple(blocks)}")
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        self.blocks = tuple(int(n) for n in blocks)
        self.width = int(width)
        self.channels = stage_channels(self.width)
        self._inplanes = self.width
        self.conv1 = nn.Conv2d(3, self.width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(self.width, self.blocks[0], stride=1)
        self.layer2 = self._make_stage(self.width * 2, self.blocks[1], stride=2)
        self.layer3 = self._make_stage(self.width * 4, self.blocks[2], stride=2)
        self.layer4 = self._make_stage(self.width * 8, self.blocks[3], stride=2)
        self.reset_parameters()

    def _make_stage(self, planes: int, n_blocks: int, stride: int) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self._inplanes != planes * EXPANSION:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * EXPANSION, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * EXPANSION),
            )
        layers = [Bottleneck(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * EXPANSION
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, n_blocks)]
        return nn.Sequential(*layers)

    def reset_parameters(self) -> None:
        """torchvision's initialisation: He-normal (fan-out) convolutions, BatchNorm as identity."""
        init_conv_bn(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Stage outputs F1..F4 for ``x`` of shape (M, 3, H, W): strides 4, 8, 16 and 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return f1, f2, f3, f4


def count_parameters(module: nn.Module) -> int:
    """Number of trainable and frozen parameters (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())
