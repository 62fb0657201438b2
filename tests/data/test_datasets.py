"""Readers of the MCL-JCI and KonJND-1k layouts on small real trees, and their errors on malformed ones."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sgjnd.data import DatasetError, LabelConfig, open_dataset, read_konjnd, read_mcl_jci

SAMPLES = {"ImageJND_SRC01": [20, 25, 30, 22, 28], "ImageJND_SRC02": [35, 40, 38, 36]}


def test_mcl_jci_with_subject_samples(mcl_tree: Callable[..., Path]) -> None:
    root = mcl_tree(samples=SAMPLES)
    data = read_mcl_jci(root)
    assert data.kind == "mcl-jci" and data.human and len(data) == 2
    src = data.sources[0]
    assert src.name == "ImageJND_SRC01" and src.group == "ImageJND_SRC01"
    assert sorted(src.distorted) == list(range(1, 101))
    assert src.reference == root / "reference" / "ImageJND_SRC01.png"
    assert src.jnd_label() == 25.0  # median of 20, 22, 25, 28, 30
    assert src.jnd_label(LabelConfig("mean")) == pytest.approx(25.0)
    assert data.sources[1].jnd_label() == pytest.approx(37.0)  # median of an even count
    assert src.sur_target(26) == pytest.approx(3 / 5)  # samples below 26: 20, 22, 25
    assert read_mcl_jci(root, jnd_index=2).sources[0].jnd_label() == 45.0
    assert open_dataset(root).kind == "mcl-jci"


def test_mcl_jci_with_sur_curves_and_qf100_reference(mcl_tree: Callable[..., Path]) -> None:
    curve = {q: min(max((q - 20) / 20, 0.0), 1.0) for q in range(1, 101)}  # SUR crosses 0.5 between 30 and 31
    root = mcl_tree(sur={"ImageJND_SRC01": curve, "ImageJND_SRC02": curve}, reference=False)
    data = read_mcl_jci(root)
    assert data.sources[0].jnd_label() == 29.0  # highest QF with SUR < 0.5
    assert data.sources[0].reference.name == "ImageJND_SRC01_100.jpg"
    assert any("QF-100" in n for n in data.notes)
    assert data.sources[0].sur_target(31) == pytest.approx(0.55)


def test_konjnd_with_slider_and_qf_samples(kon_tree: Callable[..., Path]) -> None:
    rows: list[dict[str, object]] = [
        {"image": "img_a.png", "slider": 71, "codec": "jpeg"},  # QF 30
        {"image": "img_a.png", "slider": 61, "codec": "jpeg"},  # QF 40
        {"image": "img_a.png", "slider": 81, "codec": "jpeg"},  # QF 20
        {"image": "img_b.png", "slider": 11, "codec": "bpg"},   # the BPG half is skipped
    ]
    data = read_konjnd(kon_tree(rows))
    assert data.kind == "konjnd-1k" and data.names == ["img_a"]
    assert data.sources[0].samples == (30.0, 40.0, 20.0)
    assert data.sources[0].jnd_label() == 30.0
    assert any("BPG" in n for n in data.notes) and any("no PJND samples" in n for n in data.notes)


def test_konjnd_without_images_folder(kon_tree: Callable[..., Path]) -> None:
    root = kon_tree([{"image": "img_b", "qf": 44}], images_dir=False)
    data = open_dataset(root)
    assert data.kind == "konjnd-1k" and data.sources[0].jnd_label() == 44.0


# -- malformed trees: each error names the file and what was expected ------------------------------------------


def test_stray_file_in_a_source_folder(mcl_tree: Callable[..., Path]) -> None:
    root = mcl_tree(samples=SAMPLES)
    stray = root / "distorted_image" / "ImageJND_SRC01" / "ImageJND_SRC01_q50.jpg"
    stray.write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"ImageJND_SRC01_q50\.jpg: unexpected file; expected files "
                                           r"ImageJND_SRC01_QQQ\.jpg"):
        read_mcl_jci(root)


def test_missing_qfs_are_listed(mcl_tree: Callable[..., Path]) -> None:
    root = mcl_tree(samples=SAMPLES)
    (root / "distorted_image" / "ImageJND_SRC02" / "ImageJND_SRC02_037.jpg").unlink()
    with pytest.raises(DatasetError, match=r"source ImageJND_SRC02 lacks QF 037 \(1 missing\)"):
        read_mcl_jci(root)


def test_file_of_another_source(mcl_tree: Callable[..., Path]) -> None:
    root = mcl_tree(samples=SAMPLES)
    folder = root / "distorted_image" / "ImageJND_SRC01"
    shutil.move(folder / "ImageJND_SRC01_005.jpg", folder / "ImageJND_SRC02_005.jpg")
    with pytest.raises(DatasetError, match=r"ImageJND_SRC02_005\.jpg: belongs to another source"):
        read_mcl_jci(root)


def test_bad_label_values_and_columns(mcl_tree: Callable[..., Path]) -> None:
    root = mcl_tree(samples=SAMPLES)
    text = (root / "jnd.csv").read_text().replace("ImageJND_SRC02,1,40", "ImageJND_SRC02,1,forty")
    (root / "jnd.csv").write_text(text)
    with pytest.raises(DatasetError, match=r"jnd\.csv line \d+: column 'jnd1' must be a number in 0\.\.100, "
                                           r"got 'forty'"):
        read_mcl_jci(root)
    (root / "jnd.csv").write_text("source,subject,score\nImageJND_SRC01,1,3\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['jnd1'\]"):
        read_mcl_jci(root)


def test_unlabelled_source_and_no_labels(mcl_tree: Callable[..., Path]) -> None:
    root = mcl_tree(samples={"ImageJND_SRC01": [30]})
    with pytest.raises(DatasetError, match="ImageJND_SRC02 have images but no labels"):
        read_mcl_jci(root)
    (root / "jnd.csv").unlink()
    with pytest.raises(DatasetError, match=r"has no labels: expected .*jnd\.csv"):
        read_mcl_jci(root)


def test_missing_reference(mcl_tree: Callable[..., Path]) -> None:
    root = mcl_tree(samples=SAMPLES)
    (root / "reference" / "ImageJND_SRC02.png").unlink()
    with pytest.raises(DatasetError, match=r"lacks the reference of ImageJND_SRC02: expected .*ImageJND_SRC02\.png"):
        read_mcl_jci(root)


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is no known dataset: expected a proxy-label CSV"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="is not an MCL-JCI tree: expected the folder"):
        read_mcl_jci(tmp_path)


def test_konjnd_errors(kon_tree: Callable[..., Path]) -> None:
    root = kon_tree([{"image": "img_c.png", "qf": 30}])
    with pytest.raises(DatasetError, match=r"pjnd\.csv line 2: image 'img_c\.png' has no JPEG files"):
        read_konjnd(root)
    (root / "images" / "img_a.png").unlink()
    with pytest.raises(DatasetError, match=r"img_a_xxx\.jpg files have no reference; expected .*img_a\.png"):
        read_konjnd(root)


def test_konjnd_stray_file_and_bad_slider(kon_tree: Callable[..., Path]) -> None:
    root = kon_tree([{"image": "img_a.png", "slider": 0}])
    with pytest.raises(DatasetError, match=r"column 'slider' must be a number in 1\.\.101, got '0'"):
        read_konjnd(root)
    (root / "images" / "notes.gif").write_bytes(b"GIF89a")
    with pytest.raises(DatasetError, match=r"notes\.gif: unexpected file; expected <name>\.png references"):
        read_konjnd(root)
