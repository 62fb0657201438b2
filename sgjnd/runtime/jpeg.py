"""JPEG trials with OpenCV's libjpeg(-turbo), and the exact-crop trick that encodes only the pixels the patches need.

The exact-crop trick (DESIGN §3.3). A baseline JPEG codes each MCU (16×16 for 4:2:0, 8×16 for 4:2:2, 8×8 for
4:4:4) independently: the colour conversion is per pixel, the chroma downsampling averages pixel pairs/quads that
never straddle an MCU, the DCT and quantisation are per 8×8 block, and the entropy coding is lossless. Encoding a
crop whose top-left corner lies on the MCU lattice therefore codes every MCU of the crop exactly as the full image
does. Where the crop ends at the image's right or bottom edge, libjpeg pads the partial MCU by replicating the last
column/row in both cases, so that also matches.

Decoding is *almost* local: libjpeg's default "fancy" chroma upsampling (4:2:0 and 4:2:2) interpolates each output
pixel from the nearest chroma sample and its neighbour, which for the outermost row/column of a crop lies outside
the crop (the decoder replicates the edge instead). So the pixels within 1 px of a crop edge that is not an image
edge may differ from the full decode, and nothing else does. A crop therefore extends the patch by at least
``margin`` (>= 1) pixels on every side that is not an image edge, then is rounded outwards to the MCU lattice (start
down, end up, clamped to the image), and only the patch's interior is kept. The default margin of 16 is generous;
the tests prove equality to the full-image decode, pixel for pixel, for margins 1 and 16, all three subsamplings,
optimised and progressive coding, edge and interior patches and odd image sizes, and show that margin 0 fails.

Crops whose bounding box costs no more pixels than the two crops apart are merged. When the crops together cover at
least the image's area, one full-image encode is less work (measured in pixels coded) and is used instead; both
paths give identical patches.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from sgjnd.errors import ImageError, UsageError
from sgjnd.runtime.patches import PatchGrid, extract_patches
from sgjnd.spec import JpegSettings

SHIPPED_ENCODER = "opencv-libjpeg"

_MIN_MARGIN = 1
"""Context pixels a crop needs around a patch: the chroma upsampling reads one neighbouring chroma sample."""

_MAX_MERGE_CROPS = 128
"""Above this many crops, merging (quadratic per step) is skipped; the full-image path usually wins there."""

_SAMPLING = {
    "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
}

Method = Literal["auto", "crops", "full"]


@dataclass(frozen=True, eq=False)
class CropPlan:
    """Which MCU-aligned crops to encode so that every patch of a grid can be cut from one of them.

    Attributes:
        crops: (M, 4) int64 array of (y0, x0, y1, x1) crop boxes, end exclusive.
        patch_crop: (N,) int64 index into ``crops`` of the crop each patch is cut from.
        image_shape: (H, W) of the image.
    """

    crops: np.ndarray
    patch_crop: np.ndarray
    image_shape: tuple[int, int]

    @property
    def crop_pixels(self) -> int:
        """Pixels coded when encoding all crops."""
        c = self.crops
        return int(((c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])).sum())

    @property
    def image_pixels(self) -> int:
        """Pixels coded when encoding the whole image."""
        return int(self.image_shape[0] * self.image_shape[1])

    @property
    def prefer_full_image(self) -> bool:
        """True when one full-image encode codes no more pixels than the crops."""
        return self.crop_pixels >= self.image_pixels


class JpegCodec:
    """Encode and decode JPEG with fixed settings (those recorded in the model spec).

    Args:
        settings: the JPEG settings of the model; only ``opencv-libjpeg`` is shipped.

    Raises:
        UsageError: the settings name another encoder or an unknown subsampling.
    """

    def __init__(self, settings: JpegSettings) -> None:
        if settings.encoder != SHIPPED_ENCODER:
            raise UsageError(
                f"JPEG encoder {settings.encoder!r} is not available: sgjnd ships only {SHIPPED_ENCODER!r}. The "
                f"model's labels were made with another encoder; re-export the model with "
                f"JpegSettings(encoder={SHIPPED_ENCODER!r})"
            )
        if settings.subsampling not in _SAMPLING:
            raise UsageError(f"JPEG subsampling must be one of {sorted(_SAMPLING)}, got {settings.subsampling!r}")
        self.settings = settings
        self._base_params = [
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            _SAMPLING[settings.subsampling],
            cv2.IMWRITE_JPEG_OPTIMIZE,
            int(settings.optimize),
            cv2.IMWRITE_JPEG_PROGRESSIVE,
            int(settings.progressive),
        ]

    def __repr__(self) -> str:
        return f"JpegCodec({self.settings!r})"

    # -- single images -------------------------------------------------------------------------------------------
    def encode(self, image_bgr: np.ndarray, qf: int) -> bytes:
        """Encode a BGR image at quality ``qf``.

        Args:
            image_bgr: (H, W, 3) uint8 BGR image (a strided view such as a crop is fine).
            qf: JPEG quality factor, 1..100.

        Returns:
            The JPEG file's bytes (no EXIF).

        Raises:
            UsageError: ``qf`` is outside 1..100 or the image is not (H, W, 3) uint8.
        """
        _check_qf(qf)
        _check_bgr(image_bgr)
        ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(qf), *self._base_params])
        if not ok:  # pragma: no cover - libjpeg does not fail on valid 8-bit input
            raise ImageError(f"OpenCV failed to encode a {image_bgr.shape} image as JPEG at QF {qf}")
        return bytes(buf.tobytes())

    def decode(self, data: bytes) -> np.ndarray:
        """Decode JPEG bytes to a BGR uint8 array, ignoring any EXIF orientation.

        Args:
            data: JPEG file bytes.

        Returns:
            (H, W, 3) uint8 BGR array.

        Raises:
            ImageError: the bytes are not a decodable JPEG.
        """
        out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if out is None:
            raise ImageError(f"{len(data)} bytes starting with {bytes(data[:8])!r} could not be decoded as JPEG")
        return out

    def roundtrip(self, image_bgr: np.ndarray, qf: int) -> np.ndarray:
        """Encode at ``qf`` and decode again: the distorted image the model sees.

        Args:
            image_bgr: (H, W, 3) uint8 BGR image.
            qf: JPEG quality factor, 1..100.

        Returns:
            The decoded (H, W, 3) uint8 BGR image.
        """
        return self.decode(self.encode(image_bgr, qf))

    # -- patches ------------------------------------------------------------------------------------------------
    def plan_crops(self, grid: PatchGrid, *, margin: int = 16) -> CropPlan:
        """Plan the MCU-aligned crops that give the grid's patches exactly as a full-image encode would.

        Args:
            grid: the patches.
            margin: context pixels kept around each patch before rounding out to the MCU lattice (>= 1).

        Returns:
            The crops, merged where that codes fewer or equal pixels, and which crop serves each patch.

        Raises:
            UsageError: ``margin`` is below 1.
        """
        if margin < _MIN_MARGIN:
            raise UsageError(
                f"margin must be >= {_MIN_MARGIN}, got {margin}: libjpeg's chroma upsampling reads one sample "
                f"beyond each pixel, so a patch flush with its crop's edge would decode differently"
            )
        height, width = grid.image_shape
        mh, mw = self.settings.mcu_size
        s = grid.patch_size
        y, x = grid.coords[:, 0], grid.coords[:, 1]
        y0 = (np.maximum(y - margin, 0) // mh) * mh
        x0 = (np.maximum(x - margin, 0) // mw) * mw
        y1 = np.minimum(-(-(y + s + margin) // mh) * mh, height)
        x1 = np.minimum(-(-(x + s + margin) // mw) * mw, width)
        boxes = np.stack([y0, x0, y1, x1], axis=1).astype(np.int64)
        crops, patch_crop = _merge_boxes(boxes)
        return CropPlan(crops=crops, patch_crop=patch_crop, image_shape=(height, width))

    def distorted_patches(
        self,
        image_bgr: np.ndarray,
        grid: PatchGrid,
        qf: int,
        *,
        margin: int = 16,
        method: Method = "auto",
    ) -> np.ndarray:
        """The grid's patches of the image after a JPEG round trip at ``qf``, coding only what the patches need.

        The result equals ``full_image_patches(image_bgr, grid, qf)`` exactly (see the module docstring).

        Args:
            image_bgr: (H, W, 3) uint8 BGR image with the grid's ``image_shape``.
            grid: the patches.
            qf: JPEG quality factor, 1..100.
            margin: context pixels around each patch (>= 1), see :meth:`plan_crops`.
            method: ``crops`` encodes MCU-aligned crops, ``full`` the whole image, ``auto`` whichever codes fewer
                pixels.

        Returns:
            (N, s, s, 3) uint8 distorted patches in the grid's order.

        Raises:
            UsageError: bad ``qf``, ``margin`` or ``method``, or an image that does not match the grid.
        """
        if method not in ("auto", "crops", "full"):
            raise UsageError(f"method must be 'auto', 'crops' or 'full', got {method!r}")
        _check_qf(qf)
        _check_bgr(image_bgr)
        plan = self.plan_crops(grid, margin=margin)
        if method == "full" or (method == "auto" and plan.prefer_full_image):
            return self.full_image_patches(image_bgr, grid, qf)
        if tuple(image_bgr.shape[:2]) != tuple(grid.image_shape):
            raise UsageError(
                f"the image is {image_bgr.shape[0]}×{image_bgr.shape[1]} but the patch grid was made for "
                f"{grid.image_shape[0]}×{grid.image_shape[1]}; make the grid from this image's shape"
            )
        s = grid.patch_size
        out = np.empty((len(grid), s, s, 3), dtype=np.uint8)
        for m, (cy0, cx0, cy1, cx1) in enumerate(plan.crops.tolist()):
            decoded = self.roundtrip(image_bgr[cy0:cy1, cx0:cx1], qf)
            for n in np.flatnonzero(plan.patch_crop == m).tolist():
                py, px = grid.coords[n].tolist()
                out[n] = decoded[py - cy0 : py - cy0 + s, px - cx0 : px - cx0 + s]
        return out

    def full_image_patches(self, image_bgr: np.ndarray, grid: PatchGrid, qf: int) -> np.ndarray:
        """The grid's patches after a JPEG round trip of the whole image at ``qf`` (the reference path).

        Args:
            image_bgr: (H, W, 3) uint8 BGR image with the grid's ``image_shape``.
            grid: the patches.
            qf: JPEG quality factor, 1..100.

        Returns:
            (N, s, s, 3) uint8 distorted patches in the grid's order.
        """
        return extract_patches(self.roundtrip(image_bgr, qf), grid)

    def info(self) -> dict[str, str]:
        """The encoder's versions and this codec's settings; see :func:`encoder_info`."""
        return encoder_info(self.settings)


def _merge_boxes(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedily merge boxes while a pair's bounding box has no more pixels than the two boxes apart.

    Returns the merged boxes and, for each input box, the index of the merged box that contains it.
    """
    crops = [tuple(b) for b in boxes.tolist()]
    members: list[list[int]] = [[i] for i in range(len(crops))]
    while 1 < len(crops) <= _MAX_MERGE_CROPS:
        c = np.asarray(crops, dtype=np.int64)
        area = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
        by0 = np.minimum(c[:, None, 0], c[None, :, 0])
        bx0 = np.minimum(c[:, None, 1], c[None, :, 1])
        by1 = np.maximum(c[:, None, 2], c[None, :, 2])
        bx1 = np.maximum(c[:, None, 3], c[None, :, 3])
        saving = area[:, None] + area[None, :] - (by1 - by0) * (bx1 - bx0)
        np.fill_diagonal(saving, -1)
        i, j = (int(v) for v in np.unravel_index(int(np.argmax(saving)), saving.shape))
        if saving[i, j] < 0:
            break
        a, b = min(i, j), max(i, j)
        crops[a] = (int(by0[a, b]), int(bx0[a, b]), int(by1[a, b]), int(bx1[a, b]))
        members[a] += members.pop(b)
        del crops[b]
    patch_crop = np.empty(len(boxes), dtype=np.int64)
    for m, group in enumerate(members):
        patch_crop[group] = m
    return np.asarray(crops, dtype=np.int64).reshape(-1, 4), patch_crop


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit images over all channels, in dB (peak 255).

    Args:
        a: image or patches, any shape.
        b: same shape as ``a``.

    Returns:
        The PSNR; ``inf`` when the images are identical.

    Raises:
        UsageError: the shapes differ.
    """
    if a.shape != b.shape:
        raise UsageError(f"psnr needs two arrays of the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise UsageError("psnr needs non-empty arrays")
    # Exact integer sums over slices of about 1 MB: the memory stays small for any image size, and the result
    # equals the float64 mean over the whole array (whose partial sums of integers stay exact below 2**53).
    a2 = a.reshape(len(a), -1) if a.ndim > 1 else a.reshape(1, -1)
    b2 = b.reshape(a2.shape)
    rows = max(1, (1 << 20) // max(1, a2.shape[1]))
    sse = 0
    for start in range(0, len(a2), rows):
        diff = a2[start : start + rows].astype(np.int32) - b2[start : start + rows]
        sse += int(np.einsum("ij,ij->", diff, diff, dtype=np.int64))
    mse = sse / a.size
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def encoder_info(settings: JpegSettings | None = None) -> dict[str, str]:
    """The JPEG encoder in use: OpenCV's version, its JPEG library and, when given, the codec settings.

    Args:
        settings: settings to include; None leaves them out.

    Returns:
        String values, ready for a spec's producer fields or a benchmark row.
    """
    info = {"opencv": str(cv2.__version__), **_jpeg_library()}
    if settings is not None:
        info.update(
            encoder=settings.encoder,
            subsampling=settings.subsampling,
            optimize=str(settings.optimize).lower(),
            progressive=str(settings.progressive).lower(),
        )
    return info


@functools.cache
def _jpeg_library() -> dict[str, str]:
    """Parse the JPEG lines of the "Media I/O" section of ``cv2.getBuildInformation()``."""
    text = cv2.getBuildInformation()
    m = re.search(r"^\s*JPEG:\s*(.+?)\s*$", text, re.MULTILINE)
    if m is None:
        return {"jpeg_library": "unknown"}
    out = {"jpeg_library": m.group(1)}
    simd = re.search(r"^\s*JPEG:.*\n\s*SIMD Support Request:.*\n\s*SIMD Support:\s*(\S+)", text, re.MULTILINE)
    if simd is not None:
        out["jpeg_simd"] = simd.group(1).lower()
    return out


def _check_qf(qf: int) -> None:
    if isinstance(qf, bool) or not isinstance(qf, int | np.integer) or not 1 <= int(qf) <= 100:
        raise UsageError(f"JPEG quality factor must be an integer in 1..100, got {qf!r}")


def _check_bgr(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"shape {image.shape}, dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise UsageError(f"expected an (H, W, 3) uint8 BGR image, got {got}")
    if 0 in image.shape:
        raise UsageError(f"expected a non-empty image, got shape {image.shape}")
