"""Fixtures of the calibration tests (the calibration photographs are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_spec():
    """A model spec with the tiny model's preprocessing (patch size 64); the reader needs nothing else."""
    from sgjnd.spec import ModelSpec

    return ModelSpec(name="sgjnd_tiny", patch_size=64, feature_dim=128)
