"""The exact JPEG pipeline equals OpenCV's libjpeg-turbo round trip pixel for pixel (issue 17, item 3).

Real photo crops, odd sizes (partial MCUs, edge replication) and every QF 1..100, for each subsampling the codec
writes; then the drop-in for the runtime's patch trials on a real photo's grid. Max difference 0 everywhere.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sgjnd.errors import UsageError
from sgjnd.runtime.jpeg import JpegCodec
from sgjnd.runtime.jpeg_exact import distorted_patches_exact, jpeg_roundtrip_exact
from sgjnd.runtime.pairs import PairMaker
from sgjnd.spec import JpegSettings, ModelSpec

ALL_QFS = list(range(1, 101))
SIZES = [(32, 32), (37, 53), (9, 17), (1, 1), (64, 200), (123, 45)]  # (height, width): whole and partial MCUs


def _crops(photos: list[Path], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for photo in photos:
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        for h, w in SIZES:
            y = int(rng.integers(0, image.shape[0] - h + 1))
            x = int(rng.integers(0, image.shape[1] - w + 1))
            out.append(np.ascontiguousarray(image[y : y + h, x : x + w]))
    return out


@pytest.mark.parametrize("subsampling", ["420", "422", "444"])
def test_round_trip_equals_opencv_at_every_qf(photos: list[Path], subsampling: str) -> None:
    settings = JpegSettings(subsampling=subsampling)  # type: ignore[arg-type]
    codec = JpegCodec(settings)
    crops = _crops(photos[:3] if subsampling != "420" else photos, seed=int(subsampling))
    mismatched = 0
    for crop in crops:
        ours = jpeg_roundtrip_exact(crop[None], ALL_QFS, settings=settings)[0]
        for k, qf in enumerate(ALL_QFS):
            expected = codec.roundtrip(crop, qf)
            mismatched += int(np.abs(expected.astype(np.int16) - ours[k]).max() > 0)
    assert mismatched == 0, f"{mismatched} of {len(crops) * len(ALL_QFS)} trials differ from OpenCV"


def test_a_batch_is_the_same_as_one_image_at_a_time(photos: list[Path]) -> None:
    image = cv2.imread(str(photos[0]), cv2.IMREAD_COLOR)
    batch = np.stack([image[:40, :56], image[40:80, 8:64], image[-40:, -56:]])
    qfs = [5, 50, 95]
    together = jpeg_roundtrip_exact(batch, qfs, max_chunk_values=1000)  # tiny chunks: the chunking is exercised
    for i in range(len(batch)):
        np.testing.assert_array_equal(together[i], jpeg_roundtrip_exact(batch[i : i + 1], qfs)[0])


def test_patch_trials_equal_the_runtime_codec(photos: list[Path]) -> None:
    spec = ModelSpec(name="t", patch_size=64, feature_dim=8)
    maker = PairMaker(spec)
    codec = JpegCodec(spec.jpeg)
    decoded = cv2.imread(str(photos[1]), cv2.IMREAD_COLOR)
    image = maker.grid(decoded, max_patches=6)
    qfs = [1, 17, 42, 63, 88, 100]
    ours = distorted_patches_exact(codec, image.bgr, image.grid, qfs)
    assert ours.shape == (len(qfs), len(image.grid), spec.patch_size, spec.patch_size, 3)
    for k, qf in enumerate(qfs):
        np.testing.assert_array_equal(ours[k], codec.distorted_patches(image.bgr, image.grid, qf))


def test_torch_tensors_give_the_same_pixels(photos: list[Path]) -> None:
    torch = pytest.importorskip("torch", reason="the tensor path needs torch")
    crop = np.ascontiguousarray(cv2.imread(str(photos[2]), cv2.IMREAD_COLOR)[:48, :72])
    qfs = [3, 30, 75, 100]
    on_torch = jpeg_roundtrip_exact(torch.from_numpy(crop[None]), qfs)
    assert isinstance(on_torch, torch.Tensor) and on_torch.dtype == torch.uint8
    np.testing.assert_array_equal(on_torch.numpy(), jpeg_roundtrip_exact(crop[None], qfs))


@pytest.mark.parametrize(
    ("images", "qfs", "match"),
    [
        (np.zeros((8, 8, 3), np.uint8), [50], r"\(B, H, W, 3\)"),
        (np.zeros((1, 8, 8, 3), np.float32), [50], "uint8"),
        (np.zeros((1, 8, 8, 3), np.uint8), [0], "1..100"),
        (np.zeros((1, 8, 8, 3), np.uint8), [], "empty"),
        (np.zeros((1, 8, 8, 3), np.uint8), 50, "sequence"),
    ],
)
def test_bad_input_is_refused_with_what_to_do(images: np.ndarray, qfs: object, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        jpeg_roundtrip_exact(images, qfs)  # type: ignore[arg-type]


def test_rounds_code_each_crop_once_and_equal_the_one_shot(photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from sgjnd.runtime import jpeg_exact

    spec = ModelSpec(name="t", patch_size=64, feature_dim=8)
    maker = PairMaker(spec)
    image = maker.grid(cv2.imread(str(photos[0]), cv2.IMREAD_COLOR), max_patches=5)
    qfs = [2, 20, 40, 60, 80, 95, 100]
    whole = distorted_patches_exact(maker.codec, image.bgr, image.grid, qfs)
    encodes: list[int] = []
    real_encode = jpeg_exact._encode
    monkeypatch.setattr(jpeg_exact, "_encode", lambda *a: encodes.append(1) or real_encode(*a))
    rounds = list(jpeg_exact.distorted_patch_rounds(maker.codec, image.bgr, image.grid, qfs, per_round=3))
    assert [len(r) for r in rounds] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(rounds), whole)
    sizes = maker.codec.plan_crops(image.grid).crops
    assert len(encodes) <= len(np.unique(sizes[:, 2:] - sizes[:, :2], axis=0))  # once per crop size, not per round
    with pytest.raises(UsageError, match="per_round"):
        next(jpeg_exact.distorted_patch_rounds(maker.codec, image.bgr, image.grid, qfs, per_round=0))
