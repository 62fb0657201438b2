"""Proxy labels on small real images: the search, the cache, the CSV, and the oracles."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgjnd.data import read_proxy_labels
from sgjnd.errors import UsageError
from sgjnd.labels.oracle import Butteraugli, OracleUnavailable, Ssimulacra2, get_oracle
from sgjnd.labels.proxy import (
    ProxyConfig,
    coarse_qfs,
    expand_inputs,
    group_of,
    jnd_of,
    label_image,
    label_images,
    refine_qfs,
    write_labels,
)


def read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def jpeg(image: np.ndarray, qf: int) -> np.ndarray:
    out = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, qf])[1], cv2.IMREAD_COLOR)
    assert out is not None
    return out


needs_ssimulacra2 = pytest.mark.skipif(importlib.util.find_spec("ssimulacra2") is None,
                                       reason="the ssimulacra2 oracle: pip install 'sgjnd[train]'")

# 25 candidate QFs and a coarse step of 4: about 10 oracle calls per target keeps these tests fast.
CONFIG = ProxyConfig(oracle="ssimulacra2", coarse_step=4, patch_size=48, max_patches=2, qfs=tuple(range(2, 101, 4)))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> list[Path]:
    """Two 96x64 crops of real photos (coffee, astronaut), a crop name following the group convention."""
    folder = tmp_path_factory.mktemp("imgs")
    out = []
    for name, src, (y, x) in (("coffee__c0", photos[2], (120, 200)), ("astronaut", photos[0], (60, 180))):
        crop = read(src)[y:y + 64, x:x + 96]
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), crop)
        out.append(path)
    return out


def test_search_helpers_match_an_exhaustive_scan() -> None:
    qfs = list(range(1, 101))
    for true_jnd in (0, 1, 7, 37, 64, 99, 100):
        def visible(q: int, j: int = true_jnd) -> bool:
            return q <= j  # monotone: visible up to the JND

        coarse = coarse_qfs(qfs, 8)
        visited = sorted(set(coarse) | set(refine_qfs(qfs, coarse, visible)))
        assert jnd_of(visited, visible, 1) == true_jnd
        assert len(visited) <= len(coarse) + 7
    assert coarse_qfs(qfs, 8)[-1] == 100 and coarse_qfs(qfs, 1) == qfs


@needs_ssimulacra2
def test_label_image_with_ssimulacra2(images: list[Path], tmp_path: Path) -> None:
    oracle = get_oracle("ssimulacra2")
    label = label_image(images[0], CONFIG, oracle, cache_dir=tmp_path)
    assert label.name == "coffee__c0" and label.group == "coffee" and (label.width, label.height) == (96, 64)
    assert 0 <= label.jnd_qf <= 100 and label.evaluated > 0
    # the JND is the highest visited QF the oracle calls visible; everything visited above it is invisible
    assert all(oracle.visible(s, 51.0) == (q <= label.jnd_qf) for q, s in label.scores.items() if q >= label.jnd_qf)
    assert len(label.patches) == 2 and all(p.scores for p in label.patches)
    again = label_image(images[0], CONFIG, oracle, cache_dir=tmp_path)  # resumed from the cache
    assert again.evaluated == 0 and again.jnd_qf == label.jnd_qf
    stricter = label_image(images[0], ProxyConfig(**{**CONFIG.__dict__, "threshold": 80.0}), oracle, cache_dir=tmp_path)
    assert stricter.jnd_qf >= label.jnd_qf and stricter.evaluated < label.evaluated  # coarse scores reused


@needs_ssimulacra2
def test_labels_csv_round_trip_says_proxy(images: list[Path], tmp_path: Path) -> None:
    labels, failures = label_images(images, CONFIG, cache_dir=tmp_path / "cache", jobs=2, progress=False)
    assert not failures and [x.name for x in labels] == ["coffee__c0", "astronaut"]
    out = tmp_path / "labels.csv"
    write_labels(out, labels, CONFIG)
    first = out.read_text().splitlines()[0]
    assert first.startswith("# PROXY LABELS from the ssimulacra2 oracle") and "NOT human data" in first
    data = read_proxy_labels(out)
    assert data.kind == "proxy" and not data.human and data.jpeg is not None and data.jpeg.subsampling == "420"
    by_name = {s.name: s for s in data.sources}
    assert by_name["coffee__c0"].jnd_label() == labels[0].jnd_qf
    assert len(by_name["astronaut"].patches) == 2 and by_name["coffee__c0"].group == "coffee"


@needs_ssimulacra2
def test_bad_inputs(images: list[Path], tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(images[1], tmp_path / "a" / "x.png")
    shutil.copy(images[1], tmp_path / "b" / "x.png")
    with pytest.raises(UsageError, match="two images share the name 'x'"):
        expand_inputs([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(UsageError, match="does not exist"):
        expand_inputs([tmp_path / "missing.png"])
    with pytest.raises(UsageError, match="unknown oracle 'vmaf'"):
        get_oracle("vmaf")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    labels, failures = label_images([tmp_path / "bad.png"], CONFIG, progress=False)
    assert not labels and failures[0].path.name == "bad.png"
    assert group_of("flower__c3") == "flower" and group_of("plain") == "plain"


@needs_ssimulacra2
def test_ssimulacra2_matches_the_package_on_files(images: list[Path], tmp_path: Path) -> None:
    from ssimulacra2 import compute_ssimulacra2  # type: ignore[import-untyped]

    ref = read(images[1])
    dis = jpeg(ref, 30)
    cv2.imwrite(str(tmp_path / "d.png"), dis)
    assert Ssimulacra2().score(ref, dis) == pytest.approx(compute_ssimulacra2(str(images[1]), str(tmp_path / "d.png")))
    assert Ssimulacra2().score(ref, ref) == pytest.approx(100.0)


@pytest.mark.skipif(shutil.which("butteraugli_main") is None,
                    reason="butteraugli_main not installed: apt-get install -y libjxl-devtools")
def test_butteraugli_oracle(images: list[Path]) -> None:
    ref = read(images[0])
    low, high = jpeg(ref, 10), jpeg(ref, 95)
    oracle = get_oracle("butteraugli")
    assert oracle.score(ref, low) > oracle.score(ref, high) > 0
    assert oracle.visible(3.0, 2.0) and not oracle.visible(1.0, 2.0)
    label = label_image(images[0], ProxyConfig(qfs=tuple(range(5, 100, 10)), coarse_step=3, max_patches=0), oracle)
    assert 0 <= label.jnd_qf <= 100 and label.patches == ()


def test_missing_butteraugli_is_reported() -> None:
    with pytest.raises(OracleUnavailable, match="apt-get install -y libjxl-devtools"):
        Butteraugli(binary="no-such-butteraugli").check()


@needs_ssimulacra2
def test_label_command(images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sgjnd.commands import label

    parser = argparse.ArgumentParser()
    label.add_parser(parser.add_subparsers())
    out = tmp_path / "l.csv"
    args = parser.parse_args(["label", str(images[1]), "-o", str(out), "--oracle", "ssimulacra2", "--qf-step", "8",
                              "--min-qf", "20", "--max-qf", "60",
                              "--patch-size", "48", "--max-patches", "1", "-q"])
    assert args.run(args) == 0
    assert "astronaut" in capsys.readouterr().out and out.is_file() and (tmp_path / "l.csv.json").is_file()
    args = parser.parse_args(["label", str(images[1]), "--oracle", "ssimulacra2", "--calibrate-to", "30", "-q",
                              "--cache", str(tmp_path / "c")])
    assert args.run(args) == 0
    assert "threshold for a median proxy JND at QF 30" in capsys.readouterr().out
