"""Fuzzing decode -> patch -> predict (and the metadata reader of `compress`) with mutated real files.

Seeds are 96×96 crops of the bundled photographs saved as JPEG, PNG, WebP, GIF, BMP and TIFF, plus JPEG, PNG and
WebP files that carry EXIF and an ICC profile. Each example applies a few mutations (bit flips, truncations, byte
insertions and deletions, overwritten header bytes, a JPEG size field set to an arbitrary value) and runs the whole
pipeline with the tiny model on ONNX Runtime. Only SgjndError subclasses may escape; anything else is a bug.

CI runs a bounded quick pass; ``python benchmarks/fuzz.py --examples N`` runs the same property for longer.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("onnxruntime")

from fixtures_bad import (
    crop,
    encode,
    jpeg_with_exif,
    pil_bytes,
    png_with_metadata,
    srgb_icc,
)

from sgjnd.compress import jpeg_with_metadata, read_metadata
from sgjnd.errors import SgjndError
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.runtime.search import SearchConfig

QUICK_EXAMPLES = 120
"""Examples of the CI pass (a few seconds on two busy cores)."""

FUZZ_CONFIG = PredictConfig(search=SearchConfig(strategy="bisect"), max_patches=2, max_pixels=1_000_000)
"""Few patches and a low pixel limit, so that a mutated header cannot make one example slow."""

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)


@functools.cache
def seeds() -> tuple[tuple[str, bytes], ...]:
    """(name, bytes) of every seed file; made once."""
    from sgjnd.samples import sample_photos

    photos = sample_photos()
    out: list[tuple[str, bytes]] = []
    for photo in (photos[0], photos[3]):
        image = crop(photo)
        out += [
            (f"{photo.stem}.jpg", encode(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90)),
            (f"{photo.stem}.progressive.jpg", encode(image, ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
            (f"{photo.stem}.png", encode(image, ".png")),
            (f"{photo.stem}.webp", encode(image, ".webp", cv2.IMWRITE_WEBP_QUALITY, 80)),
            (f"{photo.stem}.gif", pil_bytes(image, "GIF")),
            (f"{photo.stem}.bmp", encode(image, ".bmp")),
            (f"{photo.stem}.tiff", encode(image, ".tiff")),
        ]
    image = crop(photos[1])
    out += [
        ("exif-icc.jpg", jpeg_with_exif(image, 6, icc=srgb_icc())),
        ("exif-icc.png", png_with_metadata(image, orientation=8, icc=srgb_icc())),
        ("icc.webp", pil_bytes(image, "WEBP", icc_profile=srgb_icc())),
    ]
    return tuple(out)


# -- mutations ----------------------------------------------------------------------------------------------------


def _at(data: bytearray, where: int) -> int:
    return where % (len(data) + 1)


def mutate(data: bytes, ops: Sequence[tuple[object, ...]]) -> bytes:
    """Apply mutations in order; positions are taken modulo the current length, so every op applies to any file."""
    out = bytearray(data)
    for op in ops:
        kind = op[0]
        if kind == "flip" and out:
            pos = int(op[1]) % len(out)  # type: ignore[call-overload]
            out[pos] ^= 1 << int(op[2])  # type: ignore[call-overload]
        elif kind == "cut":
            del out[_at(out, int(op[1])) :]  # type: ignore[call-overload]
        elif kind == "insert":
            pos = _at(out, int(op[1]))  # type: ignore[call-overload]
            out[pos:pos] = bytes(op[2])  # type: ignore[call-overload]
        elif kind == "delete":
            pos = _at(out, int(op[1]))  # type: ignore[call-overload]
            del out[pos : pos + int(op[2])]  # type: ignore[call-overload]
        elif kind == "header":
            pos = int(op[1]) % 64  # type: ignore[call-overload]
            value = int(op[2]).to_bytes(4, "big")  # type: ignore[call-overload]
            out[pos : pos + int(op[3])] = value[4 - int(op[3]) :]  # type: ignore[call-overload]
        elif kind == "jpeg-size":
            sof = bytes(out).find(b"\xff\xc0")
            if sof >= 0 and sof + 9 <= len(out):
                struct.pack_into(">HH", out, sof + 5, int(op[1]), int(op[2]))  # type: ignore[call-overload]
    return bytes(out)


positions = st.integers(0, 1 << 20)
OPS = st.one_of(
    st.tuples(st.just("flip"), positions, st.integers(0, 7)),
    st.tuples(st.just("cut"), positions),
    st.tuples(st.just("insert"), positions, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), positions, st.integers(1, 64)),
    st.tuples(st.just("header"), st.integers(0, 63), st.sampled_from(INTERESTING) | st.integers(0, (1 << 32) - 1),
              st.integers(1, 4)),
    st.tuples(st.just("jpeg-size"), st.sampled_from(INTERESTING[:6]) | st.integers(0, 65535),
              st.sampled_from(INTERESTING[:6]) | st.integers(0, 65535)),
)  # fmt: skip


def fuzz_inputs() -> st.SearchStrategy[tuple[str, bytes]]:
    """(seed name, mutated bytes): a seed and one to four mutations."""
    seed = st.deferred(lambda: st.sampled_from(seeds()))
    return st.tuples(seed, st.lists(OPS, min_size=1, max_size=4)).map(lambda s: (s[0][0], mutate(s[0][1], s[1])))


def check_one(predictor: JNDPredictor, data: bytes) -> str:
    """Run the pipeline on ``data``; return ``ok`` or the SgjndError's type name. Any other exception propagates."""
    meta = read_metadata(data)  # never raises: damaged metadata is dropped with a note
    if meta.kept:
        jpeg_with_metadata(encode(np.zeros((16, 16, 3), np.uint8), ".jpg"), meta)
    try:
        result = predictor.predict(data)
    except SgjndError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)
        return type(exc).__name__
    assert result.width >= 16 and result.height >= 16 and result.width * result.height <= FUZZ_CONFIG.max_pixels
    assert result.jnd_qf is None or 1 <= result.jnd_qf <= 100
    return "ok"


@pytest.fixture(scope="module")
def predictor(tiny_onnx_dir: Path) -> Iterator[JNDPredictor]:
    from sgjnd.runtime.backends.registry import open_model

    with open_model("onnxruntime", tiny_onnx_dir, threads=1) as models:
        yield JNDPredictor(models, FUZZ_CONFIG)


def test_every_seed_works_unmutated(predictor: JNDPredictor) -> None:
    for name, data in seeds():
        assert check_one(predictor, data) == "ok", name


@settings(
    max_examples=QUICK_EXAMPLES,
    deadline=None,
    derandomize=True,  # CI sees the same examples every run; benchmarks/fuzz.py explores new ones
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(example=fuzz_inputs())
def test_only_sgjnd_errors_escape(predictor: JNDPredictor, example: tuple[str, bytes]) -> None:
    check_one(predictor, example[1])
