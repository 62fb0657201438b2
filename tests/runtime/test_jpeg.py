"""Contracts of sgjnd.runtime.jpeg. The key one: exact-crop patches equal full-image patches, pixel for pixel."""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgjnd.errors import ImageError, UsageError
from sgjnd.runtime.decode import decode_image
from sgjnd.runtime.jpeg import JpegCodec, encoder_info, psnr
from sgjnd.runtime.patches import PatchGrid, patch_grid
from sgjnd.spec import JpegSettings

QFS = (1, 10, 37, 50, 75, 90, 100)
SETTINGS = {
    "420": JpegSettings(),
    "422": JpegSettings(subsampling="422"),
    "444": JpegSettings(subsampling="444"),
    "420-optimized-progressive": JpegSettings(optimize=True, progressive=True),
}


@pytest.fixture(scope="module")
def images(photos: list[Path]) -> list[tuple[str, np.ndarray]]:
    """The real photographs, plus crops of odd sizes so that the image edges fall inside MCUs."""
    decoded = {p.name: decode_image(p).bgr for p in photos}
    out = list(decoded.items())
    hubble, astronaut, coffee = decoded["hubble_deep_field.jpg"], decoded["astronaut.png"], decoded["coffee.png"]
    for label, crop in (
        ("hubble 301×457 at (101, 203)", hubble[101:402, 203:660]),
        ("astronaut 250×233 at (7, 13)", astronaut[7:257, 13:246]),
        ("coffee 57×85 at (3, 5)", coffee[3:60, 5:90]),
    ):
        out.append((label, np.ascontiguousarray(crop)))
    return out


