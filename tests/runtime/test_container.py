"""Contracts of sgjnd.runtime.container: header sizes, EXIF orientation read as OpenCV reads it, EXIF and ICC blocks
read and written, and malformed containers refused with an ImageError (never a hang or another exception)."""

from __future__ import annotations

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from fixtures_bad import encode, exif_tiff, fake_icc, jpeg_bomb, jpeg_with_segments, png_chunk

from sgjnd.errors import ImageError, PixelLimitError, UsageError
from sgjnd.runtime import container
from sgjnd.runtime import decode as decode_module
from sgjnd.runtime.container import (
    EXIF_HEADER,
    MAX_JPEG_EXIF_BYTES,
    EmbeddedMetadata,
    detect_format,
    exif_orientation,
    exif_with_orientation,
    jpeg_segments,
    jpeg_with_app_segments,
    png_chunks,
    read_embedded_metadata,
    read_exif_orientation,
    read_header,
    read_image_size,
    riff_chunks,
    tiff_ifd0,
)
from sgjnd.runtime.decode import apply_orientation, decode_image

RNG = np.random.default_rng(11)
NOISE = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)  # not square, so rotations show in the shape


# -- builders ----------------------------------------------------------------------------------------------------


def exif_entries(byte_order: str, entries: list[tuple[int, int]], tag: int = 0x0112) -> bytes:
    """An EXIF (TIFF) block whose IFD0 holds ``tag`` entries given as (type, value): 3 SHORT, 4 LONG."""
    head = (b"II*\x00" if byte_order == "<" else b"MM\x00*") + struct.pack(byte_order + "I", 8)
    ifd = struct.pack(byte_order + "H", len(entries))
    for kind, value in entries:
        field = struct.pack(byte_order + "HH", value, 0) if kind == 3 else struct.pack(byte_order + "I", value)
        ifd += struct.pack(byte_order + "HHI", tag, kind, 1) + field
    return head + ifd + struct.pack(byte_order + "I", 0)


def exif_of(*tags: tuple[int, int], byte_order: str = "<") -> bytes:
    """An EXIF block whose IFD0 holds SHORT entries (tag, value), in order."""
    head = (b"II*\x00" if byte_order == "<" else b"MM\x00*") + struct.pack(byte_order + "I", 8)
    ifd = struct.pack(byte_order + "H", len(tags))
    for tag, value in tags:
        ifd += struct.pack(byte_order + "HHIH2x", tag, 3, 1, value)
    return head + ifd + struct.pack(byte_order + "I", 0)


def jpeg_with(*app1: bytes, image: np.ndarray = NOISE) -> bytes:
    """A JPEG of ``image`` with APP1 segments (their payloads) right after SOI."""
    jpeg = encode(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)
    extra = b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in app1)
    return jpeg[:2] + extra + jpeg[2:]


def png_with(*chunks: tuple[bytes, bytes], image: np.ndarray = NOISE) -> bytes:
    """A PNG of ``image`` with chunks (type, body) right after IHDR."""
    png = encode(image, ".png")
    return png[:33] + b"".join(png_chunk(t, b) for t, b in chunks) + png[33:]


def webp_with(*chunks: tuple[bytes, bytes], image: np.ndarray = NOISE) -> bytes:
    """An extended (VP8X) lossless WebP of ``image`` with chunks (type, body) after its bitstream."""
    bitstream = encode(image, ".webp")[12:]  # OpenCV's default is lossless: one VP8L chunk
    height, width = image.shape[:2]
    vp8x = struct.pack("<4sI", b"VP8X", 10) + bytes([0x08 | 0x20, 0, 0, 0])  # flags: EXIF, ICC
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    extra = b"".join(struct.pack("<4sI", t, len(b)) + b + b"\x00" * (len(b) & 1) for t, b in chunks)
    body = b"WEBP" + vp8x + bitstream + extra
    return b"RIFF" + struct.pack("<I", len(body)) + body


