"""Image containers read without decoding (format, header facts, EXIF and ICC blocks) and JPEG metadata written.

The one parser of JPEG markers, PNG chunks, RIFF (WebP) chunks and TIFF IFDs in sgjnd: :mod:`sgjnd.runtime.decode`
reads here the size (to refuse decompression bombs before decoding), the pixel layout, the frame count and the EXIF
orientation; :mod:`sgjnd.compress` reads the EXIF and ICC profile it copies and writes them into its JPEGs. Stdlib
only: no OpenCV, no NumPy.

Readings follow the decoders OpenCV uses, so that what is read here is what gets decoded (checked against
``cv2.IMREAD_COLOR`` in ``tests/runtime/test_container.py``):

- **JPEG markers** are found the way libjpeg finds them: stray bytes, fill bytes (0xFF) and standalone markers
  before a marker are skipped; the header ends at the first scan (SOS) or at EOI.
- **EXIF orientation** is read the way OpenCV's EXIF reader reads it: the first orientation entry of IFD0, the
  leading 16 bits of its value field whatever its declared type; the entries of IFD0 are read up to where the
  block is cut short. The block: in a JPEG, the first APP1 segment starting with ``Exif\\0\\0`` that yields an
  orientation (damaged ones are passed over); in a PNG, the first ``eXIf`` chunk that starts with a TIFF signature
  (libpng drops the others); in a WebP, the first ``EXIF`` chunk. A JPEG-style ``Exif\\0\\0`` prefix inside a PNG or
  WebP chunk is not skipped, since OpenCV does not skip it. A TIFF file's own orientation tag is read by its type,
  as libtiff reads it.
- **Metadata to copy** (:func:`read_embedded_metadata`): the first EXIF block (the prefix above removed, as Pillow
  does) and the ICC profile, JPEG APP2 segments joined in order.

Malformed framing (a segment or chunk that runs past the end of the data, a JPEG segment length below 2, an IFD
outside the block) raises :class:`~sgjnd.errors.ImageError` naming the place. :func:`read_header` never raises: the
facts after the damage stay unknown, and the decoder then reports it.
"""

from __future__ import annotations

import contextlib
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from sgjnd.errors import ImageError, UsageError

ORIENTATION_TAG = 0x0112
"""TIFF/EXIF tag of the orientation (1..8)."""

EXIF_HEADER = b"Exif\x00\x00"
"""What precedes the EXIF TIFF structure in a JPEG APP1 segment."""

ICC_HEADER = b"ICC_PROFILE\x00"
"""What precedes each part of an ICC profile in a JPEG APP2 segment (then its sequence number and count)."""

JPEG_SEGMENT_PAYLOAD = 65533
"""Most bytes a JPEG segment holds after its marker and length field (the length counts itself: 65535 - 2)."""

MAX_JPEG_EXIF_BYTES = JPEG_SEGMENT_PAYLOAD - len(EXIF_HEADER)
"""Largest EXIF TIFF structure one APP1 segment holds."""

ICC_CHUNK = JPEG_SEGMENT_PAYLOAD - len(ICC_HEADER) - 2
"""Bytes of ICC profile in one APP2 segment (the header, sequence number and count take the rest)."""

MAX_JPEG_ICC_BYTES = ICC_CHUNK * 255
"""Largest ICC profile a JPEG holds (255 APP2 segments)."""

MAX_ICC_BYTES = 16 << 20
"""Largest ICC profile read from a PNG (its compressed stream is inflated at most this far)."""

METADATA_FORMATS = ("jpeg", "png", "webp")
"""Formats whose EXIF and ICC profile :func:`read_embedded_metadata` reads."""

_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x00, 0x01, *range(0xD0, 0xD8)})  # stuffed zero, TEM, RSTn: no length field
_TIFF_SCALAR_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8 (BigTIFF)


@contextlib.contextmanager
def _malformed(what: str) -> Iterator[None]:
    """Report a read past the end, or an impossible value, inside ``what`` as an ImageError."""
    try:
        yield
    except (struct.error, IndexError, ValueError, OverflowError, zlib.error) as exc:  # overflow: a 64-bit offset
        raise ImageError(f"{what} is malformed: {exc}") from exc


