"""Fixtures of the calibration tests: real photographs split into calibration and held-out sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CALIBRATION_PHOTOS = ("camera.png", "brick.png", "grass.png", "gravel.png", "color.png", "page.png", "coins.png",
                      "motorcycle_left.png", "retina.jpg", "horse.png")
"""scikit-image photographs used for calibration; the bundled sample photos (sgjnd.samples) are held out."""


@pytest.fixture(scope="session")
def calib_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real photos, none of them among the bundled sample photos used as held-out images."""
    skimage = pytest.importorskip("skimage", reason="the photographs come from scikit-image")
    data = Path(skimage.__file__).parent / "data"
    folder = tmp_path_factory.mktemp("calib_photos")
    for name in CALIBRATION_PHOTOS:
        if (data / name).is_file():
            shutil.copy(data / name, folder / name)
    if not any(folder.iterdir()):
        pytest.skip("scikit-image ships none of the calibration photographs")
    return folder


@pytest.fixture(scope="session")
def tiny_spec():
    """A model spec with the tiny model's preprocessing (patch size 64); the reader needs nothing else."""
    from sgjnd.spec import ModelSpec

    return ModelSpec(name="sgjnd_tiny", patch_size=64, feature_dim=128)
