"""Contracts of sgjnd.runtime.decode: orientation, conversions, header sizes and refusals with useful messages."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgjnd.errors import ImageError, PixelLimitError, UsageError
from sgjnd.runtime import decode as decode_module
from sgjnd.runtime.container import detect_format, read_exif_orientation, read_image_size
from sgjnd.runtime.decode import DEFAULT_MAX_PIXELS, apply_orientation, decode_image

RNG = np.random.default_rng(7)
NOISE = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)  # not square, so rotations show in the shape


# -- builders: files written here, byte by byte where OpenCV cannot write them -----------------------------------


def encode(image: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def exif_tiff(orientation: int, byte_order: str = "<") -> bytes:
    """A minimal EXIF (TIFF) block whose IFD0 holds the orientation tag only."""
    head = (b"II*\x00" if byte_order == "<" else b"MM\x00*") + struct.pack(byte_order + "I", 8)
    entry = struct.pack(byte_order + "HHIH", 0x0112, 3, 1, orientation) + b"\x00\x00"
    return head + struct.pack(byte_order + "H", 1) + entry + struct.pack(byte_order + "I", 0)


def jpeg_with_exif(orientation: int, byte_order: str = "<", image: np.ndarray = NOISE) -> bytes:
    jpeg = encode(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)
    payload = b"Exif\x00\x00" + exif_tiff(orientation, byte_order)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_with_exif(orientation: int, image: np.ndarray = NOISE) -> bytes:
    png = encode(image, ".png")
    return png[:33] + png_chunk(b"eXIf", exif_tiff(orientation, ">")) + png[33:]  # right after IHDR


def webp_with_exif(orientation: int, image: np.ndarray = NOISE) -> bytes:
    """An extended (VP8X) lossless WebP with an EXIF chunk, built around OpenCV's simple-format bitstream."""
    simple = encode(image, ".webp")  # OpenCV's default is lossless: RIFF, WEBP, one VP8L chunk
    bitstream = simple[12:]
    height, width = image.shape[:2]
    vp8x = struct.pack("<4sI", b"VP8X", 10) + bytes([0x08, 0, 0, 0])  # flag: has EXIF
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    exif = exif_tiff(orientation)
    exif_chunk = struct.pack("<4sI", b"EXIF", len(exif)) + exif + b"\x00" * (len(exif) & 1)
    body = b"WEBP" + vp8x + bitstream + exif_chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def decoded_by_opencv(data: bytes) -> np.ndarray:
    """What OpenCV shows with orientation applied: the oracle for our own orientation handling."""
    shown = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert shown is not None
    return shown


# -- real photographs --------------------------------------------------------------------------------------------


def test_sample_photos_decode_like_opencv(photos: list[Path]) -> None:
    for path in photos:
        image = decode_image(path)
        assert image.bgr.dtype == np.uint8 and image.bgr.ndim == 3 and image.bgr.shape[2] == 3
        assert image.bgr.flags.c_contiguous
        assert image.format == ("jpeg" if path.suffix == ".jpg" else "png")
        assert image.mode == "rgb8" and image.orientation == 1 and image.notes == ()
        assert image.source == str(path)
        np.testing.assert_array_equal(image.bgr, cv2.imread(str(path), cv2.IMREAD_COLOR))
        assert read_image_size(path.read_bytes()) == (image.width, image.height)


def test_bytes_and_path_give_the_same_image(photos: list[Path], tmp_path: Path) -> None:
    data = photos[3].read_bytes()
    from_bytes = decode_image(data)
    from_str = decode_image(str(photos[3]))
    np.testing.assert_array_equal(from_bytes.bgr, from_str.bgr)
    assert from_bytes.source == "<bytes>"