# -- format sniffing -------------------------------------------------------------------------------------------


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
    if head[:4] in (*_TIFF_SIGNATURES, b"II+\x00", b"MM\x00+"):
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


# -- segments and chunks ---------------------------------------------------------------------------------------


class JpegSegment(NamedTuple):
    """One marker segment of a JPEG header."""

    marker: int
    """The second marker byte (0xE1 for APP1, 0xC0 for SOF0, ...)."""
    start: int
    """Offset of its 0xFF byte; the segment ends at ``start + 4 + len(body)``."""
    body: bytes
    """What follows the length field."""


def jpeg_segments(data: bytes) -> Iterator[JpegSegment]:
    """The marker segments of a JPEG header, found as libjpeg finds them (jdmarker.c ``next_marker``).

    Stray bytes up to an 0xFF, fill bytes (0xFF) and markers without a length (a stuffed zero, TEM, RSTn) are
    skipped, so no segment the decoder sees is missed. The walk ends at the first scan (SOS), at EOI or at the end of
    the data.

    Args:
        data: the file's bytes (starting with SOI).

    Yields:
        Each segment, in file order.

    Raises:
        ImageError: a segment's length field is below 2 or it runs past the end of the data.
    """
    pos = 2
    while pos + 4 <= len(data):
        pos = data.find(b"\xff", pos)
        if pos < 0:
            return
        while pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1
        if pos + 4 > len(data):
            return
        marker = data[pos + 1]
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: the header is over
            return
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2:
            raise ImageError(f"JPEG segment FF{marker:02X} at byte {pos} declares a length of {length}; the least is 2")
        if end > len(data):
            raise ImageError(
                f"JPEG segment FF{marker:02X} at byte {pos} declares {length - 2:,} bytes but "
                f"{len(data) - pos - 4:,} remain"
            )
        yield JpegSegment(marker, pos, data[pos + 4 : end])
        pos = end


def png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """The chunks of a PNG up to IEND, as ``(type, body)``; bodies are views (the image data is not copied).

    Raises:
        ImageError: a chunk runs past the end of the data (its CRC may be missing).
    """
    view = memoryview(data)
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if pos + 8 + length > len(data):
            raise ImageError(
                f"PNG chunk {ctype!r} at byte {pos} declares {length:,} bytes but {len(data) - pos - 8:,} remain"
            )
        yield ctype, view[pos + 8 : pos + 8 + length]
        if ctype == b"IEND":
            return
        pos += 12 + length


PNG_CHUNKS_THE_DECODER_IGNORES = frozenset(
    {b"iCCP", b"sRGB", b"gAMA", b"cHRM", b"sBIT", b"tEXt", b"zTXt", b"iTXt", b"tIME", b"pHYs", b"eXIf", b"sPLT",
     b"hIST"}
)
"""Ancillary PNG chunks that change nothing in the pixels OpenCV's decoder returns (no colour management, gamma or
shift is applied; the orientation is read by us, not by the decoder), and about which libpng prints warnings straight
to the process's stderr (``libpng warning: iCCP: known incorrect sRGB profile``, ``Ignoring invalid time value``):
a file descriptor the library cannot redirect per call. ``tRNS`` (transparency), ``PLTE`` and the APNG chunks stay."""


def png_for_decoder(data: bytes) -> bytes:
    """``data`` without the chunks of :data:`PNG_CHUNKS_THE_DECODER_IGNORES` (the same bytes when it has none).

    Each chunk carries its own length and CRC, so removing whole chunks leaves a valid PNG; the metadata the toolkit
    uses (EXIF orientation, ICC profile for ``compress``) is read from the original bytes.
    """
    keep: list[tuple[int, int]] = []
    dropped = False
    pos = 8
    for ctype, body in png_chunks(data):
        end = pos + 12 + len(body)
        if ctype in PNG_CHUNKS_THE_DECODER_IGNORES:
            dropped = True
        else:
            keep.append((pos, end))
        pos = end
    if not dropped:
        return data
    return b"".join([bytes(data[:8]), *(bytes(data[a:b]) for a, b in keep), bytes(data[pos:])])


