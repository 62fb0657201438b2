"""(reference, JPEG-distorted) patch pairs, made the one way the predictor makes them.

An image is padded to at least one patch by edge replication, cut into a patch grid, and each patch is JPEG-coded
at a QF with the exact-crop codec (:meth:`~sgjnd.runtime.jpeg.JpegCodec.distorted_patches`: the patch's pixels
equal those of the whole image's JPEG round trip) and normalised as the graphs expect. The predictor, compare,
the benchmarks' drift batch, calibration and export parity all make their patches here, so what they measure is
what the predictor runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from sgjnd.runtime.jpeg import JpegCodec
from sgjnd.runtime.patches import PatchGrid, extract_patches, normalize_patches, pad_to_patch, patch_grid
from sgjnd.spec import ModelSpec


@dataclass(frozen=True)
class GriddedImage:
    """An image ready for JPEG trials.

    Attributes:
        bgr: (H, W, 3) uint8 BGR, at least one patch in each dimension (edge-replicated if the original was smaller).
        grid: the patches to score.
        note: what padding was applied, for the result's notes; None when the image was used as it came.
    """

    bgr: np.ndarray
    grid: PatchGrid
    note: str | None = None

    def __len__(self) -> int:
        return len(self.grid)


class PairMaker:
    """Makes the patches the encoder sees for one model.

    Args:
        spec: the model (patch size, normalisation, JPEG settings).
        margin: pixels of context around each patch in the exact-crop JPEG encode.
    """

    def __init__(self, spec: ModelSpec, *, margin: int = 16) -> None:
        self.spec = spec
        self.margin = margin
        self.codec = JpegCodec(spec.jpeg)

    def grid(self, bgr: np.ndarray, *, stride: int | None = None, max_patches: int | None = None) -> GriddedImage:
        """The image padded to at least one patch, and its patch grid (``max_patches`` spread evenly over it)."""
        s = self.spec.patch_size
        padded_bgr, padded = pad_to_patch(bgr, s)
        note = None
        if padded:
            note = (
                f"image {bgr.shape[1]}x{bgr.shape[0]} is smaller than the {s}px patch: extended by edge replication "
                f"to {padded_bgr.shape[1]}x{padded_bgr.shape[0]} before the JPEG trials"
            )
        grid = patch_grid(padded_bgr.shape[0], padded_bgr.shape[1], s, stride=stride, max_patches=max_patches)
        return GriddedImage(bgr=padded_bgr, grid=grid, note=note)

    def reference_pixels(self, image: GriddedImage) -> np.ndarray:
        """(N, s, s, 3) uint8 BGR reference patches."""
        return extract_patches(image.bgr, image.grid)

    def distorted_pixels(self, image: GriddedImage, qf: int) -> np.ndarray:
        """(N, s, s, 3) uint8 BGR patches of the image's JPEG round trip at ``qf``."""
        return self.codec.distorted_patches(image.bgr, image.grid, int(qf), margin=self.margin)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 BGR patches -> the encoder's (N, 3, s, s) float32 input."""
        return normalize_patches(pixels, self.spec)

    def reference(self, image: GriddedImage) -> np.ndarray:
        """The encoder's input for the reference patches."""
        return self.normalize(self.reference_pixels(image))

    def distorted(self, image: GriddedImage, qf: int) -> np.ndarray:
        """The encoder's input for the patches JPEG-coded at ``qf``."""
        return self.normalize(self.distorted_pixels(image, qf))

    def distorted_stream(self, image: GriddedImage, qfs: Sequence[int]) -> Iterator[np.ndarray]:
        """The encoder's input QF by QF (one QF's patches held at a time), in ``qfs`` order."""
        for qf in qfs:
            yield self.distorted(image, qf)


@dataclass(frozen=True)
class PairSet:
    """Reference patches of several images and their distorted copies, laid out for one encoder pass.

    Attributes:
        patches: (n_ref + n_dis, 3, s, s) encoder input: every image's reference patches first, then each image's
            distorted patches QF by QF (image-major, then QF, then patch).
        n_ref: how many rows of ``patches`` are reference patches.
        ref_index: for each distorted row ``n_ref + i``, the row of its reference patch.
        qf: for each distorted row, its QF.
    """

    patches: np.ndarray
    n_ref: int
    ref_index: np.ndarray
    qf: np.ndarray

    def pairs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(f_ref, f_dis) head inputs from the encoder's features of :attr:`patches`."""
        return features[self.ref_index], features[self.n_ref :]


def make_pair_set(
    maker: PairMaker,
    images_bgr: Sequence[np.ndarray],
    qfs: Sequence[int],
    *,
    max_patches: int | None = None,
    stride: int | None = None,
) -> PairSet:
    """Every image's reference patches and their JPEG copies at every QF in ``qfs``, as one :class:`PairSet`."""
    refs: list[np.ndarray] = []
    dis: list[np.ndarray] = []
    ref_index: list[np.ndarray] = []
    qf_of: list[np.ndarray] = []
    n_ref = 0
    for bgr in images_bgr:
        image = maker.grid(bgr, stride=stride, max_patches=max_patches)
        refs.append(maker.reference(image))
        for qf in qfs:
            dis.append(maker.distorted(image, qf))
            ref_index.append(np.arange(n_ref, n_ref + len(image)))
            qf_of.append(np.full(len(image), int(qf)))
        n_ref += len(image)
    patches = np.ascontiguousarray(np.concatenate(refs + dis))
    empty = np.zeros(0, np.int64)
    return PairSet(
        patches=patches,
        n_ref=n_ref,
        ref_index=np.concatenate(ref_index) if ref_index else empty,
        qf=np.concatenate(qf_of) if qf_of else empty,
    )
