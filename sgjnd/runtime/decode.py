"""Image decoding for the runtime: bytes or a file -> an 8-bit, 3-channel BGR array, with every conversion noted.

Policies (each conversion adds a sentence to :attr:`DecodedImage.notes`):

- **EXIF orientation** is applied by us, for all eight values. The pixels are decoded with
  ``cv2.IMREAD_UNCHANGED`` (which keeps alpha, 16-bit and gray but ignores the orientation) and the orientation is
  read from the bytes by :mod:`sgjnd.runtime.container`: JPEG APP1 ``Exif``, PNG ``eXIf``, WebP ``EXIF`` (TIFF IFD0
  tag 0x0112, either byte order), picked and read as OpenCV does. The result equals what ``cv2.IMREAD_COLOR``
  shows. TIFF files are oriented by OpenCV's TIFF decoder itself, so
  we only report their orientation. AVIF/HEIF carry rotation in ``irot``/``imir`` boxes, which OpenCV ignores and
  so do we (a note says so).
- **Grayscale** is replicated to three channels.
- **16-bit** samples are scaled to 8 bits with rounding (``round(x / 257)``).
- **Alpha** is composited over **white** (a transparent pixel becomes white); a fully opaque alpha is dropped.
- **CMYK/YCCK JPEG** is converted to BGR by OpenCV's decoder (a plain inversion formula, no ICC colour management).
- **Animated GIF, WebP and PNG (APNG)** and multi-page TIFF: the first frame is decoded, with a note.
- **Floating-point images** (Radiance HDR, OpenEXR, PFM, float TIFF) are refused: they need tone mapping first.
- ICC profiles are ignored, as OpenCV does.

Refused with :class:`~sgjnd.errors.ImageError`: missing or empty files, data that is not an image (the message
quotes its first bytes), truncated or corrupt data, formats this OpenCV build cannot decode (HEIC; AVIF on builds
without libavif), images with a side below ``min_side``, and decompression bombs
(:class:`~sgjnd.errors.PixelLimitError`): :func:`~sgjnd.runtime.container.read_header` reads the size from the
header of every format OpenCV decodes here (JPEG, read the way libjpeg reads it; PNG, GIF, BMP, WebP, TIFF and
BigTIFF, PNM/PAM, Sun raster, JPEG 2000, AVIF) without decoding, and an image above ``max_pixels`` is refused
*before* decoding. The decoder is bounded as well: before this module loads OpenCV it sets
``OPENCV_IO_MAX_IMAGE_PIXELS`` (which OpenCV reads once, when it loads) to :data:`DEFAULT_MAX_PIXELS` unless the
environment sets it, so a size the header parser misses is refused by OpenCV before it allocates.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sgjnd.runtime.pixel_limit import DEFAULT_MAX_PIXELS, OPENCV_PIXEL_LIMIT_VARIABLE, bound_opencv

bound_opencv()  # bound the decoder itself too, unless the user chose a limit (or cv2 is already loaded)
_OPENCV_PIXEL_LIMIT = os.environ.get(OPENCV_PIXEL_LIMIT_VARIABLE, "2**30 (OpenCV's default)")
"""The limit OpenCV read when it loaded (a later change of the variable does not reach it)."""

import cv2  # noqa: E402  (after the limit is set: OpenCV reads it when it loads)
import numpy as np  # noqa: E402

from sgjnd.errors import ImageError, PixelLimitError, UsageError  # noqa: E402
from sgjnd.fileio import image_bytes_limit, read_regular_file  # noqa: E402
from sgjnd.runtime.container import ImageHeader, png_for_decoder, read_header  # noqa: E402

__all__ = ["DEFAULT_MAX_PIXELS", "DecodedImage", "apply_orientation", "decode_image", "decoded_from_array"]

_SUPPORTED = "JPEG, PNG, WebP, BMP, GIF or TIFF"
_BUILD_INFO_KEY = {
    "jpeg": "jpeg",
    "png": "png",
    "webp": "webp",
    "tiff": "tiff",
    "avif": "avif",
    "gif": "gif",
    "jpeg2000": "jpeg 2000",
    "exr": "openexr",
}
"""Format -> its line under "Media I/O" in ``cv2.getBuildInformation()``."""


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image ready for the runtime.

    Attributes:
        bgr: the pixels, (H, W, 3) uint8, C-contiguous, in OpenCV's BGR order, orientation applied.
        source: the file path, or ``"<bytes>"`` for in-memory data.
        format: the container format: ``jpeg``, ``png``, ``webp``, ``gif``, ``bmp``, ``tiff``, ``avif``, ...
        mode: the original pixel layout: ``rgb8``, ``gray8``, ``rgba8``, ``rgb16``, ``graya8``, ``palette8``,
            ``cmyk8``, ``ycck8``, ...
        orientation: the EXIF orientation of the file (1..8; 1 when absent).
        notes: each conversion that was made, in words.
    """

    bgr: np.ndarray
    source: str
    format: str
    mode: str
    orientation: int = 1
    notes: tuple[str, ...] = field(default=())

    @property
    def height(self) -> int:
        """Rows of :attr:`bgr`."""
        return int(self.bgr.shape[0])

    @property
    def width(self) -> int:
        """Columns of :attr:`bgr`."""
        return int(self.bgr.shape[1])