def riff_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """The chunks of a RIFF (WebP) file after its 12-byte header, as ``(type, body)``; bodies are views.

    Raises:
        ImageError: a chunk runs past the end of the data (the padding byte of the last may be missing).
    """
    view = memoryview(data)
    pos = 12
    while pos + 8 <= len(data):
        ctype, length = struct.unpack_from("<4sI", data, pos)
        if pos + 8 + length > len(data):
            raise ImageError(
                f"RIFF chunk {ctype!r} at byte {pos} declares {length:,} bytes but {len(data) - pos - 8:,} remain"
            )
        yield ctype, view[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length & 1)  # chunks are padded to an even size


# -- TIFF structures (TIFF files, EXIF blocks) -----------------------------------------------------------------


class IfdEntry(NamedTuple):
    """One entry of a TIFF IFD."""

    tag: int
    type: int
    value_count: int
    """How many values of its type it holds."""
    start: int
    """Offset of the entry."""
    value_at: int
    """Offset of its value field (4 bytes in TIFF, 8 in BigTIFF): the value when it fits, else where it is."""


@dataclass(frozen=True)
class Ifd:
    """The first IFD of a TIFF structure, as far as it is present.

    Attributes:
        order: the byte order, as a :mod:`struct` prefix: ``<`` or ``>``.
        big: BigTIFF (8-byte counts and offsets, 20-byte entries).
        declared: how many entries the IFD declares.
        entries: the entries present, in order (fewer than declared when the data is cut short).
        next_ifd: offset of the next IFD (0: none); None when the data ends before it.
    """

    order: str
    big: bool
    declared: int
    entries: tuple[IfdEntry, ...]
    next_ifd: int | None

    @property
    def complete(self) -> bool:
        """Every declared entry is present."""
        return len(self.entries) == self.declared


