"""The patch grid: where the s×s patches are cut, how they are cut, and how they are normalised for the encoder.

Policies:

- **Grid.** Cells are s×s windows with top-left corners at ``(i·stride, j·stride)`` for every ``i, j`` that keeps
  the window inside the image, starting at 0. A border narrower than one stride step at the bottom and right is
  not covered (at most ``stride − 1`` rows/columns when ``stride >= s``, more when ``stride > s``). The grid is a
  pure function of (H, W, s, stride, cap): no randomness.
- **Cap (even spreading).** When the grid has more cells than ``max_patches`` (k), a 2-D even subsample is taken:
  r rows of cells evenly spaced over the grid's rows, with k split over them as evenly as possible (row counts
  differ by at most one; the longer rows are themselves spread evenly), and within each row the columns evenly
  spaced. r is close to sqrt(k·rows/cols), so that the spacing is about the same both ways, but at least 2 rows and
  2 columns per row are used whenever the grid and k allow. So the chosen patches reach all four quadrants of the
  image when k >= 4 and the grid has at least 2×2 cells. Evenly spaced indices over the row-major cell list were
  not used: they alias with the row length (10 columns, every 10th cell: one column).
- **Small images.** An image with a side smaller than s has no cell. :func:`pad_to_patch` extends it at the bottom
  and right by edge replication (``cv2.BORDER_REPLICATE``) to s, and the *whole* pipeline (reference patches and the
  JPEG trials) then runs on the padded image; the predictor notes this in its result. :func:`patch_grid` refuses
  such an image, naming :func:`pad_to_patch`.

This module imports nothing from the package but :mod:`sgjnd.spec` and :mod:`sgjnd.errors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sgjnd.errors import UsageError
from sgjnd.spec import ModelSpec


@dataclass(frozen=True, eq=False)
class PatchGrid:
    """Where the patches of one image are.

    Attributes:
        coords: (N, 2) int64 array of the (y, x) top-left corners, row-major order.
        patch_size: side s of the square patches.
        image_shape: (H, W) of the image the grid was made for.
    """

    coords: np.ndarray
    patch_size: int
    image_shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.coords.shape[0])


def patch_grid(
    height: int,
    width: int,
    patch_size: int,
    *,
    stride: int | None = None,
    max_patches: int | None = 32,
) -> PatchGrid:
    """The deterministic sliding-window grid of an image, capped and spread evenly (see the module docstring).

    Args:
        height: image rows H.
        width: image columns W.
        patch_size: side s of the square patches.
        stride: step between cells in both directions; None means s (non-overlapping cells).
        max_patches: the most patches to return; None means no cap.

    Returns:
        The grid, with ``min(cells, max_patches)`` patches in row-major order.

    Raises:
        UsageError: a size, stride or cap is below 1, or the image is smaller than s on a side (pad it first
            with :func:`pad_to_patch`).
    """
    step = patch_size if stride is None else stride
    for name, value in (("height", height), ("width", width), ("patch_size", patch_size), ("stride", step)):
        if int(value) != value or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if max_patches is not None and max_patches < 1:
        raise UsageError(f"max_patches must be >= 1 or None (no cap), got {max_patches}")
    if height < patch_size or width < patch_size:
        raise UsageError(
            f"a {height}×{width} image is smaller than the {patch_size}×{patch_size} patch size: pad it first "
            f"with sgjnd.runtime.patches.pad_to_patch(image, {patch_size})"
        )
    rows = (height - patch_size) // step + 1
    cols = (width - patch_size) // step + 1
    if max_patches is None or rows * cols <= max_patches:
        ii, jj = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        cells = np.stack([ii.ravel(), jj.ravel()], axis=1)
    else:
        cells = _spread_cells(rows, cols, max_patches)
    coords = (cells * step).astype(np.int64)
    return PatchGrid(coords=np.ascontiguousarray(coords), patch_size=int(patch_size), image_shape=(height, width))


def _even(n: int, k: int) -> np.ndarray:
    """k distinct indices in range(n), evenly spaced and centred (k <= n)."""
    return ((np.arange(k) + 0.5) * n / k).astype(np.int64)


def _spread_cells(rows: int, cols: int, k: int) -> np.ndarray:
    """k (row, col) cell indices spread evenly over a rows × cols grid (k < rows·cols), row-major order."""
    ideal = math.sqrt(k * rows / cols)
    # At least 2 rows and at most k // 2 rows (2+ columns per row) where the grid and k allow; never fewer rows
    # than needed to hold k cells.
    lo = min(rows, 2, k)
    hi = min(rows, k // min(cols, 2))
    r = max(math.ceil(k / cols), min(max(round(ideal), lo), max(hi, lo)))
    base, extra = divmod(k, r)
    counts = np.full(r, base, dtype=np.int64)
    if extra:
        counts[_even(r, extra)] += 1
    out = [
        np.stack([np.full(c, row), _even(cols, int(c))], axis=1) for row, c in zip(_even(rows, r), counts, strict=True)
    ]
    return np.concatenate(out).astype(np.int64)


def pad_to_patch(image_bgr: np.ndarray, patch_size: int) -> tuple[np.ndarray, bool]:
    """Extend an image smaller than the patch size to at least s×s by edge replication at the bottom and right.

    Args:
        image_bgr: (H, W, C) image.
        patch_size: side s of the square patches.

    Returns:
        ``(image, padded)``: the image itself and False when both sides are already >= s, else a new
        (max(H, s), max(W, s), C) image and True.

    Raises:
        UsageError: the image is not a non-empty (H, W, C) array, or ``patch_size`` is below 1.
    """
    if patch_size < 1:
        raise UsageError(f"patch_size must be >= 1, got {patch_size}")
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or 0 in image_bgr.shape:
        raise UsageError(f"expected a non-empty (H, W, C) image array, got {_describe(image_bgr)}")
    height, width = image_bgr.shape[:2]
    bottom, right = max(0, patch_size - height), max(0, patch_size - width)
    if not bottom and not right:
        return image_bgr, False
    padded = cv2.copyMakeBorder(image_bgr, 0, bottom, 0, right, cv2.BORDER_REPLICATE)
    return padded.reshape(height + bottom, width + right, image_bgr.shape[2]), True


def extract_patches(image_bgr: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Cut the grid's patches out of an image.

    Args:
        image_bgr: (H, W, 3) uint8 image with the grid's ``image_shape``.
        grid: where to cut.

    Returns:
        (N, s, s, 3) uint8 array, in the grid's order.

    Raises:
        UsageError: the image's shape does not match the grid, or is not (H, W, 3) uint8.
    """
    _check_image(image_bgr, grid)
    s = grid.patch_size
    out = np.empty((len(grid), s, s, 3), dtype=np.uint8)
    for n, (y, x) in enumerate(grid.coords.tolist()):
        out[n] = image_bgr[y : y + s, x : x + s]
    return out


