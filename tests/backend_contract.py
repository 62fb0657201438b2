"""The checks every backend that runs the tiny model's graphs must pass (plain helpers for the backend tests)."""

from __future__ import annotations

import numpy as np
import pytest

from sgjnd.errors import UsageError
from sgjnd.runtime.backends.base import ModelBackends


def tiny_patches(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random normalised 64 px patches (the tiny model's input)."""
    return np.random.default_rng(seed).standard_normal((n, 3, 64, 64), dtype=np.float32)


def check_runs_both_graphs_at_any_batch(models: ModelBackends, description: str) -> None:
    """The tiny model on a backend: spec and limits from the sidecars, both graphs at batches 1..64, valid q and w,
    the backend's description, and the two refusals every backend shares (too large a batch, a wrong shape)."""
    assert models.model.name == "sgjnd_tiny" and models.weights == "UNTRAINED: seed 0"
    assert models.encoder.max_batch_size == 64 and models.encoder.preferred_batch_size == 16
    with models:
        for n in (1, 5, 64):
            features = models.encoder.infer({"patches": tiny_patches(n)})["features"]
            assert features.shape == (n, 128) and features.dtype == np.float32
        out = models.head.infer({"f_ref": features, "f_dis": features[::-1].copy()})
        assert out["q"].shape == (64,) and out["w"].shape == (64,)
        assert np.all((out["q"] > 0) & (out["q"] < 1)) and np.all(out["w"] > 0)
        assert models.encoder.description == description
        with pytest.raises(UsageError, match="exceeds the artifact's maximum batch 64"):
            models.encoder.infer({"patches": tiny_patches(65)})
        with pytest.raises(UsageError, match="must have shape"):
            models.encoder.infer({"patches": np.zeros((2, 3, 32, 32), np.float32)})