def tiff_ifd0(tiff: bytes) -> Ifd:
    """Read IFD0 of a classic or Big TIFF structure (a TIFF file, or the body of an EXIF block).

    Entries past the end of the data are left out (see :attr:`Ifd.complete`): OpenCV's EXIF reader reads the
    entries that are there, while a block to copy must be complete.

    Raises:
        ImageError: not a TIFF structure, or its IFD0 starts past the end of the data.
    """
    order = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    if order is None:
        raise ImageError(f"expected a TIFF structure (starting with II or MM), got {bytes(tiff[:4])!r}")
    with _malformed("the TIFF header"):
        (version,) = struct.unpack_from(order + "H", tiff, 2)
        if version == 42:
            big = False
            (offset,) = struct.unpack_from(order + "I", tiff, 4)
        elif version == 43:
            if struct.unpack_from(order + "HH", tiff, 4) != (8, 0):
                raise ImageError("BigTIFF header: expected 8-byte offsets (8, 0 after the version)")
            big = True
            (offset,) = struct.unpack_from(order + "Q", tiff, 8)
        else:
            raise ImageError(f"TIFF version {version}; expected 42 (TIFF) or 43 (BigTIFF)")
    count_fmt, size_fmt, entry_size = ("Q", "Q", 20) if big else ("H", "I", 12)
    start = offset + struct.calcsize(count_fmt)
    if start > len(tiff):
        raise ImageError(f"TIFF IFD0 at byte {offset:,} is past the end of the {len(tiff):,}-byte structure")
    (declared,) = struct.unpack_from(order + count_fmt, tiff, offset)
    present = min(declared, (len(tiff) - start) // entry_size)
    entries = []
    for i in range(present):
        at = start + entry_size * i
        tag, typ, n = struct.unpack_from(order + "HH" + size_fmt, tiff, at)
        entries.append(IfdEntry(tag, typ, n, at, at + 4 + struct.calcsize(size_fmt)))
    next_at = start + entry_size * declared
    next_ifd = None
    if present == declared and next_at + struct.calcsize(size_fmt) <= len(tiff):
        (next_ifd,) = struct.unpack_from(order + size_fmt, tiff, next_at)
    return Ifd(order, big, declared, tuple(entries), next_ifd)


def _first_orientation(tiff: bytes, ifd: Ifd) -> int | None:
    """The orientation as OpenCV's EXIF reader (and Pillow) applies it: the first entry's leading 16 bits.

    A LONG stored little-endian gives its value, one stored big-endian gives 0 (then ignored as invalid).
    """
    for entry in ifd.entries:
        if entry.tag == ORIENTATION_TAG:
            return int(struct.unpack_from(ifd.order + "H", tiff, entry.value_at)[0])
    return None


def exif_orientation(exif: bytes) -> int | None:
    """The orientation of an EXIF TIFF structure as OpenCV applies it (see the module docstring).

    Args:
        exif: the TIFF structure (starting with ``II`` or ``MM``).

    Returns:
        The stored value, valid (1..8) or not; None when IFD0 holds no orientation entry.

    Raises:
        ImageError: not a TIFF structure, or IFD0 starts past its end.
    """
    return _first_orientation(exif, tiff_ifd0(exif))


def exif_with_orientation(exif: bytes, orientation: int) -> tuple[bytes, int | None]:
    """Set the orientation tag of IFD0 of an EXIF TIFF structure.

    Every orientation entry of IFD0 is rewritten as one SHORT holding ``orientation``, whatever its stored type
    (SHORT or LONG) and however many entries there are, so that no reader rotates the written pixels again.

    Args:
        exif: the TIFF structure (starting with ``II*\\0`` or ``MM\\0*``).
        orientation: the new value, 1..8.

    Returns:
        The changed bytes (unchanged when the tag is absent) and the previous value as OpenCV applies it (the first
        entry, see :func:`exif_orientation`; None when absent).

    Raises:
        ImageError: not a TIFF structure, or IFD0 is cut short.
        UsageError: ``orientation`` is not in 1..8.
    """
    if not 1 <= orientation <= 8:
        raise UsageError(f"EXIF orientation must be 1..8, got {orientation}")
    ifd = tiff_ifd0(exif)
    if not ifd.complete:
        raise ImageError(f"EXIF IFD0 declares {ifd.declared} entries but holds {len(ifd.entries)}: it is cut short")
    old = _first_orientation(exif, ifd)
    if old is None:
        return exif, None
    changed = bytearray(exif)
    size_fmt, value_size = ("Q", 8) if ifd.big else ("I", 4)
    for entry in ifd.entries:
        if entry.tag == ORIENTATION_TAG:
            struct.pack_into(ifd.order + "HH" + size_fmt, changed, entry.start, ORIENTATION_TAG, 3, 1)
            changed[entry.value_at : entry.value_at + value_size] = struct.pack(ifd.order + "H", orientation).ljust(
                value_size, b"\x00"
            )
    return bytes(changed), old


# -- header facts ----------------------------------------------------------------------------------------------


@dataclass
class ImageHeader:
    """What an image's header says, read without decoding. Unknown facts stay None.

    Attributes:
        format: the container format (see :func:`detect_format`).
        size: ``(width, height)`` as stored, before EXIF orientation.
        mode: the pixel layout: ``rgb8``, ``gray16``, ``palette8``, ``cmyk8``, ``ycck8``, ...
        orientation: the EXIF orientation the decoder applies (1..8; None when absent or invalid).
        frames: frames or pages, when counted (a multi-page TIFF says 2: at least).
        animated: more than one frame or page.
    """

    format: str
    size: tuple[int, int] | None = None
    mode: str | None = None
    orientation: int | None = None
    frames: int | None = None
    animated: bool = False


def read_header(data: bytes) -> ImageHeader:
    """Read what the header of an image says, without decoding; never raises.

    Sizes are read for every format OpenCV decodes here: JPEG (SOFn), PNG (IHDR), GIF (logical screen), BMP (DIB
    header), WebP (VP8, VP8L, VP8X canvas), TIFF and BigTIFF (IFD0), PNM/PAM, Sun raster, JPEG 2000 (SIZ) and AVIF
    (the largest ``ispe``). The EXIF orientation is read from JPEG, PNG, WebP and TIFF files.

    Args:
        data: the file's bytes.

    Returns:
        The facts found; those after damaged data stay None (decoding then reports the damage).
    """
    fmt = detect_format(data)
    header = ImageHeader(fmt)
    parser = _HEADER_PARSERS.get(fmt)
    if parser is not None:
        with contextlib.suppress(ImageError), _malformed(f"the {fmt.upper()} header"):
            parser(bytes(data), header)
    if header.orientation is not None and not 1 <= header.orientation <= 8:
        header.orientation = None
    return header


def read_image_size(data: bytes) -> tuple[int, int] | None:
    """Read ``(width, height)`` from the header of an image without decoding it (see :func:`read_header`).

    Used to refuse decompression bombs before any pixel is decoded.

    Args:
        data: the file's bytes.

    Returns:
        ``(width, height)`` in pixels as stored (before EXIF orientation), or None when the format is not one
        :func:`read_header` sizes or the header is incomplete.
    """
    return read_header(data).size


def read_exif_orientation(data: bytes) -> int | None:
    """Read the EXIF orientation (1..8) of a JPEG, PNG, WebP or TIFF file as the decoder applies it.

    Args:
        data: the file's bytes.

    Returns:
        The orientation tag's value, or None when the file has no EXIF orientation or an invalid one.
    """
    return read_header(data).orientation


def _orientation_or_none(exif: bytes) -> int | None:
    try:
        return exif_orientation(exif)
    except ImageError:
        return None


def _jpeg_header(data: bytes, h: ImageHeader) -> None:
    adobe_transform: int | None = None
    components = 0
    precision = 8
    for segment in jpeg_segments(data):
        marker, body = segment.marker, segment.body
        if marker in _SOF_MARKERS and h.size is None:
            precision, height, width, components = struct.unpack_from(">BHHB", body, 0)
            if width > 0 and height > 0:  # height 0 means "defined later by DNL": unknown here
                h.size = (width, height)
        elif marker == 0xE1 and h.orientation is None and body.startswith(EXIF_HEADER):
            h.orientation = _orientation_or_none(body[len(EXIF_HEADER) :])  # a damaged block is passed over
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) >= 12:
            adobe_transform = body[11]
    if components:
        kind = {1: "gray", 3: "rgb", 4: "ycck" if adobe_transform == 2 else "cmyk"}.get(components, f"{components}ch")
        h.mode = f"{kind}{precision}"