_FLOAT_FORMATS = {"pfm": "PFM", "hdr": "Radiance HDR", "exr": "OpenEXR"}
"""Formats OpenCV decodes only to floating-point samples, which we refuse: refused before decoding."""


# -- decoding ----------------------------------------------------------------------------------------------------


def decode_image(
    source: Path | str | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 16,
) -> DecodedImage:
    """Decode an image file or bytes to 8-bit BGR, applying EXIF orientation and the conversions listed above.

    Args:
        source: a path (``Path`` or ``str``) or the file's bytes.
        max_pixels: the largest width × height accepted; checked from the header before decoding when the format
            allows it.
        min_side: the smallest width and height accepted.

    Returns:
        The decoded image with its format, original mode, orientation and the conversions made.

    Raises:
        ImageError: the file is missing, empty, not an image, truncated or corrupt, of a format this OpenCV cannot
            decode, too large or too small.
        UsageError: ``max_pixels`` or ``min_side`` is below 1, or ``source`` has the wrong type.
    """
    if max_pixels < 1 or min_side < 1:
        raise UsageError(f"max_pixels and min_side must be >= 1, got max_pixels={max_pixels}, min_side={min_side}")
    data, name = _read_source(source, max_pixels)
    where = name if name != "<bytes>" else "image bytes"
    header = read_header(data)
    if header.size is not None:
        _check_size(header.size, where, max_pixels=max_pixels, min_side=min_side, when="refused before decoding")
    if header.format in _FLOAT_FORMATS:
        raise ImageError(
            f"{where}: {_FLOAT_FORMATS[header.format]} images hold floating-point samples, which are not supported: "
            f"expected 8- or 16-bit integer samples. Tone-map and save it as an 8-bit PNG or JPEG first."
        )

    # libpng prints warnings about ancillary chunks to fd 2 itself; the decoder never sees those chunks.
    pixels_data = data
    if header.format == "png":
        try:
            pixels_data = png_for_decoder(data)
        except ImageError:  # a damaged chunk list: the decoder gets the bytes as they came and reports them
            pixels_data = data
    try:
        pixels = cv2.imdecode(np.frombuffer(pixels_data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # some decoders raise instead of returning None (limits, broken headers)
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise PixelLimitError(
                f"{where}: the {header.format.upper()} data declares more pixels than OpenCV's decoding limit "
                f"({OPENCV_PIXEL_LIMIT_VARIABLE}={_OPENCV_PIXEL_LIMIT}, read when OpenCV loads); refused before "
                f"decoding. Use a smaller image, or, if it is genuine, raise {OPENCV_PIXEL_LIMIT_VARIABLE} in the "
                f"environment of the process along with max_pixels= (CLI: --max-pixels)."
            ) from exc
        raise ImageError(f"{_undecodable_message(data, header, where)} (OpenCV: {str(exc).strip()})") from exc
    if pixels is None or pixels.size == 0:
        raise ImageError(_undecodable_message(data, header, where))
    _check_size((pixels.shape[1], pixels.shape[0]), where, max_pixels=max_pixels, min_side=min_side, when="decoded")

    notes: list[str] = []
    mode = header.mode or _mode_of(pixels)
    if header.animated:
        count = f" ({header.frames} frames)" if header.frames and header.format != "tiff" else ""
        what = "multi-page TIFF" if header.format == "tiff" else f"animated {header.format.upper()}{count}"
        notes.append(f"{what}: only the first {'page' if header.format == 'tiff' else 'frame'} was decoded")
    if mode.startswith(("cmyk", "ycck")):
        notes.append(f"{mode[:4].upper()} JPEG converted to BGR by OpenCV's decoder (no ICC colour management)")
    bgr = _to_bgr8(pixels, where, notes)

    orientation = header.orientation or 1
    if header.format == "tiff":
        if orientation != 1:
            notes.append(f"EXIF orientation {orientation} applied by OpenCV's TIFF decoder")
    elif orientation != 1:
        bgr = apply_orientation(bgr, orientation)
        notes.append(f"EXIF orientation {orientation} applied ({_ORIENTATION_WORDS[orientation]})")
    if header.format in ("avif", "heic"):
        notes.append("AVIF/HEIF rotation and mirror properties (irot/imir) are not applied: OpenCV ignores them")
    return DecodedImage(
        bgr=np.ascontiguousarray(bgr),
        source=name,
        format=header.format,
        mode=mode,
        orientation=orientation,
        notes=tuple(notes),
    )


def decoded_from_array(
    array: np.ndarray,
    *,
    rgb: bool = False,
    source: str = "<array>",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 16,
) -> DecodedImage:
    """A decoded image from an (H, W, 3) uint8 array (BGR, or RGB with ``rgb``), held to the limits a file is.

    Raises:
        UsageError: another shape or dtype (naming what came and what to do).
        PixelLimitError: more than ``max_pixels`` pixels.
        ImageError: a side below ``min_side``.
    """
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise UsageError(
            f"an image array must be (H, W, 3) uint8, got {array.dtype} {array.shape}: decode files with "
            "cv2.imread, convert grey or RGBA images to 3 channels, and scale 16-bit or float images to 0..255"
        )
    height, width = array.shape[:2]
    _check_size((width, height), source, max_pixels=max_pixels, min_side=min_side, when="given as an array")
    bgr = np.ascontiguousarray(array[:, :, ::-1] if rgb else array)
    return DecodedImage(bgr=bgr, source=source, format="array", mode="rgb8")


def _read_source(source: Path | str | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        name = "<bytes>"
    elif isinstance(source, str | Path):
        path = Path(source)
        name = str(path)
        # Regular files only (a FIFO or a link to /dev/zero is refused before reading), never more than the limit.
        data = read_regular_file(path, max_bytes=image_bytes_limit(max_pixels))
    else:
        raise UsageError(f"an image source must be a path or bytes, got {type(source).__name__}")
    if not data:
        where = name if name != "<bytes>" else "the image bytes"
        raise ImageError(f"{where}: empty (0 bytes); expected a {_SUPPORTED} image")
    return data, name


def _check_size(size: tuple[int, int], where: str, *, max_pixels: int, min_side: int, when: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise PixelLimitError(
            f"{where}: {width}×{height} = {width * height:,} pixels is above the limit of {max_pixels:,} pixels "
            f"({when}, to guard against decompression bombs). If the image is genuine, raise the limit with "
            f"max_pixels= (CLI: --max-pixels)."
        )
    if min(width, height) < min_side:
        raise ImageError(
            f"{where}: {width}×{height} pixels is too small: each side must be at least {min_side} pixels. "
            f"Use a larger image."
        )


def _undecodable_message(data: bytes, header: ImageHeader, where: str) -> str:
    fmt = header.format
    if fmt == "unknown":
        head = bytes(data[:16])
        printable = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
        kind = "text, not an image" if printable else "not a recognised image format"
        return f"{where}: starts with {head!r} — {kind}. Expected a {_SUPPORTED} file."
    if fmt == "heic":
        return (
            f"{where}: HEIF/HEIC image, but OpenCV {cv2.__version__} has no HEIF decoder. Convert it to JPEG or "
            f"PNG first (for example `heif-convert in.heic out.jpg`)."
        )
    key = _BUILD_INFO_KEY.get(fmt)
    if key is not None and key not in _build_codecs():
        return (
            f"{where}: {fmt.upper()} image, but this OpenCV build ({cv2.__version__}) has no {fmt.upper()} decoder "
            f"(see cv2.getBuildInformation(), 'Media I/O'). Convert it to JPEG or PNG first."
        )
    declared = f"; its header declares {header.size[0]}×{header.size[1]}" if header.size else ""
    return (
        f"{where}: {fmt.upper()} data ({len(data):,} bytes{declared}) could not be decoded by OpenCV "
        f"{cv2.__version__}: it is truncated or corrupt. Expected a complete {fmt.upper()} file; re-export or "
        f"re-download it."
    )


@functools.cache
def _build_codecs() -> frozenset[str]:
    """Lower-case names of the image codecs listed under "Media I/O" in OpenCV's build information."""
    found = set()
    for line in cv2.getBuildInformation().splitlines():
        m = re.match(r"\s+([A-Za-z0-9 ]+):\s+(.+)$", line)
        if m and not m.group(2).strip().upper().startswith("NO"):
            found.add(m.group(1).strip().lower())
    return frozenset(found)


def _mode_of(pixels: np.ndarray) -> str:
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    kind = {1: "gray", 2: "graya", 3: "rgb", 4: "rgba"}.get(channels, f"{channels}ch")
    bits = {np.dtype(np.uint8): "8", np.dtype(np.uint16): "16"}.get(pixels.dtype, str(pixels.dtype))
    return f"{kind}{bits}"


def _to_bgr8(pixels: np.ndarray, where: str, notes: list[str]) -> np.ndarray:
    """Convert what ``cv2.IMREAD_UNCHANGED`` returned to (H, W, 3) uint8, noting each step."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageError(
            f"{where}: {pixels.dtype} samples (HDR, EXR or floating-point TIFF?) are not supported: expected 8- or "
            f"16-bit integer samples. Tone-map and save it as an 8-bit PNG or JPEG first."
        )
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ImageError(f"{where}: {channels} channels; expected 1 (gray), 3 (colour) or 2/4 (with alpha)")
    peak = 255 if pixels.dtype == np.uint8 else 65535
    color, alpha = (pixels[:, :, :-1], pixels[:, :, -1]) if channels in (2, 4) else (pixels, None)

    if alpha is not None and bool((alpha == peak).all()):
        notes.append("alpha channel is fully opaque and was dropped")
        alpha = None
    if alpha is not None or pixels.dtype == np.uint16:
        # Elementwise, in blocks of rows of about 1 MB: the float or 32-bit temporaries never span the whole image.
        out: np.ndarray = np.empty(color.shape, np.uint8)
        rows = max(1, (1 << 20) // max(1, color.shape[1] * channels))
        for start in range(0, color.shape[0], rows):
            block = slice(start, start + rows)
            if alpha is not None:
                # Composite in float, then round once to 8 bits: out = c·a + white·(1 − a).
                a = alpha[block].astype(np.float32)[:, :, None] / peak
                mixed = color[block].astype(np.float32) * a + peak * (1.0 - a)
                out[block] = np.rint(mixed * (255.0 / peak)).clip(0, 255)
            else:
                out[block] = (color[block].astype(np.uint32) + 128) // 257  # == round(x / 257); no ties exist
        if alpha is not None:
            notes.append("alpha channel composited over a white background (transparent areas become white)")
    else:
        out = color
    if pixels.dtype == np.uint16:
        notes.append("16-bit samples scaled to 8 bits (rounded)")
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
        notes.append("grayscale replicated to 3 channels")
    return out


_ORIENTATION_WORDS = {
    1: "none",
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "transposed",
    6: "rotated 90° clockwise",
    7: "transversed",
    8: "rotated 90° counter-clockwise",
}


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into displayed pixels for an EXIF orientation value.

    Args:
        image: (H, W) or (H, W, C) array as stored in the file.
        orientation: the EXIF orientation, 1..8.

    Returns:
        The image as it should be displayed (H and W swapped for 5..8).

    Raises:
        UsageError: ``orientation`` is not in 1..8.
    """
    if orientation == 1:
        return image
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(image), -1)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    raise UsageError(f"EXIF orientation must be 1..8, got {orientation}")