def encoder_patches(patches_bgr: np.ndarray, model: ModelSpec) -> np.ndarray:
    """BGR uint8 patches as the model's encoder graph takes them (:attr:`~sgjnd.spec.ModelSpec.encoder_input`).

    ``uint8``: the pixels themselves, C-contiguous (the graph normalises); ``float32``: :func:`normalize_patches`.

    Raises:
        UsageError: the patches are not (N, s, s, 3) uint8 with s equal to the spec's patch size.
    """
    if model.encoder_input == "uint8":
        _check_patches(patches_bgr, model)
        return np.ascontiguousarray(patches_bgr)
    return normalize_patches(patches_bgr, model)


def normalize_patches(patches_bgr: np.ndarray, model: ModelSpec) -> np.ndarray:
    """Turn BGR uint8 patches into a float encoder's input: channel order per the spec, /255, (x − mean)/std, NCHW.

    Args:
        patches_bgr: (N, s, s, 3) uint8 patches in BGR order.
        model: the model spec giving ``channel_order``, ``mean`` and ``std`` (in that channel order).

    Returns:
        (N, 3, s, s) float32 C-contiguous array.

    Raises:
        UsageError: the patches are not (N, s, s, 3) uint8 with s equal to the spec's patch size.
    """
    _check_patches(patches_bgr, model)
    s = model.patch_size
    source_channel = (2, 1, 0) if model.channel_order == "rgb" else (0, 1, 2)
    # One 256-entry table per output channel: exact in float64, rounded once to float32, and a gather is faster
    # than converting and scaling every pixel.
    levels = np.arange(256, dtype=np.float64) / 255.0
    out = np.empty((patches_bgr.shape[0], 3, s, s), dtype=np.float32)
    for c, src in enumerate(source_channel):
        table = ((levels - model.mean[c]) / model.std[c]).astype(np.float32)
        out[:, c] = table[patches_bgr[..., src]]
    return out


def _check_patches(patches_bgr: np.ndarray, model: ModelSpec) -> None:
    s = model.patch_size
    if (
        not isinstance(patches_bgr, np.ndarray)
        or patches_bgr.dtype != np.uint8
        or patches_bgr.ndim != 4
        or patches_bgr.shape[1:] != (s, s, 3)
    ):
        raise UsageError(f"expected (N, {s}, {s}, 3) uint8 BGR patches for {model.name}, got {_describe(patches_bgr)}")


def _check_image(image: np.ndarray, grid: PatchGrid) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UsageError(f"expected an (H, W, 3) uint8 BGR image, got {_describe(image)}")
    if tuple(image.shape[:2]) != tuple(grid.image_shape):
        raise UsageError(
            f"the image is {image.shape[0]}×{image.shape[1]} but the patch grid was made for "
            f"{grid.image_shape[0]}×{grid.image_shape[1]}; make the grid from this image's shape"
        )


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"