def _png_header(data: bytes, h: ImageHeader) -> None:
    exif_seen = False
    for ctype, body in png_chunks(data):
        if ctype == b"IHDR":
            width, height, depth, color = struct.unpack_from(">IIBB", body, 0)
            h.size = (width, height)
            kind = {0: "gray", 2: "rgb", 3: "palette", 4: "graya", 6: "rgba"}.get(color, f"type{color}-")
            h.mode = f"{kind}{depth}"
        elif ctype == b"eXIf" and not exif_seen and bytes(body[:4]) in _TIFF_SIGNATURES:
            exif_seen = True  # libpng keeps the first valid eXIf chunk only
            h.orientation = _orientation_or_none(bytes(body))
        elif ctype == b"acTL":
            h.frames = struct.unpack_from(">I", body, 0)[0]
            h.animated = h.frames > 1


def _gif_header(data: bytes, h: ImageHeader) -> None:
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
        while data[pos] != 0:  # every step moves forward: a sub-block is its length byte and that many bytes
            pos += data[pos] + 1
        pos += 1
    h.frames = frames
    h.animated = frames > 1


def _bmp_header(data: bytes, h: ImageHeader) -> None:
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    h.size = (abs(width), abs(height))  # a negative height means top-down rows


def _webp_header(data: bytes, h: ImageHeader) -> None:
    frames = 0
    exif_seen = False
    for ctype, body in riff_chunks(data):
        if ctype == b"VP8X":
            flags = body[0]
            width = int.from_bytes(body[4:7], "little") + 1
            height = int.from_bytes(body[7:10], "little") + 1
            h.size = (width, height)
            h.animated = bool(flags & 0x02)
            h.mode = "rgba8" if flags & 0x10 else "rgb8"
        elif ctype == b"VP8 " and h.size is None:
            if body[3:6] != b"\x9d\x01\x2a":
                raise ImageError("WebP VP8 chunk: bad start code")
            width, height = struct.unpack_from("<HH", body, 6)
            h.size = (width & 0x3FFF, height & 0x3FFF)
            h.mode = "rgb8"
        elif ctype == b"VP8L" and h.size is None:
            if body[0] != 0x2F:
                raise ImageError("WebP VP8L chunk: bad signature")
            (bits,) = struct.unpack_from("<I", body, 1)
            h.size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
            h.mode = "rgba8" if bits >> 28 & 1 else "rgb8"
        elif ctype == b"EXIF" and not exif_seen:
            exif_seen = True  # OpenCV reads the first EXIF chunk only
            h.orientation = _orientation_or_none(bytes(body))
        elif ctype == b"ANMF":
            frames += 1
    if frames:
        h.frames = frames
        h.animated = h.animated or frames > 1


