"""The calibration reader: the runtime's preprocessing, determinism, QF spread, errors and the adapters."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sgjnd.calibration.reader import (
    REFERENCE_QF,
    CalibrationSet,
    EncoderDataReader,
    HeadDataReader,
    ReaderConfig,
    TrtCalibrationBatches,
    encoder_chunks,
    head_chunks,
    list_images,
    read_calibration_set,
    split_holdout,
)
from sgjnd.errors import CalibrationError, UsageError

SMALL = ReaderConfig(num_patches=24, patches_per_image=4, seed=3)


@pytest.fixture(scope="module")
def calib_set(calib_photos: Path, tiny_spec) -> CalibrationSet:
    return read_calibration_set(calib_photos, tiny_spec, SMALL, progress=False)


def test_set_is_made_as_the_runtime_makes_patches(calib_set: CalibrationSet, calib_photos: Path, tiny_spec) -> None:
    """Every patch is one the predictor's PairMaker makes: a cell of its grid, its exact-crop JPEG; and its
    normalisation."""
    import dataclasses

    from sgjnd.runtime.decode import decode_image
    from sgjnd.runtime.pairs import PairMaker
    from sgjnd.runtime.patches import PatchGrid

    assert len(calib_set) == SMALL.num_patches
    assert calib_set.num_reference == round(SMALL.num_patches * SMALL.reference_share)
    dis = calib_set.distorted_index
    assert dis.size > 0 and np.all(calib_set.qf[calib_set.ref_index[dis]] == REFERENCE_QF)
    # Rebuild one distorted patch from its source image with the predictor's pair maker.
    maker = PairMaker(tiny_spec, margin=SMALL.jpeg_margin)
    i = int(dis[0])
    ref = calib_set.patches[calib_set.ref_index[i]]
    found = False
    for name in calib_set.sources:
        image = maker.grid(decode_image(calib_photos / name).bgr, max_patches=SMALL.patches_per_image)
        for cell, pixels in zip(image.grid.coords, maker.reference_pixels(image), strict=True):
            if np.array_equal(pixels, ref):
                one = dataclasses.replace(image, grid=PatchGrid(cell[None], 64, image.grid.image_shape))
                assert np.array_equal(maker.distorted_pixels(one, int(calib_set.qf[i]))[0], calib_set.patches[i])
                found = True
    assert found, "the reference patch is not a cell of the runtime's grid of any source image"
    # Normalisation is the runtime's.
    np.testing.assert_array_equal(calib_set.encoder_inputs(tiny_spec, 0, 3), maker.encoder_input(calib_set.patches[:3]))


def test_qfs_cover_the_range(calib_photos: Path, tiny_spec) -> None:
    cs = read_calibration_set(calib_photos, tiny_spec, ReaderConfig(num_patches=80, patches_per_image=8),
                              progress=False)
    qfs = cs.qf[cs.qf != REFERENCE_QF]
    assert qfs.min() >= 1 and qfs.max() <= 100
    # Stratified: each tenth of the range holds some distorted patches.
    counts = np.histogram(qfs, bins=10, range=(1, 101))[0]
    assert np.all(counts >= 1), counts


def test_deterministic_given_a_seed(calib_set: CalibrationSet, calib_photos: Path, tiny_spec) -> None:
    again = read_calibration_set(calib_photos, tiny_spec, SMALL, progress=False)
    assert again.sha256() == calib_set.sha256()
    other = read_calibration_set(calib_photos, tiny_spec, ReaderConfig(num_patches=24, patches_per_image=4, seed=4),
                                 progress=False)
    assert other.sha256() != calib_set.sha256()


def test_npz_round_trip(calib_set: CalibrationSet, tmp_path: Path, tiny_spec) -> None:
    path = calib_set.save(tmp_path / "patches.npz")
    loaded = read_calibration_set(path, tiny_spec)
    assert loaded.sha256() == calib_set.sha256()
    assert loaded.sources == calib_set.sources
    assert loaded.settings["seed"] == SMALL.seed


def test_npz_of_another_patch_size_is_refused(calib_set: CalibrationSet, tmp_path: Path, tiny_spec) -> None:
    import dataclasses

    path = calib_set.save(tmp_path / "patches.npz")
    with pytest.raises(CalibrationError, match=r"64px.*expects 96px"):
        read_calibration_set(path, dataclasses.replace(tiny_spec, patch_size=96))


def test_broken_npz_is_refused(tmp_path: Path, tiny_spec) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, patches=np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(CalibrationError, match="lacks"):
        read_calibration_set(bad, tiny_spec)
    np.savez(bad, patches=np.zeros((2, 64, 64, 3), np.float32), qf=np.zeros(2, np.int16), ref_index=np.zeros(2))
    with pytest.raises(CalibrationError, match="uint8"):
        read_calibration_set(bad, tiny_spec)


def test_empty_folder(tmp_path: Path, tiny_spec) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(CalibrationError, match="no images found"):
        read_calibration_set(tmp_path, tiny_spec, progress=False)
    with pytest.raises(CalibrationError, match="does not exist"):
        read_calibration_set(tmp_path / "missing", tiny_spec, progress=False)


def test_folder_of_unreadable_files(tmp_path: Path, tiny_spec) -> None:
    (tmp_path / "a.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.PNG").write_bytes(b"")
    with pytest.raises(CalibrationError, match="none of the 2 image"):
        read_calibration_set(tmp_path, tiny_spec, SMALL, progress=False)


def test_one_bad_image_is_reported_and_skipped(calib_photos: Path, tmp_path: Path, tiny_spec,
                                               caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(calib_photos, folder)
    (folder / "nested").mkdir()
    (folder / "nested" / "broken.JPG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    names = [p.relative_to(folder).as_posix() for p in list_images(folder)]
    assert "nested/broken.JPG" in names  # recursive, case-insensitive suffixes
    cs = read_calibration_set(folder, tiny_spec, ReaderConfig(num_patches=200, patches_per_image=2),
                              progress=False)
    assert [s.path for s in cs.skipped] == ["nested/broken.JPG"]
    assert "nested/broken.JPG" not in cs.sources
    assert cs.summary()["skipped"][0]["path"] == "nested/broken.JPG"
    assert "broken.JPG" in caplog.text


def test_split_holdout_is_disjoint_and_seeded(calib_photos: Path) -> None:
    files = list_images(calib_photos)
    calib, held = split_holdout(files, 2, seed=0)
    assert len(held) == 2 and not set(calib) & set(held) and len(calib) + 2 == len(files)
    assert split_holdout(files, 2, seed=0) == (calib, held)
    with pytest.raises(CalibrationError):
        split_holdout(files, len(files))


def test_config_is_checked() -> None:
    with pytest.raises(UsageError):
        ReaderConfig(qf_min=0)
    with pytest.raises(UsageError):
        ReaderConfig(reference_share=1.0)


def test_ort_readers(calib_set: CalibrationSet, tiny_spec) -> None:
    reader = EncoderDataReader(calib_set, tiny_spec, batch_size=5)
    batches = []
    while (batch := reader.get_next()) is not None:
        batches.append(batch["patches"])
    assert sum(len(b) for b in batches) == len(calib_set) and len(batches) == len(reader)
    assert batches[0].dtype == np.float32 and batches[0].shape[1:] == (3, 64, 64)
    reader.rewind()
    assert reader.get_next() is not None
    features = np.random.default_rng(0).normal(size=(len(calib_set), 8)).astype(np.float32)
    head = HeadDataReader(features, calib_set, batch_size=4)
    first = head.get_next()
    assert first is not None and set(first) == {"f_ref", "f_dis"}
    dis = calib_set.distorted_index
    np.testing.assert_array_equal(first["f_ref"][0], features[calib_set.ref_index[dis[0]]])


def test_tensorrt_batches_satisfy_the_protocol(calib_set: CalibrationSet, tiny_spec) -> None:
    trt_legacy = pytest.importorskip("sgjnd.export.trt_legacy")
    batches = TrtCalibrationBatches(calib_set, tiny_spec, batch_size=5)
    assert isinstance(batches, trt_legacy.CalibrationBatches)
    summary = trt_legacy.check_calibration_source(batches, tiny_spec)
    assert summary.batch_size == 5 and summary.batches == len(calib_set) // 5
    assert summary.fingerprint == batches.fingerprint
    assert [b["patches"].shape for b in batches] == [batches.shape] * batches.num_batches  # re-iterable


def test_chunks_cover_the_set_once(calib_set: CalibrationSet, tiny_spec) -> None:
    chunks = encoder_chunks(calib_set, tiny_spec, 5)
    batches = [reader.get_next() for reader in chunks]
    assert all(reader.get_next() is None for reader in chunks)  # one batch per chunk: one calibrator pass each
    got = np.concatenate([b["patches"] for b in batches if b is not None])
    np.testing.assert_array_equal(got, calib_set.encoder_inputs(tiny_spec))
    features = np.random.default_rng(1).normal(size=(len(calib_set), 8)).astype(np.float32)
    pairs = [reader.get_next() for reader in head_chunks(features, calib_set, 4)]
    dis = calib_set.distorted_index
    f_dis = np.concatenate([p["f_dis"] for p in pairs if p is not None])
    f_ref = np.concatenate([p["f_ref"] for p in pairs if p is not None])
    np.testing.assert_array_equal(f_dis, features[dis])
    np.testing.assert_array_equal(f_ref, features[calib_set.ref_index[dis]])
