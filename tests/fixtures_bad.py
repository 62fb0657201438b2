"""Builders of the bad (and awkward) inputs of the bad-input matrix, the fuzz seeds and the batch tests.

Plain functions, not fixtures: each returns bytes or writes a file, so tests can combine them freely. Everything is
made here, byte by byte where OpenCV cannot write it, from small crops of the bundled photographs.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

CROP = 96
"""Side of the small crops used as seeds: above the tiny model's 64-px patch, fast to predict."""


def crop(photo: Path, size: int = CROP, *, y: int = 0, x: int = 0) -> np.ndarray:
    """A size×size BGR crop of a bundled photograph (taken from its centre, shifted by y, x)."""
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    assert image is not None, photo
    h, w = image.shape[:2]
    top = max(0, min(h - size, (h - size) // 2 + y))
    left = max(0, min(w - size, (w - size) // 2 + x))
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def encode(image: np.ndarray, ext: str, *params: int) -> bytes:
    """OpenCV's encoding of ``image`` as ``ext`` (``.jpg``, ``.png``, ...)."""
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return bytes(buf.tobytes())


def pil_bytes(image: np.ndarray, fmt: str, **options: object) -> bytes:
    """Pillow's encoding of a BGR (or gray) image as ``fmt`` (GIF, TIFF, JPEG with CMYK, ...)."""
    from PIL import Image

    rgb = image[:, :, ::-1] if image.ndim == 3 else image
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, fmt, **options)
    return out.getvalue()


# -- containers built by hand -------------------------------------------------------------------------------------


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width × height (8-bit gray) and whose IDAT holds a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 is rewritten to declare width × height."""
    data = bytearray(encode(np.zeros((16, 16, 3), np.uint8), ".jpg"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def exif_tiff(orientation: int | None, *, make: bytes = b"sgjnd-test", byte_order: str = "<") -> bytes:
    """A small EXIF TIFF structure: IFD0 with Make (ASCII) and, unless None, Orientation (SHORT)."""
    head = (b"II*\x00" if byte_order == "<" else b"MM\x00*") + struct.pack(byte_order + "I", 8)
    text = make + b"\x00"
    entries: list[tuple[int, int, int, int | None]] = [(0x010F, 2, len(text), None)]
    if orientation is not None:
        entries.append((0x0112, 3, 1, orientation))
    data_offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack(byte_order + "H", len(entries))
    for tag, kind, count, value in entries:
        if kind == 2:
            ifd += struct.pack(byte_order + "HHII", tag, kind, count, data_offset)
        else:
            ifd += struct.pack(byte_order + "HHIH", tag, kind, count, value) + b"\x00\x00"
    return head + ifd + struct.pack(byte_order + "I", 0) + text


def jpeg_with_segments(jpeg: bytes, *segments: tuple[int, bytes]) -> bytes:
    """``jpeg`` with APPn segments (marker, payload) inserted right after SOI."""
    extra = b"".join(bytes([0xFF, m]) + struct.pack(">H", len(p) + 2) + p for m, p in segments)
    return jpeg[:2] + extra + jpeg[2:]


def jpeg_with_exif(image: np.ndarray, orientation: int | None, *, icc: bytes | None = None) -> bytes:
    """A JPEG of ``image`` with an EXIF APP1 (and an ICC APP2 when given)."""
    segments = [(0xE1, b"Exif\x00\x00" + exif_tiff(orientation))]
    if icc is not None:
        segments.append((0xE2, b"ICC_PROFILE\x00\x01\x01" + icc))
    return jpeg_with_segments(encode(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95), *segments)


def png_with_metadata(image: np.ndarray, *, orientation: int | None = None, icc: bytes | None = None) -> bytes:
    """A PNG of ``image`` with eXIf and iCCP chunks right after IHDR."""
    png = encode(image, ".png")
    chunks = b""
    if icc is not None:
        chunks += png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc))
    if orientation is not None:
        chunks += png_chunk(b"eXIf", exif_tiff(orientation, byte_order=">"))
    return png[:33] + chunks + png[33:]


@functools.cache
def srgb_icc() -> bytes:
    """A real sRGB ICC profile (made once by Pillow's littleCMS: it holds its creation time)."""
    from PIL import ImageCms

    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def fake_icc(space: bytes = b"RGB ", size: int = 600) -> bytes:
    """A profile-shaped blob: a valid header (size, colour space, 'acsp') and a recognisable body."""
    body = bytearray((np.arange(size) % 251).astype(np.uint8).tobytes())
    struct.pack_into(">I", body, 0, size)
    body[16:20] = space
    body[36:40] = b"acsp"
    return bytes(body)


def heic_header() -> bytes:
    """The start of a HEIF/HEIC file (ftyp box with the heic brand) followed by junk."""
    ftyp = struct.pack(">I", 24) + b"ftypheic" + struct.pack(">I", 0) + b"mif1heic"
    return ftyp + b"\x00" * 200


def animated(image: np.ndarray, fmt: str, frames: int = 3) -> bytes:
    """An animated GIF or WebP of ``frames`` frames (each a shifted copy of ``image``)."""
    from PIL import Image

    pics = [Image.fromarray(np.roll(image, 8 * i, axis=1)[:, :, ::-1].copy()) for i in range(frames)]
    out = io.BytesIO()
    pics[0].save(out, fmt, save_all=True, append_images=pics[1:], duration=100, loop=0)
    return out.getvalue()


def cmyk_jpeg(image: np.ndarray) -> bytes:
    """A CMYK JPEG (Adobe APP14) of ``image``, written by Pillow."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image[:, :, ::-1].copy()).convert("CMYK").save(out, "JPEG", quality=95)
    return out.getvalue()