def _tiff_header(data: bytes, h: ImageHeader) -> None:
    ifd = tiff_ifd0(data)
    if not ifd.complete:
        raise ImageError(f"TIFF IFD0 declares {ifd.declared} entries but holds {len(ifd.entries)}")
    tags = _tiff_scalars(data, ifd)
    if 256 in tags and 257 in tags:
        h.size = (tags[256], tags[257])
    h.orientation = tags.get(ORIENTATION_TAG)  # libtiff reads it by its type; OpenCV's TIFF decoder applies it
    spp = tags.get(277, 1)
    bits = tags.get(258, 1)
    kind = {5: "cmyk", 3: "palette"}.get(tags.get(262, -1)) or {1: "gray", 2: "graya", 3: "rgb", 4: "rgba"}.get(
        spp, f"{spp}ch"
    )
    h.mode = f"{kind}{bits}"
    if ifd.next_ifd:
        h.frames = 2  # at least: another IFD follows
        h.animated = True


def _tiff_scalars(tiff: bytes, ifd: Ifd) -> dict[int, int]:
    """Single integer values of IFD0 (SHORT, LONG, LONG8) by tag, the first of duplicates as libtiff keeps;
    BitsPerSample (258) holds its first value."""
    tags: dict[int, int] = {}
    offset_fmt = "Q" if ifd.big else "I"
    for entry in ifd.entries:
        if entry.tag in tags:
            continue
        if entry.value_count == 1 and entry.type in _TIFF_SCALAR_TYPES:  # left-justified in the value field
            tags[entry.tag] = struct.unpack_from(ifd.order + _TIFF_SCALAR_TYPES[entry.type], tiff, entry.value_at)[0]
        elif entry.tag == 258 and entry.type == 3 and entry.value_count >= 1:  # one per channel: the first is enough
            where = entry.value_at
            if 2 * entry.value_count > struct.calcsize(offset_fmt):  # stored elsewhere
                (where,) = struct.unpack_from(ifd.order + offset_fmt, tiff, entry.value_at)
            if where + 2 <= len(tiff):  # else unknown: the size is still worth having
                tags[258] = struct.unpack_from(ifd.order + "H", tiff, where)[0]
    return tags


def _pnm_header(data: bytes, h: ImageHeader) -> None:
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


def _sunras_header(data: bytes, h: ImageHeader) -> None:
    width, height = struct.unpack_from(">ii", data, 4)
    h.size = (abs(width), abs(height))


def _jpeg2000_header(data: bytes, h: ImageHeader) -> None:
    # The codestream's SIZ segment (in a bare .j2k, or inside a JP2 file's jp2c box) is what OpenJPEG sizes by.
    pos = data.find(b"\xff\x4f\xff\x51")
    if pos >= 0:
        xsiz, ysiz, x0, y0 = struct.unpack_from(">IIII", data, pos + 8)
        if xsiz > x0 and ysiz > y0:
            h.size = (xsiz - x0, ysiz - y0)