def with_stray_bytes(jpeg: bytes) -> bytes:
    """``jpeg`` with junk before each marker after the first segment: libjpeg skips it ('extraneous bytes').

    The first marker must follow SOI directly: decoders recognise JPEG by ``FF D8 FF``.
    """
    (length,) = struct.unpack_from(">H", jpeg, 4)
    out, pos = bytearray(jpeg[: 4 + length]), 4 + length
    while jpeg[pos + 1] not in (0xDA, 0xD9):  # up to the start of scan
        (length,) = struct.unpack_from(">H", jpeg, pos + 2)
        out += b"\x00\x13\x37junk\xff\x00" + b"\xff" * 3 + jpeg[pos : pos + 2 + length]
        pos += 2 + length
    return bytes(out + jpeg[pos:])


def tiff_bomb(width: int, height: int, *, big: bool, byte_order: str = "<") -> bytes:
    """A (Big)TIFF whose IFD0 declares ``width`` × ``height`` (LONG tags), with one tiny strip."""
    tags = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 0),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, 1),
    ]
    bo = byte_order
    magic = b"II" if bo == "<" else b"MM"
    if big:
        ifd = struct.pack(bo + "Q", len(tags))
        for tag, kind, value in tags:
            ifd += struct.pack(bo + "HHQ" + ("H6x" if kind == 3 else "I4x"), tag, kind, 1, value)
        return magic + struct.pack(bo + "HHHQ", 43, 8, 0, 16) + ifd + struct.pack(bo + "Q", 0) + b"\x00"
    ifd = struct.pack(bo + "H", len(tags))
    for tag, kind, value in tags:
        ifd += struct.pack(bo + "HHI" + ("H2x" if kind == 3 else "I"), tag, kind, 1, value)
    return magic + struct.pack(bo + "HI", 42, 8) + ifd + struct.pack(bo + "I", 0) + b"\x00"


def applied_by_opencv(data: bytes) -> int:
    """The orientation ``cv2.IMREAD_COLOR`` applied: the oracle of our orientation reading."""
    shown = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    hits = [k for k in range(1, 9) if np.array_equal(apply_orientation(stored, k), shown)]
    assert len(hits) == 1, hits
    return hits[0]


def no_decoding(*args: object) -> None:
    raise AssertionError("decoded a bomb")


# -- header sizes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "params", "fmt"),
    [
        (".jpg", (), "jpeg"),
        (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), "jpeg"),
        (".png", (), "png"),
        (".bmp", (), "bmp"),
        (".gif", (), "gif"),
        (".webp", (), "webp"),  # lossless: VP8L
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80), "webp"),  # lossy: VP8
        (".tiff", (), "tiff"),
    ],
)
def test_read_image_size_matches_the_decoded_size(ext: str, params: tuple[int, ...], fmt: str) -> None:
    image = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = encode(image, ext, *params)
    assert detect_format(data) == fmt
    assert read_image_size(data) == (53, 37)
    assert decode_image(data).bgr.shape == (37, 53, 3)


def test_read_image_size_reads_the_webp_extended_canvas() -> None:
    header = read_header(webp_with((b"EXIF", exif_of((0x0112, 6)))))
    assert header.size == (56, 40) and header.mode == "rgb8" and header.orientation == 6


def test_read_image_size_is_none_for_unknown_data() -> None:
    assert read_image_size(b"hello world, this is text") is None
    assert read_image_size(b"\x89PNG\r\n\x1a\n") is None  # header cut short