# -- EXIF orientation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_jpeg_exif_orientation_matches_opencv(orientation: int, byte_order: str) -> None:
    data = jpeg_with_exif(orientation, byte_order)
    assert read_exif_orientation(data) == orientation
    image = decode_image(data)
    assert image.orientation == orientation
    np.testing.assert_array_equal(image.bgr, decoded_by_opencv(data))
    assert (image.bgr.shape[:2] == (56, 40)) == (orientation >= 5)
    assert any("orientation" in n for n in image.notes) == (orientation != 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_and_webp_exif_orientation_match_opencv(orientation: int) -> None:
    for data, fmt in ((png_with_exif(orientation), "png"), (webp_with_exif(orientation), "webp")):
        assert read_exif_orientation(data) == orientation, fmt
        image = decode_image(data)
        assert image.format == fmt and image.orientation == orientation
        np.testing.assert_array_equal(image.bgr, decoded_by_opencv(data))
        if fmt == "png":  # lossless: the displayed image is the stored one, turned
            np.testing.assert_array_equal(image.bgr, apply_orientation(NOISE, orientation))


def test_orientation_is_the_display_transform() -> None:
    a = np.arange(6).reshape(2, 3)
    expected = {
        1: a,
        2: a[:, ::-1],
        3: a[::-1, ::-1],
        4: a[::-1],
        5: a.T,
        6: np.rot90(a, -1),
        7: np.rot90(a, -1)[::-1],
        8: np.rot90(a, 1),
    }
    for orientation, want in expected.items():
        np.testing.assert_array_equal(apply_orientation(a.astype(np.uint8), orientation), want)
    with pytest.raises(UsageError, match=r"1\.\.8"):
        apply_orientation(a.astype(np.uint8), 9)


def test_invalid_orientation_value_is_ignored() -> None:
    data = jpeg_with_exif(9)
    assert read_exif_orientation(data) is None
    image = decode_image(data)
    assert image.orientation == 1 and image.bgr.shape[:2] == NOISE.shape[:2]


# -- conversions -------------------------------------------------------------------------------------------------


def test_grayscale_is_replicated_to_three_channels() -> None:
    gray = NOISE[:, :, 0]
    image = decode_image(encode(gray, ".png"))
    assert image.mode == "gray8"
    assert all((image.bgr[:, :, c] == gray).all() for c in range(3))
    assert "grayscale replicated to 3 channels" in image.notes


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_is_rounded_to_8_bit(channels: int) -> None:
    wide = RNG.integers(0, 65536, (20, 24, channels), dtype=np.uint16)
    wide[0, :4, 0] = [0, 128, 129, 65535]  # round(x / 257): 0, 0, 1, 255
    image = decode_image(encode(wide if channels == 3 else wide[:, :, 0], ".png"))
    assert image.mode == ("rgb16" if channels == 3 else "gray16")
    expected = np.rint(wide / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(image.bgr, np.broadcast_to(expected, (20, 24, 3)))
    assert image.bgr[0, :4, 0].tolist() == [0, 0, 1, 255]
    assert any("16-bit" in n and "8 bits" in n for n in image.notes)


def test_alpha_is_composited_over_white() -> None:
    bgra = np.zeros((16, 16, 4), dtype=np.uint8)
    bgra[:, :, :3] = (10, 100, 200)
    bgra[:, :4, 3] = 0  # transparent -> white
    bgra[:, 4:8, 3] = 255  # opaque -> the colour
    bgra[:, 8:, 3] = 51  # 20 % -> 0.2·c + 0.8·255
    image = decode_image(encode(bgra, ".png"))
    assert image.mode == "rgba8"
    assert (image.bgr[:, :4] == 255).all()
    assert (image.bgr[:, 4:8] == (10, 100, 200)).all()
    expected = np.rint(0.2 * np.array([10, 100, 200]) + 0.8 * 255)
    assert (image.bgr[:, 8:] == expected).all()
    assert any("white" in n for n in image.notes)


def test_16_bit_alpha_is_composited_then_rounded() -> None:
    bgra = np.zeros((16, 16, 4), dtype=np.uint16)
    bgra[:, :, :3] = 65535
    bgra[:, :, 3] = 0
    image = decode_image(encode(bgra, ".png"))
    assert image.mode == "rgba16" and (image.bgr == 255).all()


def test_opaque_alpha_is_dropped() -> None:
    bgra = np.dstack([NOISE, np.full(NOISE.shape[:2], 255, np.uint8)])
    image = decode_image(encode(bgra, ".png"))
    np.testing.assert_array_equal(image.bgr, NOISE)
    assert image.notes == ("alpha channel is fully opaque and was dropped",)


def test_cmyk_jpeg_is_converted_by_opencv() -> None:
    pil = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    rgb = cv2.GaussianBlur(NOISE, (9, 9), 3)[:, :, ::-1]  # smooth, so JPEG keeps it close
    pil.fromarray(np.ascontiguousarray(rgb)).convert("CMYK").save(buf, "JPEG", quality=95)
    image = decode_image(buf.getvalue())
    assert image.format == "jpeg" and image.mode == "cmyk8"
    assert any("CMYK" in n for n in image.notes)
    assert np.abs(image.bgr.astype(int) - rgb[:, :, ::-1]).mean() < 3


def test_animated_gif_decodes_the_first_frame(photos: list[Path]) -> None:
    gif = photos[0].parent / "no_time_for_that_tiny.gif"  # 24 frames, 25×14, shipped with scikit-image
    image = decode_image(gif, min_side=8)
    assert image.format == "gif" and image.mode == "palette8"
    assert image.notes[0] == "animated GIF (24 frames): only the first frame was decoded"
    np.testing.assert_array_equal(image.bgr, cv2.imread(str(gif), cv2.IMREAD_COLOR))


@pytest.mark.parametrize(
    ("pil_format", "note"),
    [
        ("WEBP", "animated WEBP (3 frames): only the first frame was decoded"),
        ("PNG", "animated PNG (3 frames): only the first frame was decoded"),
        ("TIFF", "multi-page TIFF: only the first page was decoded"),
    ],
)
def test_animated_and_multi_page_files_decode_the_first_frame(pil_format: str, note: str) -> None:
    pil = pytest.importorskip("PIL.Image")
    frames = [pil.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200, 90)]
    buf = io.BytesIO()
    extra = {"lossless": True} if pil_format == "WEBP" else {}
    frames[0].save(buf, pil_format, save_all=True, append_images=frames[1:], **extra)
    image = decode_image(buf.getvalue())
    assert (image.bgr == 10).all() and image.notes[0] == note


def test_float_images_are_refused() -> None:
    data = encode(NOISE.astype(np.float32) / 255, ".tiff")
    with pytest.raises(ImageError, match=r"float32 samples .* not supported.*Tone-map"):
        decode_image(data)


# -- refusals ----------------------------------------------------------------------------------------------------


def test_empty_input_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty.jpg: empty \(0 bytes\); expected a JPEG, PNG"):
        decode_image(empty)
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")


def test_missing_file_and_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="not a file"):
        decode_image(tmp_path)