def _avif_header(data: bytes, h: ImageHeader) -> None:
    # Image spatial extents ('ispe') of the items in the meta box; the largest is what a decoder may allocate.
    best: tuple[int, int] | None = None
    pos = data.find(b"ispe", 0, 1 << 16)
    while pos >= 4:
        width, height = struct.unpack_from(">II", data, pos + 8)
        if best is None or width * height > best[0] * best[1]:
            best = (width, height)
        pos = data.find(b"ispe", pos + 4, 1 << 16)
    h.size = best


_HEADER_PARSERS: dict[str, Callable[[bytes, ImageHeader], None]] = {
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
}


# -- EXIF and ICC blocks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedMetadata:
    """The EXIF and ICC blocks a JPEG, PNG or WebP file carries, checked for their framing only.

    Attributes:
        exif: the first EXIF block: its TIFF structure, without JPEG's ``Exif\\0\\0`` (which some PNG and WebP
            writers keep too, and which is removed there as well).
        icc: the ICC profile (from a JPEG: its APP2 segments joined in order).
        notes: what was left out, and why.
    """

    exif: bytes | None = None
    icc: bytes | None = None
    notes: tuple[str, ...] = field(default=())


def read_embedded_metadata(data: bytes) -> EmbeddedMetadata:
    """Read the EXIF block and ICC profile of a JPEG (APP1, APP2), PNG (``eXIf``, ``iCCP``) or WebP (``EXIF``,
    ``ICCP``) file.

    An ICC profile whose JPEG segments are missing or inconsistent, or whose PNG stream inflates beyond
    :data:`MAX_ICC_BYTES`, is left out with a note.

    Args:
        data: the file's bytes.

    Returns:
        The blocks found; empty for other formats.

    Raises:
        ImageError: the container is malformed before its metadata has been read (a truncated segment or chunk, a
            damaged ``iCCP`` chunk).
    """
    fmt = detect_format(data)
    reader = {"jpeg": _jpeg_metadata, "png": _png_metadata, "webp": _webp_metadata}.get(fmt)
    if reader is None:
        return EmbeddedMetadata()
    with _malformed(f"the {fmt.upper()} metadata"):
        return reader(bytes(data))


def _unprefixed(exif: bytes) -> bytes:
    return exif[len(EXIF_HEADER) :] if exif.startswith(EXIF_HEADER) else exif


def _jpeg_metadata(data: bytes) -> EmbeddedMetadata:
    exif: bytes | None = None
    parts: list[tuple[int, int, bytes]] = []  # (sequence number, count, part) of each ICC_PROFILE segment
    for segment in jpeg_segments(data):
        body = segment.body
        if segment.marker == 0xE1 and exif is None and body.startswith(EXIF_HEADER):
            exif = body[len(EXIF_HEADER) :]
        elif segment.marker == 0xE2 and body.startswith(ICC_HEADER) and len(body) >= len(ICC_HEADER) + 2:
            at = len(ICC_HEADER)
            parts.append((body[at], body[at + 1], body[at + 2 :]))
    if not parts:
        return EmbeddedMetadata(exif=exif)
    numbers = sorted(n for n, _, _ in parts)
    counts = {count for _, count, _ in parts}
    if len(counts) != 1 or numbers != list(range(1, parts[0][1] + 1)):
        note = (
            f"the ICC profile is incomplete (APP2 segments {numbers} of {'/'.join(map(str, sorted(counts)))}) "
            f"and was left out"
        )
        return EmbeddedMetadata(exif=exif, notes=(note,))
    return EmbeddedMetadata(exif=exif, icc=b"".join(part for _, _, part in sorted(parts)))


def _png_metadata(data: bytes) -> EmbeddedMetadata:
    exif = icc = None
    notes: list[str] = []
    for ctype, body in png_chunks(data):
        if ctype == b"eXIf" and exif is None:
            exif = _unprefixed(bytes(body))
        elif ctype == b"iCCP" and icc is None:
            icc = _inflated_icc(bytes(body), notes)
    return EmbeddedMetadata(exif=exif, icc=icc or None, notes=tuple(notes))


