"""(reference, JPEG-distorted) patch pairs, made the one way the predictor makes them.

An image is padded to at least one patch by edge replication, cut into a patch grid, and each patch is JPEG-coded
at a QF with the exact-crop codec (:meth:`~sgjnd.runtime.jpeg.JpegCodec.distorted_patches`: the patch's pixels
equal those of the whole image's JPEG round trip) and given to the encoder as its graph takes them (uint8 pixels,
or normalised float32: ``ModelSpec.encoder_input``). The predictor, compare,
the benchmarks' drift batch, calibration and export parity all make their patches here, so what they measure is
what the predictor runs.

The JPEG trials are made one of two ways, with identical pixels (``tests/runtime/test_jpeg_exact.py``):

- ``opencv``: libjpeg through OpenCV, one QF at a time; with ``prefetch`` the next QF's trials are made on a worker
  thread while the caller runs the encoder on the current one (OpenCV and the normalisation release the GIL).
- ``exact``: the integer array pipeline of :mod:`sgjnd.runtime.jpeg_exact`, several QFs per call sharing one forward
  DCT, on numpy or, with a torch ``device``, on that device (a GPU: the CPU then does no JPEG work at all). On a CPU
  it is slower than OpenCV (measured: ~5x per trial), so it is chosen for GPUs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from sgjnd.errors import UsageError
from sgjnd.runtime.jpeg import JpegCodec
from sgjnd.runtime.patches import PatchGrid, encoder_patches, extract_patches, pad_to_patch, patch_grid
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


Trials = Literal["opencv", "exact"]
"""How JPEG trials are made (see the module's docstring)."""

EXACT_QF_CHUNK = 8
"""QFs per round of the exact pipeline: their uint8 patches are held at once (the forward DCT is shared by all)."""


class PairMaker:
    """Makes the patches the encoder sees for one model.

    Args:
        spec: the model (patch size, normalisation, JPEG settings).
        margin: pixels of context around each patch in the exact-crop JPEG encode.
        trials: ``opencv`` or ``exact`` (same pixels; see the module's docstring).
        device: for ``exact``, a torch device to make the trials on (None: numpy on the CPU).
        prefetch: for ``opencv``, make the next QF's trials on a worker thread while the caller consumes the current
            one (:meth:`distorted_stream`).
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        margin: int = 16,
        trials: Trials = "opencv",
        device: str | None = None,
        prefetch: bool = False,
    ) -> None:
        if trials not in ("opencv", "exact"):
            raise UsageError(f"JPEG trials must be 'opencv' or 'exact', got {trials!r}")
        if device is not None and trials != "exact":
            raise UsageError(f"a trial device ({device!r}) needs trials='exact': OpenCV's JPEG runs on the CPU only")
        self.spec = spec
        self.margin = margin
        self.codec = JpegCodec(spec.jpeg)
        self.trials: Trials = trials
        self.device = device
        self.prefetch = prefetch
        if trials == "exact":
            from sgjnd.runtime.jpeg_exact import check_exact_settings

            check_exact_settings(spec.jpeg)

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

    def encoder_input(self, pixels: np.ndarray) -> np.ndarray:
        """(N, s, s, 3) uint8 BGR patches -> the encoder's input: the same pixels for a uint8 graph, (N, 3, s, s)
        float32 normalised for a float one."""
        return encoder_patches(pixels, self.spec)

    def reference(self, image: GriddedImage) -> np.ndarray:
        """The encoder's input for the reference patches."""
        return self.encoder_input(self.reference_pixels(image))

    def distorted(self, image: GriddedImage, qf: int) -> np.ndarray:
        """The encoder's input for the patches JPEG-coded at ``qf``."""
        return self.encoder_input(self.distorted_pixels(image, qf))

    def distorted_stream(self, image: GriddedImage, qfs: Sequence[int]) -> Iterator[np.ndarray]:
        """The encoder's input QF by QF, in ``qfs`` order.

        Held at once: one QF's patches (``opencv``), two with ``prefetch`` (the one being consumed and the next), or
        a chunk of :data:`EXACT_QF_CHUNK` QFs' uint8 patches (``exact``).
        """
        if self.trials == "exact":
            for pixels in self._exact_rounds(image, qfs):
                yield from map(self.encoder_input, pixels)
        elif self.prefetch and len(qfs) > 1:
            yield from prefetched(lambda qf: self.distorted(image, qf), qfs)
        else:
            for qf in qfs:
                yield self.distorted(image, qf)

    def _exact_rounds(self, image: GriddedImage, qfs: Sequence[int]) -> Iterator[np.ndarray]:
        """(round, N, s, s, 3) uint8 trials from the exact pipeline, :data:`EXACT_QF_CHUNK` QFs a round, back on the
        host; each crop is coded once for all rounds."""
        from sgjnd.runtime.jpeg_exact import distorted_patch_rounds

        rounds = distorted_patch_rounds(
            self.codec, image.bgr, image.grid, list(qfs), per_round=EXACT_QF_CHUNK, margin=self.margin,
            device=self.device,
        )  # fmt: skip
        for out in rounds:
            yield out if isinstance(out, np.ndarray) else out.cpu().numpy()


_T = TypeVar("_T")
_R = TypeVar("_R")


def prefetched(make: Callable[[_T], _R], items: Iterable[_T], *, depth: int = 1) -> Iterator[_R]:
    """``map(make, items)`` with up to ``depth`` results made ahead on one worker thread while the caller uses the
    current one. Results come in order; an error is raised where its item's result is taken; work not yet taken is
    cancelled when the caller stops early."""
    pending: deque[Future[_R]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sgjnd-jpeg") as pool:
        try:
            for item in items:
                pending.append(pool.submit(make, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


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
