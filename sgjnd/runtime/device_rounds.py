"""Search rounds with every array on one torch device: the GPU path of the predictor (DESIGN.md §3, issue 17).

Where both graphs run on tensors on one device (:class:`~sgjnd.runtime.backends.base.DeviceRunner`: PyTorch, and
TensorRT or ONNX Runtime CUDA where torch is installed) and the JPEG trials are the exact integer pipeline
(:mod:`sgjnd.runtime.jpeg_exact`), one image costs one copy to the device and one small copy back per round:

- the image goes to the device once; its reference patches are cut there and encoded once (features stay there);
- each round's trials are made there from the once-coded crops, given to the encoder as its graph takes them
  (uint8 pixels, or normalised on the device for a float32 graph, bit for bit as the host would), and the features
  feed the head there;
- only q and w of the round come back (one host synchronisation per round: the search needs S(QF) to choose the
  next round), and S(QF) is computed from them on the host exactly as on the host path.

Batches are made by the host path's own code (:mod:`sgjnd.runtime.batching` with ``device=True``: the runner's
preferred size, never above its maximum, the last one optionally padded), so the results are the same up to the
device's arithmetic. Stage times
on a GPU are enqueue times, except the copy back, which waits for the round and is booked to inference.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING

import numpy as np

from sgjnd.errors import UsageError
from sgjnd.runtime.backends.base import ModelBackends, tensor_device_of
from sgjnd.runtime.batching import Stage, batch_size_for, run_batched, run_stream
from sgjnd.runtime.pairs import EXACT_QF_CHUNK, GriddedImage, PairMaker
from sgjnd.spec import ModelSpec

if TYPE_CHECKING:
    import torch


def shared_tensor_device(models: ModelBackends) -> str | None:
    """The device where both graphs of ``models`` run on tensors, or None when they cannot (or not on one)."""
    encoder, head = tensor_device_of(models.encoder), tensor_device_of(models.head)
    return encoder if encoder is not None and _same_device(encoder, head) else None


def _same_device(a: str, b: str | None) -> bool:
    if b is None:
        return False
    norm = {"cuda": "cuda:0"}
    return norm.get(a, a) == norm.get(b, b)


def encoder_input_on_device(pixels: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """(N, s, s, 3) uint8 BGR pixels on a device as ``spec``'s encoder takes them: the pixels, or (N, 3, s, s)
    float32 normalised there with the same per-channel tables as :func:`sgjnd.runtime.patches.normalize_patches`
    (so the values are identical to the host's)."""
    import torch

    if spec.encoder_input == "uint8":
        return pixels.contiguous()
    source_channel = (2, 1, 0) if spec.channel_order == "rgb" else (0, 1, 2)
    table = _normalisation_tables(spec.mean, spec.std, str(pixels.device))
    index = pixels.long()
    return torch.stack([table[c][index[..., src]] for c, src in enumerate(source_channel)], dim=1).contiguous()


@functools.lru_cache(maxsize=8)
def _normalisation_tables(mean: tuple[float, ...], std: tuple[float, ...], device: str) -> torch.Tensor:
    """(3, 256) float32 tables of normalize_patches, copied to ``device`` once (not once per batch)."""
    import torch

    levels = np.arange(256, dtype=np.float64) / 255.0
    tables = np.stack([((levels - mean[c]) / std[c]).astype(np.float32) for c in range(3)])
    return torch.from_numpy(tables).to(device)


class DeviceRounds:
    """One image's search rounds on ``device`` (see the module docstring).

    Args:
        models: both graphs, entered, running on tensors on ``device``.
        pairs: the predictor's pair maker (exact trials; its ``device`` is where they are made).
        device: the torch device.
        batch_size: encoder batch size (the head uses its own preferred size).
        pad: pad the last batch of each call to full size.
    """

    def __init__(self, models: ModelBackends, pairs: PairMaker, device: str, batch_size: int, *, pad: bool) -> None:
        if pairs.trials != "exact":
            raise UsageError("device-resident rounds need the exact JPEG pipeline (trials='exact')")
        self.models, self.pairs, self.device = models, pairs, device
        self.spec = models.model
        self.batch_size, self.pad = batch_size, pad
        self.head_size = batch_size_for(models.head)

    def encode(self, pixels: torch.Tensor | Iterable[torch.Tensor], stage: Stage = nullcontext) -> torch.Tensor:
        """(N, s, s, 3) uint8 pixels on the device (one tensor, or parts batched as one, like
        :func:`sgjnd.runtime.batching.run_stream`) -> (N, F) features on the device."""
        import torch

        parts = [pixels] if isinstance(pixels, torch.Tensor) else pixels
        inputs = (encoder_input_on_device(part, self.spec) for part in parts)
        out = run_stream(self.models.encoder, "patches", inputs, self.batch_size, pad=self.pad, stage=stage,
                         device=True)
        features: torch.Tensor = out["features"]
        return features

    def upload(self, image: GriddedImage) -> tuple[torch.Tensor, torch.Tensor]:
        """The image on the device (copied once) and its reference patches, cut there."""
        import torch

        bgr = torch.from_numpy(np.ascontiguousarray(image.bgr)).to(self.device)
        s = image.grid.patch_size
        coords = image.grid.coords.tolist()
        reference = torch.stack([bgr[y : y + s, x : x + s] for y, x in coords])
        return bgr, reference

    def rounds(self, image: GriddedImage, bgr: torch.Tensor, qfs: Sequence[int]) -> Iterable[torch.Tensor]:
        """(k·N, s, s, 3) uint8 trials on the device, :data:`~sgjnd.runtime.pairs.EXACT_QF_CHUNK` QFs at a time."""
        from sgjnd.runtime.jpeg_exact import distorted_patch_rounds

        rounds = distorted_patch_rounds(
            self.pairs.codec, bgr, image.grid, list(qfs), per_round=EXACT_QF_CHUNK, margin=self.pairs.margin,
            device=self.device,
        )  # fmt: skip
        for chunk in rounds:
            yield chunk.reshape(-1, *chunk.shape[2:])

    def score(
        self, f_ref: torch.Tensor, f_dis: torch.Tensor, stage: Stage = nullcontext
    ) -> tuple[np.ndarray, np.ndarray]:
        """q and w of each (reference, distorted) pair, f_dis QF-major; the one copy back to the host of a round."""
        import torch

        reps = len(f_dis) // len(f_ref)
        feeds = {"f_ref": f_ref.repeat(reps, 1), "f_dis": f_dis}
        out = run_batched(self.models.head, feeds, self.head_size, pad=self.pad, stage=stage, device=True)
        with stage():  # waits for the round's work on the device
            qw = torch.stack([out["q"].reshape(-1), out["w"].reshape(-1)]).to("cpu", torch.float32).numpy()
        return qw[0], qw[1]


__all__ = ["DeviceRounds", "encoder_input_on_device", "shared_tensor_device"]