def _inflated_icc(chunk: bytes, notes: list[str]) -> bytes:
    """The profile of a PNG ``iCCP`` chunk (name, zero byte, method 0, zlib stream); empty when too large."""
    name_end = chunk.find(b"\x00", 0, 80)
    if name_end < 1:
        raise ImageError("PNG iCCP chunk: expected a profile name of 1 to 79 bytes ended by a zero byte")
    if chunk[name_end + 1] != 0:
        raise ImageError(f"PNG iCCP chunk: compression method {chunk[name_end + 1]}; expected 0 (zlib)")
    inflater = zlib.decompressobj()
    icc = inflater.decompress(chunk[name_end + 2 :], MAX_ICC_BYTES + 1)
    if len(icc) > MAX_ICC_BYTES:
        notes.append(f"the ICC profile inflates beyond {MAX_ICC_BYTES:,} bytes and was left out")
        return b""
    if not inflater.eof:
        raise ImageError("PNG iCCP chunk: the compressed profile is cut short")
    return icc


def _webp_metadata(data: bytes) -> EmbeddedMetadata:
    exif = icc = None
    for ctype, body in riff_chunks(data):
        if ctype == b"EXIF" and exif is None:
            exif = _unprefixed(bytes(body))
        elif ctype == b"ICCP" and icc is None:
            icc = bytes(body)
    return EmbeddedMetadata(exif=exif, icc=icc)


def jpeg_with_app_segments(jpeg: bytes, *, exif: bytes | None = None, icc: bytes | None = None) -> bytes:
    """Insert an EXIF (APP1 ``Exif``) and an ICC profile (APP2 ``ICC_PROFILE``, split over up to 255 segments) into a
    JPEG that has neither, as our encoder writes it.

    They go right after the JFIF APP0 segment when it comes first, else right after SOI.

    Args:
        jpeg: a JPEG file's bytes.
        exif: the EXIF TIFF structure (without ``Exif\\0\\0``), at most :data:`MAX_JPEG_EXIF_BYTES`.
        icc: the ICC profile, at most :data:`MAX_JPEG_ICC_BYTES`.

    Returns:
        The JPEG with the segments; ``jpeg`` itself when there is nothing to insert.

    Raises:
        UsageError: ``jpeg`` does not start with SOI or its APP0 is malformed, or a block is too large for JPEG.
    """
    if not exif and not icc:
        return jpeg
    if not jpeg.startswith(b"\xff\xd8"):
        raise UsageError(f"expected JPEG bytes (starting with FF D8), got {jpeg[:4]!r}")
    if exif and len(exif) > MAX_JPEG_EXIF_BYTES:
        raise UsageError(f"EXIF of {len(exif):,} bytes; one JPEG segment holds at most {MAX_JPEG_EXIF_BYTES:,}")
    if icc and len(icc) > MAX_JPEG_ICC_BYTES:
        raise UsageError(f"ICC profile of {len(icc):,} bytes; a JPEG holds at most {MAX_JPEG_ICC_BYTES:,}")
    at = 2
    if jpeg[2:4] == b"\xff\xe0":
        try:
            app0 = next(jpeg_segments(jpeg), None)
        except ImageError as exc:
            raise UsageError(f"expected a well-formed JPEG: {exc}") from exc
        if app0 is None:
            raise UsageError(f"expected a well-formed JPEG, got {len(jpeg)} bytes that end in its APP0 segment")
        at = app0.start + 4 + len(app0.body)
    segments = []
    if exif:
        segments.append(_segment(0xE1, EXIF_HEADER + exif))
    if icc:
        parts = [icc[i : i + ICC_CHUNK] for i in range(0, len(icc), ICC_CHUNK)]
        segments.extend(
            _segment(0xE2, ICC_HEADER + bytes([n, len(parts)]) + part) for n, part in enumerate(parts, start=1)
        )
    return jpeg[:at] + b"".join(segments) + jpeg[at:]


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