def positions(height: int, width: int, s: int) -> list[tuple[int, int]]:
    """Patches touching each edge and corner, MCU-aligned and unaligned interior ones, and ones 1 px off an edge."""
    ym, xm = (height - s) // 2, (width - s) // 2
    candidates = {
        (0, 0),
        (0, width - s),
        (height - s, 0),
        (height - s, width - s),  # corners
        (0, xm),
        (height - s, xm),
        (ym, 0),
        (ym, width - s),  # edges
        (ym // 16 * 16, xm // 16 * 16),  # aligned to the MCU lattice
        (ym // 16 * 16 + 7, xm // 16 * 16 + 9),  # not aligned
        (min(1, height - s), min(1, width - s)),
        (max(height - s - 1, 0), max(width - s - 1, 0)),  # 1 px off the edges
    }
    return sorted(candidates)


@pytest.mark.parametrize("name", SETTINGS)
def test_exact_crop_patches_equal_full_image_patches(name: str, images: list[tuple[str, np.ndarray]]) -> None:
    """Every patch from its own MCU-aligned crop equals the same pixels of a full-image encode/decode."""
    codec = JpegCodec(SETTINGS[name])
    partial_crops = 0
    for label, image in images:
        height, width = image.shape[:2]
        s = 224 if min(height, width) >= 250 else 40
        for qf in QFS if name in ("420", "422", "444") else (1, 37, 90):  # progressive coding is slow: 3 QFs
            full = codec.roundtrip(image, qf)
            for y, x in positions(height, width, s):
                grid = PatchGrid(np.array([[y, x]], dtype=np.int64), s, (height, width))
                partial_crops += codec.plan_crops(grid).crop_pixels < height * width
                got = codec.distorted_patches(image, grid, qf, method="crops")[0]
                diff = int(np.abs(got.astype(np.int16) - full[y : y + s, x : x + s]).max())
                assert diff == 0, f"{name}, {label}, QF {qf}, {s}-px patch at (y={y}, x={x}): max abs diff {diff}"
    assert partial_crops > 100  # the crops really are smaller than the images


@pytest.mark.parametrize("name", SETTINGS)
def test_grids_with_merged_crops_equal_full_image(name: str, images: list[tuple[str, np.ndarray]]) -> None:
    """Realistic grids (overlapping stride, capped, merged crops): crops, full and auto all give the same patches."""
    codec = JpegCodec(SETTINGS[name])
    for label, image in images:
        height, width = image.shape[:2]
        s = 224 if min(height, width) >= 250 else 40
        grid = patch_grid(height, width, s, stride=s // 2 + 5, max_patches=6)
        for qf in (10, 75):
            full = codec.full_image_patches(image, grid, qf)
            for method in ("crops", "auto"):
                got = codec.distorted_patches(image, grid, qf, method=method)
                assert np.array_equal(got, full), f"{name}, {label}, QF {qf}, method {method}"


@settings(max_examples=30, deadline=None)
@given(
    st.integers(40, 330),
    st.integers(40, 330),
    st.integers(0, 500),
    st.sampled_from(["420", "422", "444"]),
    st.sampled_from(QFS),
    st.sampled_from([1, 16]),
    st.randoms(use_true_random=False),
)
def test_exact_crop_random_cases(
    images: list[tuple[str, np.ndarray]],
    height: int,
    width: int,
    offset: int,
    subsampling: str,
    qf: int,
    margin: int,
    rnd: random.Random,
) -> None:
    photo = dict(images)["hubble_deep_field.jpg"]
    image = np.ascontiguousarray(photo[offset % 500 : offset % 500 + height, offset : offset + width])
    height, width = image.shape[:2]
    codec = JpegCodec(JpegSettings(subsampling=subsampling))  # type: ignore[arg-type]
    s = min(height, width, 64)
    coords = [(rnd.randint(0, height - s), rnd.randint(0, width - s)) for _ in range(3)]
    grid = PatchGrid(np.array(coords, dtype=np.int64), s, (height, width))
    got = codec.distorted_patches(image, grid, qf, margin=margin, method="crops")
    assert np.array_equal(got, codec.full_image_patches(image, grid, qf))


@pytest.mark.parametrize("subsampling", ["420", "422", "444"])
def test_why_a_margin_is_needed(subsampling: str, images: list[tuple[str, np.ndarray]]) -> None:
    """A crop without context differs from the full decode only in its outermost pixel (chroma upsampling reads
    one chroma sample beyond the crop), and only where the chroma is subsampled in that direction."""
    image = dict(images)["astronaut.png"]
    codec = JpegCodec(JpegSettings(subsampling=subsampling))  # type: ignore[arg-type]
    y0, y1, x0, x1 = 64, 256, 96, 320  # on the 16-px lattice, inside the image
    for qf in (10, 50):
        alone = codec.roundtrip(image[y0:y1, x0:x1], qf).astype(np.int16)
        full = codec.roundtrip(image, qf)[y0:y1, x0:x1]
        differs = np.abs(alone - full).max(axis=2) > 0
        np.testing.assert_array_equal(alone[1:-1, 1:-1], full[1:-1, 1:-1])  # all but the outermost pixel agree
        assert differs[1:-1, [0, -1]].any() == (subsampling in ("420", "422")), "columns: 4:2:0 and 4:2:2 halve them"
        assert differs[[0, -1], 1:-1].any() == (subsampling == "420"), "rows: only 4:2:0 halves them"
    with pytest.raises(UsageError, match="margin must be >= 1"):
        codec.plan_crops(patch_grid(512, 512, 224), margin=0)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(16, 900),
    st.integers(16, 900),
    st.integers(8, 224),
    st.sampled_from(["420", "422", "444"]),
    st.integers(1, 40),
    st.integers(1, 40),
)
def test_crop_plan_is_aligned_and_holds_every_patch_with_its_margin(
    height: int, width: int, s: int, subsampling: str, margin: int, cap: int
) -> None:
    if s > min(height, width):
        s = min(height, width)
    codec = JpegCodec(JpegSettings(subsampling=subsampling))  # type: ignore[arg-type]
    grid = patch_grid(height, width, s, stride=max(1, s // 3), max_patches=cap)
    plan = codec.plan_crops(grid, margin=margin)
    mh, mw = codec.settings.mcu_size
    c = plan.crops
    assert ((c[:, 0] % mh == 0) & (c[:, 1] % mw == 0)).all()  # starts on the MCU lattice
    assert ((c[:, 2] % mh == 0) | (c[:, 2] == height)).all() and ((c[:, 3] % mw == 0) | (c[:, 3] == width)).all()
    assert (c[:, 2] <= height).all() and (c[:, 3] <= width).all() and (c[:, :2] >= 0).all()
    for (y, x), m in zip(grid.coords.tolist(), plan.patch_crop.tolist(), strict=True):
        y0, x0, y1, x1 = c[m].tolist()
        assert y0 <= max(y - margin, 0) and x0 <= max(x - margin, 0)
        assert y1 >= min(y + s + margin, height) and x1 >= min(x + s + margin, width)
    assert plan.crop_pixels <= len(grid) * (s + 2 * margin + 2 * mh) * (s + 2 * margin + 2 * mw)


def test_auto_uses_the_full_image_when_the_crops_cover_it() -> None:
    codec = JpegCodec(JpegSettings())
    dense = codec.plan_crops(patch_grid(448, 448, 224))
    assert dense.prefer_full_image and dense.crops.tolist() == [[0, 0, 448, 448]]
    sparse = codec.plan_crops(patch_grid(3000, 4000, 224, max_patches=8))
    assert not sparse.prefer_full_image and len(sparse.crops) == 8
    assert sparse.crop_pixels == 8 * 256 * 256  # 224 + 2·16 margin, already on the 16-px lattice


# -- the codec ---------------------------------------------------------------------------------------------------


def sof_sampling(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """The SOF marker and the (h, v) sampling factors of each component of a JPEG."""
    pos = 2
    while True:
        marker, length = data[pos + 1], struct.unpack_from(">H", data, pos + 2)[0]
        if marker in (0xC0, 0xC1, 0xC2):
            n = data[pos + 9]
            return marker, [(data[pos + 11 + 3 * i] >> 4, data[pos + 11 + 3 * i] & 15) for i in range(n)]
        pos += 2 + length


@pytest.mark.parametrize(
    ("name", "marker", "luma"),
    [("420", 0xC0, (2, 2)), ("422", 0xC0, (2, 1)), ("444", 0xC0, (1, 1)), ("420-optimized-progressive", 0xC2, (2, 2))],
)
def test_encode_uses_the_settings(name: str, marker: int, luma: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    data = JpegCodec(SETTINGS[name]).encode(image, 50)
    assert data[:2] == b"\xff\xd8" and b"Exif" not in data
    assert sof_sampling(data) == (marker, [luma, (1, 1), (1, 1)])


def test_decode_ignores_exif_orientation() -> None:
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    codec = JpegCodec(JpegSettings())
    data = codec.encode(image, 90)
    tiff = b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHIH", 0x0112, 3, 1, 6) + b"\x00" * 6
    rotated = data[:2] + b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\x00\x00" + tiff + data[2:]
    np.testing.assert_array_equal(codec.decode(rotated), codec.decode(data))
    assert codec.decode(data).shape == (40, 48, 3)
    with pytest.raises(ImageError, match="could not be decoded as JPEG"):
        codec.decode(b"not a jpeg")


@pytest.mark.parametrize("qf", [0, 101, -5, 50.5, True, "50"])
def test_quality_outside_1_to_100_is_a_usage_error(qf: object) -> None:
    codec = JpegCodec(JpegSettings())
    with pytest.raises(UsageError, match=r"integer in 1\.\.100"):
        codec.encode(np.zeros((16, 16, 3), np.uint8), qf)  # type: ignore[arg-type]


def test_codec_refuses_other_encoders_and_bad_images() -> None:
    with pytest.raises(UsageError, match="ships only 'opencv-libjpeg'"):
        JpegCodec(JpegSettings(encoder="pillow"))
    codec = JpegCodec(JpegSettings())
    with pytest.raises(UsageError, match=r"\(H, W, 3\) uint8"):
        codec.encode(np.zeros((16, 16), np.uint8), 50)
    with pytest.raises(UsageError, match="patch grid was made for"):
        codec.distorted_patches(np.zeros((600, 600, 3), np.uint8), patch_grid(512, 512, 224, max_patches=1), 50)


def test_roundtrip_quality_is_monotone_on_a_photo(images: list[tuple[str, np.ndarray]]) -> None:
    image = dict(images)["coffee.png"]
    codec = JpegCodec(JpegSettings())
    values = [psnr(image, codec.roundtrip(image, qf)) for qf in QFS]
    assert values == sorted(values) and 20 < values[0] < values[-1] < float("inf")


def test_psnr() -> None:
    a = np.full((4, 4, 3), 100, np.uint8)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 1) == pytest.approx(20 * np.log10(255))
    with pytest.raises(UsageError, match="same shape"):
        psnr(a, a[:2])


def test_encoder_info() -> None:
    info = encoder_info(JpegSettings(subsampling="444"))
    assert info["opencv"] == cv2.__version__
    assert re.search(r"jpeg", info["jpeg_library"], re.IGNORECASE)
    assert info["subsampling"] == "444" and info["optimize"] == "false" and info["encoder"] == "opencv-libjpeg"
    assert "subsampling" not in encoder_info()
    assert all(isinstance(v, str) for v in info.values())
