"""Fixtures of the calibration tests: real photographs split into calibration and held-out sets."""

from __future__ import annotations

from pathlib import Path

import pytest

"""scikit-image photographs used for calibration; the bundled sample photos (sgjnd.samples) are held out."""


@pytest.fixture(scope="session")
def calib_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real photos, none of them among the bundled sample photos used as held-out images."""
    pytest.importorskip("skimage", reason="the photographs come from scikit-image")
    from sgjnd.samples import calibration_photos, copy_photos

    photos = calibration_photos()
    if not photos:
        pytest.skip("scikit-image ships none of the calibration photographs")
    folder = tmp_path_factory.mktemp("calib_photos")
    copy_photos(photos, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_spec():
    """A model spec with the tiny model's preprocessing (patch size 64); the reader needs nothing else."""
    from sgjnd.spec import ModelSpec

    return ModelSpec(name="sgjnd_tiny", patch_size=64, feature_dim=128)
