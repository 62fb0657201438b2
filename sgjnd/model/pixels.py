"""The encoder with its preprocessing inside: uint8 BGR pixels in, features out (``encoder_input = "uint8"``).

The runtime cuts patches as (N, s, s, 3) uint8 BGR, the layout OpenCV decodes to. A float-input encoder needs the
host to flip the channels, scale, normalise and transpose every patch to (N, 3, s, s) float32 first: four times the
bytes to copy to a GPU, and one more pass over the pixels on the CPU. :class:`PixelEncoder` does those steps as the
first ops of the graph instead, in the order TensorRT needs: its uint8 input tensors must be cast to a float type
before any other layer uses them, so the graph is Cast -> Transpose -> Gather (channel order) -> Mul -> Add.

The scale and offset are computed in float64 and rounded once to float32 (``1 / (255 std)`` and ``-mean / std``),
so the graph's input to the network differs from the runtime's float path
(:func:`sgjnd.runtime.patches.normalize_patches`) by float32 rounding only; export checks the two against each
other on real patches.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sgjnd.spec import ModelSpec


class PixelEncoder(nn.Module):
    """``encoder(normalise(pixels))`` as one module, for export and for the torch backend.

    Args:
        encoder: the float-input encoder ((N, 3, s, s) normalised patches -> (N, F) features).
        spec: the model spec giving ``channel_order``, ``mean`` and ``std``.
    """

    def __init__(self, encoder: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.encoder = encoder
        channels = [2, 1, 0] if spec.channel_order == "rgb" else [0, 1, 2]
        scale = [1.0 / (255.0 * s) for s in spec.std]
        offset = [-m / s for m, s in zip(spec.mean, spec.std, strict=True)]
        # Buffers, not parameters: they are constants of the spec and must not appear in a state_dict as weights.
        self.channels: Tensor
        self.scale: Tensor
        self.offset: Tensor
        self.register_buffer("channels", torch.tensor(channels, dtype=torch.int64), persistent=False)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64).float().view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float64).float().view(1, 3, 1, 1),
                             persistent=False)

    def normalize(self, pixels: Tensor) -> Tensor:
        """(N, s, s, 3) uint8 BGR -> (N, 3, s, s) float32 normalised, in the network's channel order."""
        x = pixels.to(torch.float32).permute(0, 3, 1, 2)
        x = torch.index_select(x, 1, self.channels)
        return x * self.scale + self.offset

    def forward(self, pixels: Tensor) -> Tensor:
        """(N, s, s, 3) uint8 BGR pixels -> (N, F) features."""
        features: Tensor = self.encoder(self.normalize(pixels))
        return features


__all__ = ["PixelEncoder"]
