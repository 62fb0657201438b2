"""Shared fixtures. Keep this file small: fixtures used by one test module belong in that module."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """The bundled real photographs (scikit-image's data folder), in the order of ``sgjnd.samples.SAMPLE_PHOTOS``."""
    pytest.importorskip("skimage", reason="the photographs come from scikit-image: pip install 'sgjnd[samples]'")
    from sgjnd.samples import sample_photos

    return sample_photos()