def test_text_named_jpg_is_refused_quoting_its_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("hello, I am not a picture\n")
    with pytest.raises(ImageError, match=r"starts with b'hello, I am not ' — text, not an image"):
        decode_image(path)
    with pytest.raises(ImageError, match="not a recognised image format"):
        decode_image(b"\x00\x01\x02\x03binary junk")


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_files_are_refused(ext: str) -> None:
    data = encode(NOISE, ext)
    for cut in (len(data) // 2, len(data) - 2):
        with pytest.raises(ImageError, match=r"header declares 56×40\) could not be decoded .* truncated or corrupt"):
            decode_image(data[:cut])


def test_tiny_image_is_refused() -> None:
    with pytest.raises(ImageError, match=r"1×1 pixels is too small: each side must be at least 16"):
        decode_image(encode(np.zeros((1, 1, 3), np.uint8), ".png"))
    assert decode_image(encode(np.zeros((1, 1, 3), np.uint8), ".png"), min_side=1).bgr.shape == (1, 1, 3)


def test_heic_is_refused_naming_the_missing_support() -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    assert detect_format(heic) == "heic"
    with pytest.raises(ImageError, match=r"HEIF/HEIC image, but OpenCV .* has no HEIF decoder"):
        decode_image(heic)


def png_bomb(width: int, height: int) -> bytes:
    """A PNG that declares a huge size: IHDR, one tiny IDAT, IEND (a real bomb's IDAT would inflate to it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    """A JPEG header whose SOF0 declares a huge size, with no image data."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


@pytest.mark.parametrize(
    ("data", "size"), [(png_bomb(100_000, 100_000), (100_000, 100_000)), (jpeg_bomb(65_000, 60_000), (65_000, 60_000))]
)
def test_decompression_bomb_is_refused_before_decoding(
    data: bytes, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert read_image_size(data) == size

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(decode_module.cv2, "imdecode", no_decoding)
    w, h = size
    with pytest.raises(PixelLimitError, match=rf"{w}×{h} = {w * h:,} pixels is above the limit of 100,000,000.*max_"):
        decode_image(data)
    assert DEFAULT_MAX_PIXELS == 100_000_000


def no_decoding(*args: object) -> None:
    raise AssertionError("decoded a bomb")


@pytest.mark.parametrize("ext", [".hdr", ".pfm"])
def test_floating_point_formats_are_refused_before_decoding(ext: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(NOISE.astype(np.float32) / 255, ext)
    monkeypatch.setattr(decode_module.cv2, "imdecode", no_decoding)
    with pytest.raises(ImageError, match=r"floating-point samples.*Tone-map"):
        decode_image(data)


def test_opencv_decoding_limit_is_set_from_the_default_when_sgjnd_loads_opencv() -> None:
    """OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS once, when it loads: importing the decoder first bounds it."""
    script = (
        "import os, sys\n"
        "from sgjnd.runtime.decode import decode_image, DEFAULT_MAX_PIXELS\n"
        "import cv2, numpy as np\n"
        "assert os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'] == str(DEFAULT_MAX_PIXELS)\n"
        "data = np.frombuffer(sys.stdin.buffer.read(), np.uint8)\n"
        "try:\n    cv2.imdecode(data, cv2.IMREAD_UNCHANGED)\nexcept cv2.error as exc:\n"
        "    print('refused' if 'CV_IO_MAX_IMAGE_PIXELS' in str(exc) else exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    out = subprocess.run(
        [sys.executable, "-c", script], input=png_bomb(12_000, 12_000), env=env, capture_output=True, timeout=60
    )
    assert out.stdout.decode().strip() == "refused", out.stderr.decode()[-2000:]


def test_max_pixels_is_checked_after_decoding_too() -> None:
    with pytest.raises(ImageError, match="above the limit of 1,000 pixels"):
        decode_image(encode(NOISE, ".png"), max_pixels=1000)


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        decode_image(b"x", max_pixels=0)
    with pytest.raises(UsageError, match="path or bytes"):
        decode_image(42)  # type: ignore[arg-type]


# -- the sample photographs (sgjnd.samples) ------------------------------------------------------------------------


def test_sample_photos_are_listed_and_copied(photos: list[Path], tmp_path: Path) -> None:
    from sgjnd.samples import SAMPLE_PHOTOS, copy_sample_photos

    assert [p.name for p in photos] == [s.file for s in SAMPLE_PHOTOS]
    assert all(s.licence in ("public domain", "CC0") and s.source for s in SAMPLE_PHOTOS)
    copies = copy_sample_photos(tmp_path / "photos")
    assert [c.read_bytes() for c in copies] == [p.read_bytes() for p in photos]


def test_sample_photos_without_scikit_image_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from sgjnd.samples import sample_photos

    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `import skimage` raise ImportError
    with pytest.raises(UsageError, match=r"pip install 'sgjnd\[samples\]'"):
        sample_photos()


def test_opencv_limit_follows_max_pixels_from_the_command_line() -> None:
    """OpenCV reads its limit when it loads; the CLI raises it to --max-pixels before anything loads OpenCV."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from sgjnd.cli import _opencv_pixel_limit\n"
        "_opencv_pixel_limit(['predict', 'x.png', '--max-pixels', '250000000'])\n"
        "import cv2, sgjnd.runtime.decode as d\n"
        "print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'], d._OPENCV_PIXEL_LIMIT)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["250000000", "250000000"]
    env["OPENCV_IO_MAX_IMAGE_PIXELS"] = "5000"  # a limit the user set is kept
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["5000", "5000"]


def test_libpng_warnings_about_ignored_chunks_do_not_reach_stderr(tmp_path: Path) -> None:
    """libpng prints its warnings to fd 2 itself (no per-call handler from Python). The chunks it warns about change
    nothing OpenCV returns, so the decoder never sees them: same pixels, silent stderr, in a fresh process."""
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    extra = (png_chunk(b"iCCP", b"junk\x00\x00not zlib at all") + png_chunk(b"tIME", b"\x00\x00\x0d\x20\x00\x00\x00")
             + png_chunk(b"gAMA", struct.pack(">I", 100000)) + png_chunk(b"tEXt", b"Comment\x00hello"))
    path = tmp_path / "noisy.png"
    path.write_bytes(png[:33] + extra + png[33:])  # after IHDR
    raw = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(raw, image)  # the chunks do not change OpenCV's pixels...
    child = "import sys; from sgjnd.runtime.decode import decode_image; print(int(decode_image(sys.argv[1]).bgr.sum()))"
    bare = "import sys, cv2, numpy as np; cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_UNCHANGED)"
    noisy = subprocess.run([sys.executable, "-c", bare, str(path)], capture_output=True, text=True, check=True)
    assert "libpng warning" in noisy.stderr  # ...but libpng complains about them when it sees them
    quiet = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, text=True, check=True)
    assert quiet.stderr == "" and int(quiet.stdout) == int(image.sum())


def test_png_with_transparency_keeps_its_tRNS_chunk() -> None:
    from sgjnd.runtime.container import png_for_decoder

    palette = np.zeros((20, 20), np.uint8)
    png = cv2.imencode(".png", palette)[1].tobytes()
    with_trns = png[:33] + png_chunk(b"tRNS", b"\x00") + png_chunk(b"iTXt", b"k\x00\x00\x00\x00\x00t") + png[33:]
    stripped = png_for_decoder(with_trns)
    assert b"tRNS" in stripped and b"iTXt" not in stripped and png_for_decoder(png) is png
