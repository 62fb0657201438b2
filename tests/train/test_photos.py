"""The offline photo corpus: held out by source, licences recorded, near-duplicates caught, packages optional."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sgjnd.samples import SAMPLE_PHOTOS
from sgjnd.train import photos as corpus
from sgjnd.train.photos import HELD_OUT_PHOTOS, TRAINING_PHOTOS, OfflinePhoto, collect, difference_hash


def test_held_out_photos_share_no_source_with_training() -> None:
    held_sources = {p.origin for p in HELD_OUT_PHOTOS}
    train_sources = {p.origin for p in TRAINING_PHOTOS}
    assert len(HELD_OUT_PHOTOS) >= 20 and len(held_sources) >= 15
    assert not held_sources & train_sources, held_sources & train_sources
    assert {Path(p.path).name for p in HELD_OUT_PHOTOS} >= {p.file for p in SAMPLE_PHOTOS}
    names = [p.name for p in (*TRAINING_PHOTOS, *HELD_OUT_PHOTOS)]
    assert len(names) == len(set(names))  # one name per photo: names are labels' keys
    assert all(p.licence for p in (*TRAINING_PHOTOS, *HELD_OUT_PHOTOS))


def _photo(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (5, 7, 3)).astype(np.float32)
    return np.clip(cv2.resize(low, (640, 480), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def test_near_duplicates_are_skipped_and_missing_packages_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    original = _photo(0)
    cv2.imwrite(str(root / "a.png"), original)
    smaller = cv2.resize(original, (320, 240), interpolation=cv2.INTER_AREA)  # the same picture, another size, JPEG
    cv2.imwrite(str(root / "a_small.jpg"), smaller, [cv2.IMWRITE_JPEG_QUALITY, 40])
    cv2.imwrite(str(root / "b.png"), _photo(1))
    monkeypatch.setitem(corpus.DEBIAN_ROOTS, "fake-wallpapers", root)
    photos = [
        OfflinePhoto("a", "fake-wallpapers", "a.png", "CC0", source="x"),
        OfflinePhoto("a_small", "fake-wallpapers", "a_small.jpg", "CC0", source="x"),
        OfflinePhoto("b", "fake-wallpapers", "b.png", "CC0", source="y"),
        OfflinePhoto("gone", "fake-wallpapers", "nowhere.png", "CC0", source="z"),
    ]
    written, missing = collect(tmp_path / "out", photos)
    assert [p.name for p in written] == ["a.png", "b.png"]
    assert any("a_small (a near-duplicate of a" in m for m in missing)
    assert any(m.startswith("gone (fake-wallpapers") for m in missing)
    assert bin(difference_hash(original) ^ difference_hash(smaller)).count("1") <= corpus.DUPLICATE_BITS
    assert bin(difference_hash(original) ^ difference_hash(_photo(1))).count("1") > corpus.DUPLICATE_BITS


def test_the_demo_photos_go_only_into_the_held_out_set(tmp_path: Path) -> None:
    pytest.importorskip("skimage", reason="the demo photos come from scikit-image")
    sample = [p for p in HELD_OUT_PHOTOS if p.package == "skimage"][:1]
    assert collect(tmp_path / "train", sample)[0] == []  # refused for training
    written, _ = collect(tmp_path / "heldout", sample, heldout=True)
    assert [p.name for p in written] == [f"{sample[0].name}.png"]


def test_scaled_copies_and_their_tiles_keep_the_photo_as_their_split_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sgjnd.labels.proxy import group_of

    root = tmp_path / "pkg"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), _photo(0))  # 640x480
    monkeypatch.setitem(corpus.DEBIAN_ROOTS, "fake-wallpapers", root)
    photos = [OfflinePhoto("a", "fake-wallpapers", "a.png", "CC0", source="x"),
              OfflinePhoto("f", "fake-wallpapers", "a.png", "CC0", crops=((0, 0, 480, 320),), source="y")]
    whole, _ = collect(tmp_path / "whole", photos[:1], scales=(1, 4))
    assert [p.name for p in whole] == ["a.png", "a__s4.png"]
    assert cv2.imread(str(whole[1])).shape == (120, 160, 3)
    monkeypatch.setattr(corpus, "DUPLICATE_BITS", -1)  # the second entry is the same file, cropped
    tiled, _ = collect(tmp_path / "tiles", photos, tile=160, max_tiles=2, scales=(1, 2))
    names = [p.stem for p in tiled]
    assert [n[:4] for n in names[:2]] == ["a__t", "a__t"] and names[2].startswith("a__s2_t")
    assert any(n.startswith("f__c0_s2_t") for n in names)
    assert {group_of(n) for n in names} == {"a", "f"}
    assert all(n.count("__") == 1 for n in names)


def test_the_collector_refuses_scales_that_are_not_integer_factors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        corpus.main(["/nonexistent", "--scales", "1,half"])
    assert stop.value.code == 2
    assert "--scales takes integer factors >= 1" in capsys.readouterr().err
