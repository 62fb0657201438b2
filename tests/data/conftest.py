"""Builders of small MCL-JCI and KonJND-1k trees from real photographs (downscaled so 100 JPEGs take little time)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

SIZE = (64, 48)  # (width, height): small, so a tree of 100 QFs per source writes in well under a second


def small_photo(path: Path, offset: int = 0) -> np.ndarray:
    """A downscaled BGR crop of a real photo."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    crop = image[offset:offset + 300, offset:offset + 400]
    return cv2.resize(crop, SIZE, interpolation=cv2.INTER_AREA)


def write_jpegs(image: np.ndarray, pattern: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for qf in range(1, 101):
        cv2.imwrite(str(folder / pattern.format(qf=qf)), image, [cv2.IMWRITE_JPEG_QUALITY, qf])


@pytest.fixture
def mcl_tree(tmp_path: Path, photos: list[Path]) -> Callable[..., Path]:
    """make(samples=..., sur=..., reference=True) -> an MCL-JCI root with sources SRC01 and SRC02."""

    def make(samples: dict[str, list[float]] | None = None, sur: dict[str, dict[int, float]] | None = None,
             reference: bool = True) -> Path:
        root = tmp_path / "mcl"
        for i, name in enumerate(("ImageJND_SRC01", "ImageJND_SRC02")):
            image = small_photo(photos[i + 1], offset=10 * i)
            write_jpegs(image, name + "_{qf:03d}.jpg", root / "distorted_image" / name)
            if reference:
                (root / "reference").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "reference" / f"{name}.png"), image)
        if samples is not None:
            with open(root / "jnd.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["source", "subject", "jnd1", "jnd2", "jnd3"])
                for name, values in samples.items():
                    for k, v in enumerate(values):
                        w.writerow([name, k, v, min(v + 20, 100), ""])
        if sur is not None:
            with open(root / "sur.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["source", "qf", "first_SUR", "second_SUR", "third_SUR"])
                for name, curve in sur.items():
                    for qf, v in curve.items():
                        w.writerow([name, qf, v, v / 2, v / 4])
        return root

    return make


@pytest.fixture
def kon_tree(tmp_path: Path, photos: list[Path]) -> Callable[..., Path]:
    """make(rows, images_dir=True) -> a KonJND-1k root with images img_a and img_b and pjnd.csv holding ``rows``."""

    def make(rows: list[dict[str, object]], images_dir: bool = True) -> Path:
        root = tmp_path / "kon"
        folder = root / "images" if images_dir else root
        for i, name in enumerate(("img_a", "img_b")):
            image = small_photo(photos[i + 2], offset=5 * i)
            write_jpegs(image, name + "_{qf:03d}.jpg", folder)
            cv2.imwrite(str(folder / f"{name}.png"), image)
        columns = sorted({k for r in rows for k in r})
        with open(root / "pjnd.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)
        return root

    return make
