"""Image decoding for the runtime: bytes or a file -> an 8-bit, 3-channel BGR array, with every conversion noted.

Policies (each conversion adds a sentence to :attr:`DecodedImage.notes`):

- **EXIF orientation** is applied by us, for all eight values. The pixels are decoded with
  ``cv2.IMREAD_UNCHANGED`` (which keeps alpha, 16-bit and gray but ignores the orientation) and the orientation is
  read from the bytes: JPEG APP1 ``Exif``, PNG ``eXIf``, WebP ``EXIF`` (TIFF IFD0 tag 0x0112, either byte order).
  The result equals what ``cv2.IMREAD_COLOR`` shows. TIFF files are oriented by OpenCV's TIFF decoder itself, so
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
(:class:`~sgjnd.errors.PixelLimitError`): :func:`read_image_size` reads the size from the header of every format
OpenCV decodes here (JPEG, read the way libjpeg reads it; PNG, GIF, BMP, WebP, TIFF and BigTIFF, PNM/PAM, Sun raster,
JPEG 2000, AVIF) without decoding, and an image above ``max_pixels`` is refused *before* decoding. The decoder is
bounded as well: before this module loads OpenCV it sets ``OPENCV_IO_MAX_IMAGE_PIXELS`` (which OpenCV reads once,
when it loads) to :data:`DEFAULT_MAX_PIXELS` unless the environment sets it, so a size the header parser misses is
refused by OpenCV before it allocates.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import struct
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

ORIENTATION_TAG = 0x0112

_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
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


@dataclass
class _Header:
    """What the container header says, read without decoding. Unknown facts stay None."""

    format: str
    size: tuple[int, int] | None = None  # (width, height)
    mode: str | None = None
    orientation: int | None = None
    frames: int | None = None  # > 1: animated or multi-page; 0 < frames: count known
    animated: bool = False


# -- format sniffing ---------------------------------------------------------------------------------------------


def detect_format(data: bytes) -> str:
    """Name of the image format of ``data`` from its magic bytes, or ``"unknown"``.

    Args:
        data: the file's bytes (the first 32 are enough).

    Returns:
        One of ``jpeg``, ``png``, ``gif``, ``bmp``, ``webp``, ``tiff``, ``avif``, ``heic``, ``jpeg2000``, ``pnm``,
        ``pfm``, ``hdr``, ``exr``, ``sunras``, ``unknown``.
    """
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 18:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[4:8] == b"ftyp":
        brands = head[8:12] + head[16:32]
        if b"avif" in brands or b"avis" in brands:
            return "avif"
        if any(b in brands for b in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")):
            return "heic"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "jpeg2000"
    if re.match(rb"P[1-7]\s", head):
        return "pnm"
    if re.match(rb"P[Ff]\s", head):
        return "pfm"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "hdr"
    if head.startswith(b"\x76\x2f\x31\x01"):
        return "exr"
    if head.startswith(b"\x59\xa6\x6a\x95"):
        return "sunras"
    return "unknown"


# -- header parsers ----------------------------------------------------------------------------------------------


def read_image_size(data: bytes) -> tuple[int, int] | None:
    """Read ``(width, height)`` from the header of an image without decoding it.

    Understands JPEG (SOFn), PNG (IHDR), GIF (logical screen), BMP (DIB header), WebP (VP8, VP8L, VP8X canvas)
    and TIFF (IFD0). Used to refuse decompression bombs before any pixel is decoded.

    Args:
        data: the file's bytes.

    Returns:
        ``(width, height)`` in pixels as stored (before EXIF orientation), or None when the format is not one of
        the above or the header is incomplete.
    """
    return _read_header(data).size


def read_exif_orientation(data: bytes) -> int | None:
    """Read the EXIF orientation (1..8) of a JPEG, PNG, WebP or TIFF file from its bytes.

    Args:
        data: the file's bytes.

    Returns:
        The orientation tag's value, or None when the file has no EXIF orientation or an invalid one.
    """
    return _read_header(data).orientation


def _read_header(data: bytes) -> _Header:
    fmt = detect_format(data)
    parser = {
        "jpeg": _jpeg_header,
        "png": _png_header,
        "gif": _gif_header,
        "bmp": _bmp_header,
        "webp": _webp_header,
        "tiff": _tiff_header,
        "pnm": _pnm_header,
        "sunras": _sunras_header,
        "jpeg2000": _jpeg2000_header,
        "avif": _avif_header,
    }.get(fmt)
    header = _Header(fmt)
    if parser is not None:
        # A damaged header leaves the facts unknown; decoding then reports the damage.
        with contextlib.suppress(struct.error, IndexError, ValueError):
            parser(bytes(data), header)
    if header.orientation is not None and not 1 <= header.orientation <= 8:
        header.orientation = None
    return header


def _tiff_orientation(tiff: bytes) -> int | None:
    """Orientation of IFD0 of a TIFF structure (the body of an EXIF block), read the way OpenCV reads it.

    OpenCV's EXIF reader (and Pillow's) keeps the *first* orientation entry of IFD0, and OpenCV takes the 16 bits at
    the start of its value field whatever the declared type: a LONG stored little-endian gives its value, a LONG
    stored big-endian gives 0 (ignored). We read it the same way, so our pixels equal ``cv2.IMREAD_COLOR``'s.
    """
    if tiff.startswith(b"Exif\x00"):  # some writers keep JPEG's "Exif\0\0" prefix inside PNG/WebP chunks
        tiff = tiff[6:]
    info = _tiff_ifd0(tiff)
    return None if info is None else info.get(_EXIF_ORIENTATION)


_EXIF_ORIENTATION = -2
"""Key of :func:`_tiff_ifd0`'s result holding the orientation as OpenCV's EXIF reader sees it."""

_TIFF_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8 (BigTIFF)


def _tiff_ifd0(tiff: bytes) -> dict[int, int] | None:
    """Scalar integer tags of IFD0 of a classic or Big TIFF structure (first occurrence of each, as libtiff keeps).

    The key -1 holds the next-IFD offset, :data:`_EXIF_ORIENTATION` the orientation read as OpenCV's EXIF reader
    does (first entry, the leading 16 bits of the value field).
    """
    if tiff[:2] == b"II":
        bo = "<"
    elif tiff[:2] == b"MM":
        bo = ">"
    else:
        return None
    version = struct.unpack_from(bo + "H", tiff, 2)[0]
    if version == 42:
        offset_fmt, count_fmt, entry, head = "I", "H", 12, 4
        (offset,) = struct.unpack_from(bo + "I", tiff, 4)
    elif version == 43:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        if struct.unpack_from(bo + "HH", tiff, 4) != (8, 0):
            return None
        offset_fmt, count_fmt, entry, head = "Q", "Q", 20, 8
        (offset,) = struct.unpack_from(bo + "Q", tiff, 8)
    else:
        return None
    (count,) = struct.unpack_from(bo + count_fmt, tiff, offset)
    start = offset + struct.calcsize(count_fmt)
    tags: dict[int, int] = {}
    for i in range(count):
        at = start + entry * i
        tag, typ = struct.unpack_from(bo + "HH", tiff, at)
        (n,) = struct.unpack_from(bo + offset_fmt, tiff, at + 4)
        pos = at + 4 + head
        if tag == ORIENTATION_TAG and _EXIF_ORIENTATION not in tags:
            tags[_EXIF_ORIENTATION] = struct.unpack_from(bo + "H", tiff, pos)[0]
        if tag in tags:  # a duplicate: libtiff and OpenCV keep the first
            continue
        if n == 1 and typ in _TIFF_TYPES:  # left-justified in the value field
            tags[tag] = struct.unpack_from(bo + _TIFF_TYPES[typ], tiff, pos)[0]
        elif tag == 258 and typ == 3 and n >= 1:  # BitsPerSample per channel: the first is enough
            if 2 * n <= head:
                tags[tag] = struct.unpack_from(bo + "H", tiff, pos)[0]
            else:
                (where,) = struct.unpack_from(bo + offset_fmt, tiff, pos)
                tags[tag] = struct.unpack_from(bo + "H", tiff, where)[0]
    tags[-1] = struct.unpack_from(bo + offset_fmt, tiff, start + entry * count)[0]
    return tags


def _jpeg_header(data: bytes, h: _Header) -> None:
    pos = 2
    adobe_transform: int | None = None
    components = 0
    precision = 8
    while pos + 4 <= len(data):
        # Find the next marker as libjpeg does (jdmarker.c next_marker): skip any stray bytes up to an 0xFF, then
        # fill bytes (0xFF), and a stuffed 0xFF 0x00; stopping at a stray byte would let the decoder see a SOF we
        # never read.
        pos = data.find(b"\xff", pos)
        if pos < 0:
            return
        while pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1
        if pos + 4 > len(data):
            break
        marker = data[pos + 1]
        if marker in (0x00, 0x01, *range(0xD0, 0xD8)):  # stuffed zero, standalone markers
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: the header is over
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = data[pos + 4 : pos + 2 + length]
        if marker in _SOF_MARKERS and h.size is None:
            precision, height, width, components = struct.unpack_from(">BHHB", body, 0)
            if width > 0 and height > 0:  # height 0 means "defined later by DNL": unknown here
                h.size = (width, height)
        elif marker == 0xE1 and body.startswith(b"Exif\x00") and h.orientation is None:
            h.orientation = _tiff_orientation(body[6:])
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) >= 12:
            adobe_transform = body[11]
        pos += 2 + length
    if components:
        kind = {1: "gray", 3: "rgb", 4: "ycck" if adobe_transform == 2 else "cmyk"}.get(components, f"{components}ch")
        h.mode = f"{kind}{precision}"


def _png_header(data: bytes, h: _Header) -> None:
    view = memoryview(data)
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack_from(">I4s", data, pos)
        body = view[pos + 8 : pos + 8 + length]  # a view: IDAT chunks are not copied
        if ctype == b"IHDR":
            width, height, depth, color = struct.unpack_from(">IIBB", body, 0)
            h.size = (width, height)
            kind = {0: "gray", 2: "rgb", 3: "palette", 4: "graya", 6: "rgba"}.get(color, f"type{color}-")
            h.mode = f"{kind}{depth}"
        elif ctype == b"eXIf" and h.orientation is None:
            h.orientation = _tiff_orientation(bytes(body))
        elif ctype == b"acTL":
            h.frames = struct.unpack_from(">I", body, 0)[0]
            h.animated = h.frames > 1
        elif ctype == b"IEND":
            break
        pos += 12 + length


def _gif_header(data: bytes, h: _Header) -> None:
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    h.size = (width, height)
    h.mode = "palette8"
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    while pos < len(data) and frames < 1000:  # counting frames is a courtesy for the note; stop early
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif block == 0x2C:  # image descriptor (+ local colour table), LZW code size, then sub-blocks
            frames += 1
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        else:
            return
        while data[pos] != 0:
            pos += data[pos] + 1
        pos += 1
    h.frames = frames
    h.animated = frames > 1


def _bmp_header(data: bytes, h: _Header) -> None:
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    h.size = (abs(width), abs(height))  # a negative height means top-down rows


def _webp_header(data: bytes, h: _Header) -> None:
    view = memoryview(data)
    pos = 12
    frames = 0
    while pos + 8 <= len(data):
        ctype, length = struct.unpack_from("<4sI", data, pos)
        body = view[pos + 8 : pos + 8 + length]  # a view: the bitstream is not copied
        if ctype == b"VP8X":
            flags = body[0]
            width = int.from_bytes(body[4:7], "little") + 1
            height = int.from_bytes(body[7:10], "little") + 1
            h.size = (width, height)
            h.animated = bool(flags & 0x02)
            h.mode = "rgba8" if flags & 0x10 else "rgb8"
        elif ctype == b"VP8 " and h.size is None:
            if body[3:6] != b"\x9d\x01\x2a":
                raise ValueError("bad VP8 start code")
            width, height = struct.unpack_from("<HH", body, 6)
            h.size = (width & 0x3FFF, height & 0x3FFF)
            h.mode = "rgb8"
        elif ctype == b"VP8L" and h.size is None:
            if body[0] != 0x2F:
                raise ValueError("bad VP8L signature")
            (bits,) = struct.unpack_from("<I", body, 1)
            h.size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
            h.mode = "rgba8" if bits >> 28 & 1 else "rgb8"
        elif ctype == b"EXIF" and h.orientation is None:
            h.orientation = _tiff_orientation(bytes(body))
        elif ctype == b"ANMF":
            frames += 1
        pos += 8 + length + (length & 1)  # chunks are padded to an even size
    if frames:
        h.frames = frames
        h.animated = h.animated or frames > 1


def _tiff_header(data: bytes, h: _Header) -> None:
    tags = _tiff_ifd0(data)
    if tags is None:
        return
    if 256 in tags and 257 in tags:
        h.size = (tags[256], tags[257])
    h.orientation = tags.get(ORIENTATION_TAG)
    spp = tags.get(277, 1)
    bits = tags.get(258, 1)
    kind = {5: "cmyk", 3: "palette"}.get(tags.get(262, -1)) or {1: "gray", 2: "graya", 3: "rgb", 4: "rgba"}.get(
        spp, f"{spp}ch"
    )
    h.mode = f"{kind}{bits}"
    if tags.get(-1, 0):
        h.frames = 2  # at least: another IFD follows
        h.animated = True


def _pnm_header(data: bytes, h: _Header) -> None:
    if data[1:2] == b"7":  # PAM: "WIDTH n" / "HEIGHT n" lines up to ENDHDR
        fields = dict(re.findall(rb"^(WIDTH|HEIGHT)[ \t]+(\d+)", data[:4096], re.MULTILINE))
        if b"WIDTH" in fields and b"HEIGHT" in fields:
            h.size = (int(fields[b"WIDTH"]), int(fields[b"HEIGHT"]))
        return
    # P1..P6: magic, then width and height separated by whitespace and #-comments (to the end of a line)
    m = re.match(rb"P[1-6](?:\s|#[^\n\r]*)+(\d+)(?:\s|#[^\n\r]*)+(\d+)", data[:4096])
    if m:
        h.size = (int(m.group(1)), int(m.group(2)))
        h.mode = "gray8" if data[1:2] in (b"1", b"2", b"4", b"5") else "rgb8"


def _sunras_header(data: bytes, h: _Header) -> None:
    width, height = struct.unpack_from(">ii", data, 4)
    h.size = (abs(width), abs(height))


def _jpeg2000_header(data: bytes, h: _Header) -> None:
    # The codestream's SIZ segment (in a bare .j2k, or inside a JP2 file's jp2c box) is what OpenJPEG sizes by.
    pos = data.find(b"\xff\x4f\xff\x51")
    if pos >= 0:
        xsiz, ysiz, x0, y0 = struct.unpack_from(">IIII", data, pos + 8)
        if xsiz > x0 and ysiz > y0:
            h.size = (xsiz - x0, ysiz - y0)


def _avif_header(data: bytes, h: _Header) -> None:
    # Image spatial extents ('ispe') of the items in the meta box; the largest is what a decoder may allocate.
    best: tuple[int, int] | None = None
    pos = data.find(b"ispe", 0, 1 << 16)
    while pos >= 4:
        width, height = struct.unpack_from(">II", data, pos + 8)
        if best is None or width * height > best[0] * best[1]:
            best = (width, height)
        pos = data.find(b"ispe", pos + 4, 1 << 16)
    h.size = best


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
    header = _read_header(data)
    if header.size is not None:
        _check_size(header.size, where, max_pixels=max_pixels, min_side=min_side, when="refused before decoding")
    if header.format in _FLOAT_FORMATS:
        raise ImageError(
            f"{where}: {_FLOAT_FORMATS[header.format]} images hold floating-point samples, which are not supported: "
            f"expected 8- or 16-bit integer samples. Tone-map and save it as an 8-bit PNG or JPEG first."
        )

    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
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


def _undecodable_message(data: bytes, header: _Header, where: str) -> str:
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