@pytest.mark.parametrize(
    ("name", "data", "size"),
    [
        ("jpeg, stray bytes", with_stray_bytes(jpeg_bomb(12_000, 12_000)), (12_000, 12_000)),
        ("classic tiff", tiff_bomb(12_000, 12_000, big=False), (12_000, 12_000)),
        ("big-endian tiff", tiff_bomb(100_000, 100_000, big=False, byte_order=">"), (100_000, 100_000)),
        ("bigtiff", tiff_bomb(12_000, 12_000, big=True), (12_000, 12_000)),
        ("pnm", b"P6\n# a comment\n12000 12000\n255\n" + b"\x00" * 64, (12_000, 12_000)),
        ("pam", b"P7\nWIDTH 12000\nHEIGHT 12000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n", (12_000, 12_000)),
        ("sun raster", struct.pack(">IiiiiiII", 0x59A66A95, 12_000, 12_000, 24, 0, 1, 0, 0), (12_000, 12_000)),
    ],
)
def test_crafted_bombs_are_refused_from_the_header(
    name: str, data: bytes, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert read_image_size(data) == size, name
    monkeypatch.setattr(decode_module.cv2, "imdecode", no_decoding)
    with pytest.raises(PixelLimitError, match=r"above the limit of 100,000,000 pixels \(refused before decoding"):
        decode_image(data)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_the_size_parser_follows_the_decoder(ext: str) -> None:
    """Files the decoder accepts, whatever their quirks, are sized by the header parser exactly as decoded."""
    image = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = encode(image, ext)
    if ext == ".jpg":
        data = with_stray_bytes(data)
        shown = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(shown, cv2.imdecode(np.frombuffer(encode(image, ext), np.uint8), 1))
    assert read_image_size(data) == (53, 37)
    assert decode_image(data).bgr.shape == (37, 53, 3)


@pytest.mark.parametrize("ext", [".ppm", ".pgm", ".pam", ".ras", ".jp2", ".avif"])
def test_read_image_size_covers_every_other_decodable_format(ext: str) -> None:
    image = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    if ext == ".pgm":
        image = image[:, :, 0]
    ok, buf = cv2.imencode(ext, image)
    if not ok:  # pragma: no cover - this OpenCV build cannot write it
        pytest.skip(f"OpenCV cannot write {ext}")
    assert read_image_size(buf.tobytes()) == (53, 37)
    assert decode_image(buf.tobytes()).bgr.shape == (37, 53, 3)


def test_bigtiff_is_sized_like_a_classic_tiff() -> None:
    pil = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    pil.fromarray(NOISE[:, :, ::-1]).save(buf, format="TIFF", big_tiff=True)
    data = buf.getvalue()
    assert data[2:4] == b"+\x00"  # BigTIFF
    assert read_image_size(data) == (56, 40)
    np.testing.assert_array_equal(decode_image(data).bgr, NOISE)


def test_a_damaged_exif_block_does_not_hide_the_size() -> None:
    """Only the damaged block is passed over: the SOF after it is still read (the pixel limit still applies)."""
    header = read_header(jpeg_with(EXIF_HEADER + b"II*\x00" + struct.pack("<I", 9999)))  # IFD0 past the end
    assert header.size == (56, 40) and header.orientation is None
    assert read_image_size(jpeg_with(EXIF_HEADER + b"MM\x00*\x00\x00\x00\x08\xff\xff")) == (56, 40)  # cut IFD0


# -- EXIF orientation, read as OpenCV reads it -------------------------------------------------------------------


def orientation_cases() -> list[object]:
    """(name, file) pairs where the rules of the module docstring decide which orientation OpenCV applies."""
    six, three, make = exif_of((0x0112, 6)), exif_of((0x0112, 3)), exif_of((0x010F, 5))
    broken = b"II*\x00" + struct.pack("<I", 9999)  # IFD0 past the end
    cut_late = exif_of((0x010F, 1), (0x0112, 3))[:30]  # the orientation entry is cut
    cut_early = exif_of((0x0112, 3), (0x010F, 1))[:26]  # the entry after it is cut
    be = exif_of((0x0112, 6), byte_order=">")
    png_exif_last = encode(NOISE, ".png")[:-12] + png_chunk(b"eXIf", be) + png_chunk(b"IEND", b"")
    cases = [
        ("jpeg: the first block with an orientation", jpeg_with(EXIF_HEADER + make, EXIF_HEADER + six)),
        ("jpeg: the first orientation wins", jpeg_with(EXIF_HEADER + exif_of((0x0112, 1)), EXIF_HEADER + six)),
        ("jpeg: an invalid first orientation wins", jpeg_with(EXIF_HEADER + exif_of((0x0112, 9)), EXIF_HEADER + six)),
        ("jpeg: a damaged block is passed over", jpeg_with(EXIF_HEADER + broken, EXIF_HEADER + six)),
        ("jpeg: Exif\\0\\xff is not EXIF", jpeg_with(b"Exif\x00\xff" + three, EXIF_HEADER + six)),
        ("jpeg: an orientation entry that is cut", jpeg_with(EXIF_HEADER + cut_late)),
        ("jpeg: entries before the cut count", jpeg_with(EXIF_HEADER + cut_early)),
        ("jpeg: no next-IFD offset", jpeg_with(EXIF_HEADER + six[:-4])),
        ("png: libpng keeps the first eXIf", png_with((b"eXIf", exif_of((0x010F, 5), byte_order=">")), (b"eXIf", be))),
        ("png: an eXIf with a prefix is dropped", png_with((b"eXIf", EXIF_HEADER + three), (b"eXIf", be))),
        ("png: a damaged first eXIf", png_with((b"eXIf", broken), (b"eXIf", be))),
        ("png: an eXIf after the image data", png_exif_last),
        ("webp: the first EXIF only", webp_with((b"EXIF", make), (b"EXIF", six))),
        ("webp: a prefix is not skipped", webp_with((b"EXIF", EXIF_HEADER + six))),
        ("webp: entries before the cut count", webp_with((b"EXIF", cut_early))),
    ]  # fmt: skip
    return [pytest.param(data, id=name) for name, data in cases]


@pytest.mark.parametrize("data", orientation_cases())
def test_the_orientation_is_the_one_opencv_applies(data: bytes) -> None:
    assert (read_exif_orientation(data) or 1) == applied_by_opencv(data)
    np.testing.assert_array_equal(decode_image(data).bgr, cv2.imdecode(np.frombuffer(data, np.uint8), 1))


@pytest.mark.parametrize(
    ("byte_order", "entries"),
    [
        ("<", [(3, 6), (3, 3)]),  # duplicates: OpenCV and Pillow apply the first
        (">", [(3, 3), (3, 6)]),
        ("<", [(4, 6)]),  # LONG, little-endian: applied
        (">", [(4, 6)]),  # LONG, big-endian: OpenCV reads the leading 16 bits (0) and ignores it
    ],
)
def test_unusual_orientation_entries_are_read_as_opencv_reads_them(
    byte_order: str, entries: list[tuple[int, int]]
) -> None:
    exif = exif_entries(byte_order, entries)
    data = jpeg_with(EXIF_HEADER + exif)
    stored = 0 if entries == [(4, 6)] and byte_order == ">" else entries[0][1]
    expected = stored or 1
    assert exif_orientation(exif) == stored
    assert (read_exif_orientation(data) or 1) == expected == applied_by_opencv(data)
    assert decode_image(data).orientation == expected


def test_a_tiff_files_own_orientation_is_read_by_its_type() -> None:
    assert read_header(encode(NOISE, ".tiff")).orientation is None
    tiff = exif_entries(">", [(4, 6)])  # a LONG, big-endian: libtiff reads 6 where OpenCV's EXIF reader reads 0
    assert read_header(tiff).orientation == 6 and exif_orientation(tiff) == 0


# -- TIFF structures ---------------------------------------------------------------------------------------------


def test_tiff_ifd0_reads_classic_and_big_tiff() -> None:
    classic, big = tiff_ifd0(tiff_bomb(7, 9, big=False)), tiff_ifd0(tiff_bomb(7, 9, big=True))
    for ifd in (classic, big):
        assert ifd.complete and ifd.declared == 9 and ifd.next_ifd == 0
        assert [e.tag for e in ifd.entries][:2] == [256, 257]
    assert not classic.big and big.big and big.entries[0].value_at - big.entries[0].start == 12


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"XX*\x00\x08\x00\x00\x00", "expected a TIFF structure"),
        (b"II*\x00", "TIFF header is malformed"),
        (b"II\x2c\x00\x08\x00\x00\x00", "TIFF version 44"),
        (b"II+\x00\x04\x00\x00\x00" + b"\x00" * 8, "BigTIFF header"),
        (b"II*\x00" + struct.pack("<I", 1 << 30), "past the end"),
    ],
)
def test_malformed_tiff_structures_are_image_errors(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        tiff_ifd0(data)
    assert read_header(data).size is None  # never raises


def test_a_64_bit_offset_past_the_data_is_no_crash() -> None:
    """A BigTIFF BitsPerSample stored at 2**63 once raised OverflowError out of decode_image; the size still counts."""
    tags = [(256, 4, 1, 20), (257, 4, 1, 20), (258, 3, 5, (1 << 63) + 5)]
    ifd = struct.pack("<Q", len(tags)) + b"".join(struct.pack("<HHQQ", *tag) for tag in tags)
    data = b"II" + struct.pack("<HHHQ", 43, 8, 0, 16) + ifd + struct.pack("<Q", 0)
    assert read_header(data).size == (20, 20)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(data)


def test_an_ifd_cut_short_keeps_the_entries_present() -> None:
    exif = exif_of((0x0112, 3), (0x010F, 1), (0x0110, 2))
    ifd = tiff_ifd0(exif[: 8 + 2 + 12 + 5])
    assert not ifd.complete and ifd.declared == 3 and [e.tag for e in ifd.entries] == [0x0112]
    assert ifd.next_ifd is None
    assert tiff_ifd0(exif[:-4]).complete and tiff_ifd0(exif[:-4]).next_ifd is None


def test_huge_entry_counts_end_at_the_data() -> None:
    """An IFD declaring 65,535 (or 2**64 - 1 in BigTIFF) entries is read no further than the data goes."""
    classic = b"II*\x00" + struct.pack("<IH", 8, 0xFFFF) + b"\x00" * 24
    big = b"II+\x00" + struct.pack("<HHQQ", 8, 0, 16, (1 << 64) - 1) + b"\x00" * 40
    started = time.perf_counter()
    assert len(tiff_ifd0(classic).entries) == 2 and len(tiff_ifd0(big).entries) == 2
    assert read_header(classic).size is None and read_header(big).size is None
    assert time.perf_counter() - started < 1.0


def test_exif_with_orientation_needs_a_complete_ifd() -> None:
    exif = exif_tiff(6)
    with pytest.raises(ImageError, match="cut short"):
        exif_with_orientation(exif[:20], 1)
    with pytest.raises(ImageError, match="expected a TIFF structure"):
        exif_with_orientation(b"NOT A TIFF", 1)
    with pytest.raises(UsageError, match=r"1\.\.8"):
        exif_with_orientation(exif, 0)
    assert exif_with_orientation(exif_tiff(None), 1) == (exif_tiff(None), None)
    changed, old = exif_with_orientation(exif, 1)
    assert old == 6 and exif_orientation(changed) == 1 and len(changed) == len(exif)


@pytest.mark.parametrize(
    ("byte_order", "entries"),
    [("<", [(4, 6)]), (">", [(4, 6)]), ("<", [(3, 6), (3, 3)]), (">", [(3, 8), (4, 6), (3, 3)])],
)
def test_every_orientation_entry_is_reset_so_no_reader_rotates_twice(
    byte_order: str, entries: list[tuple[int, int]]
) -> None:
    pil = pytest.importorskip("PIL.Image")
    pil_ops = pytest.importorskip("PIL.ImageOps")
    exif, _ = exif_with_orientation(exif_entries(byte_order, entries), 1)
    ifd = tiff_ifd0(exif)
    assert [(e.type, e.value_count) for e in ifd.entries] == [(3, 1)] * len(entries)
    out = jpeg_with_app_segments(encode(NOISE, ".jpg"), exif=exif)
    assert applied_by_opencv(out) == 1
    image = pil.open(io.BytesIO(out))
    assert image.getexif()[0x0112] == 1 and pil_ops.exif_transpose(image).size == (56, 40)


# -- segments and chunks -----------------------------------------------------------------------------------------


def test_jpeg_segments_are_found_past_stray_and_fill_bytes() -> None:
    clean = encode(NOISE, ".jpg")
    markers = [s.marker for s in jpeg_segments(clean)]
    assert markers[0] == 0xE0 and 0xC0 in markers and 0xDA not in markers  # the walk ends at the first scan
    assert [(s.marker, s.body) for s in jpeg_segments(with_stray_bytes(clean))] == [
        (s.marker, s.body) for s in jpeg_segments(clean)
    ]
    standalone = clean[:2] + b"\xff\x01\xff\xd0" + b"\xff" * 10_000 + clean[2:]
    assert [s.marker for s in jpeg_segments(standalone)] == markers


@pytest.mark.parametrize(
    ("segment", "message"),
    [
        (b"\xff\xe1\x00\x00", "FFE1 at byte 2 declares a length of 0; the least is 2"),
        (b"\xff\xe1\x00\x01", "FFE1 at byte 2 declares a length of 1; the least is 2"),
        (b"\xff\xe1\xff\xff" + EXIF_HEADER, "FFE1 at byte 2 declares 65,533 bytes but 6 remain"),
    ],
)
def test_bad_jpeg_segment_lengths_are_image_errors(segment: bytes, message: str) -> None:
    data = b"\xff\xd8" + segment
    with pytest.raises(ImageError, match=message):
        list(jpeg_segments(data))
    with pytest.raises(ImageError, match=message):
        read_embedded_metadata(data)
    assert read_header(data).format == "jpeg"  # never raises


def test_png_and_riff_chunks_refuse_a_chunk_past_the_end() -> None:
    png = encode(NOISE, ".png")
    types = [t for t, _ in png_chunks(png + png_chunk(b"tEXt", b"after IEND"))]
    assert types[0] == b"IHDR" and types[-1] == b"IEND"  # the walk ends at IEND
    for cut in (png[:50], png[:33] + struct.pack(">I", 0xFFFFFFFF) + png[37:]):
        with pytest.raises(ImageError, match=r"PNG chunk b'.{4}' at byte 33 declares"):
            list(png_chunks(cut))
        assert read_header(cut).size == (56, 40)  # IHDR came before the damage
    webp = webp_with((b"EXIF", exif_of((0x0112, 6))[:-1]), (b"XMP ", b"x"))  # odd lengths: padding bytes follow
    assert [t for t, _ in riff_chunks(webp)] == [b"VP8X", b"VP8L", b"EXIF", b"XMP "]
    huge = webp + struct.pack("<4sI", b"EXIF", 0xFFFFFFFF) + b"II*\x00"
    with pytest.raises(ImageError, match=r"RIFF chunk b'EXIF' at byte \d+ declares 4,294,967,295 bytes but 4"):
        list(riff_chunks(huge))
    assert read_header(huge).size == (56, 40)  # VP8X came before the damage


def test_read_header_never_raises_on_cut_files() -> None:
    files = [encode(NOISE, ext) for ext in (".jpg", ".png", ".gif", ".bmp", ".webp", ".tiff")]
    files += [webp_with((b"EXIF", exif_of((0x0112, 6)))), jpeg_with(EXIF_HEADER + exif_of((0x0112, 6)))]
    for data in files:
        for cut in range(0, min(len(data), 400)):
            header = read_header(data[:cut])
            assert header.orientation in (None, 6)


# -- EXIF and ICC blocks -----------------------------------------------------------------------------------------


def test_embedded_metadata_of_each_format() -> None:
    icc = fake_icc()
    exif = exif_tiff(6)
    jpeg = jpeg_with(EXIF_HEADER + exif, b"XMP")
    assert read_embedded_metadata(jpeg_with_app_segments(jpeg, icc=icc)) == EmbeddedMetadata(exif=exif, icc=icc)
    png = png_with((b"iCCP", b"name\x00\x00" + zlib.compress(icc)), (b"eXIf", EXIF_HEADER + exif))
    assert read_embedded_metadata(png) == EmbeddedMetadata(exif=exif, icc=icc)  # the prefix is removed
    webp = webp_with((b"ICCP", icc), (b"EXIF", exif), (b"EXIF", exif_tiff(3)))
    assert read_embedded_metadata(webp) == EmbeddedMetadata(exif=exif, icc=icc)  # the first block
    assert read_embedded_metadata(encode(NOISE, ".tiff")) == EmbeddedMetadata()


def test_a_large_icc_profile_is_split_over_app2_segments_and_joined_in_order() -> None:
    pil = pytest.importorskip("PIL.Image")
    icc = fake_icc(size=150_000)
    out = jpeg_with_app_segments(encode(NOISE, ".jpg"), icc=icc)
    assert out.count(b"ICC_PROFILE\x00") == 3
    assert pil.open(io.BytesIO(out)).info["icc_profile"] == icc
    assert read_embedded_metadata(out).icc == icc
    segments = [out[s.start : s.start + 4 + len(s.body)] for s in jpeg_segments(out) if s.marker == 0xE2]
    first = out.index(segments[0])
    shuffled = out[:first] + b"".join(reversed(segments)) + out[first + sum(map(len, segments)) :]
    assert read_embedded_metadata(shuffled).icc == icc


@pytest.mark.parametrize(
    "parts",
    [
        [(1, 2)],  # segment 2 of 2 missing
        [(1, 2), (1, 2)],  # a duplicate instead
        [(1, 2), (2, 3)],  # counts disagree
        [(0, 1)],  # numbers start at 1
    ],
)
def test_inconsistent_icc_segments_are_left_out_with_a_note(parts: list[tuple[int, int]]) -> None:
    segments = [(0xE2, b"ICC_PROFILE\x00" + bytes([n, count]) + fake_icc()[:300]) for n, count in parts]
    meta = read_embedded_metadata(jpeg_with_segments(encode(NOISE, ".jpg"), (0xE1, EXIF_HEADER + b"II"), *segments))
    assert meta.exif == b"II" and meta.icc is None and meta.notes[0].startswith("the ICC profile is incomplete")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00\x00" + zlib.compress(b"x" * 200), "profile name"),
        (b"n" * 80 + b"\x00\x00" + zlib.compress(b"x" * 200), "profile name"),
        (b"sRGB\x00\x01" + zlib.compress(b"x" * 200), "compression method 1"),
        (b"sRGB\x00\x00" + zlib.compress(RNG.bytes(2000))[:100], "cut short"),
        (b"sRGB\x00\x00not zlib at all", "malformed"),
    ],
)
def test_damaged_iccp_chunks_are_image_errors(body: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        read_embedded_metadata(png_with((b"iCCP", body)))


def test_an_icc_profile_inflating_too_far_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container, "MAX_ICC_BYTES", 1000)
    meta = read_embedded_metadata(png_with((b"iCCP", b"sRGB\x00\x00" + zlib.compress(b"\x00" * 1_000_000))))
    assert meta.icc is None and meta.notes == ("the ICC profile inflates beyond 1,000 bytes and was left out",)


def test_app_segments_go_after_app0_and_refuse_what_jpeg_cannot_hold() -> None:
    jpeg = encode(NOISE, ".jpg")
    assert jpeg_with_app_segments(jpeg) is jpeg
    out = jpeg_with_app_segments(jpeg, exif=exif_tiff(1))
    assert [s.marker for s in jpeg_segments(out)][:2] == [0xE0, 0xE1]
    bare = jpeg[:2] + jpeg[4 + struct.unpack_from(">H", jpeg, 4)[0] :]  # no APP0
    assert next(jpeg_segments(jpeg_with_app_segments(bare, exif=exif_tiff(1)))).marker == 0xE1
    with pytest.raises(UsageError, match="starting with FF D8"):
        jpeg_with_app_segments(b"\x89PNG", exif=exif_tiff(1))
    with pytest.raises(UsageError, match="one JPEG segment holds at most"):
        jpeg_with_app_segments(jpeg, exif=b"II*\x00" + b"\x00" * MAX_JPEG_EXIF_BYTES)
    with pytest.raises(UsageError, match="well-formed JPEG"):
        jpeg_with_app_segments(jpeg[:2] + b"\xff\xe0\x00\x01", exif=exif_tiff(1))
