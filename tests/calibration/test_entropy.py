"""The vectorised entropy threshold: clips rare outliers, keeps a tight distribution whole."""

from __future__ import annotations

import numpy as np

from sgjnd.calibration.entropy import entropy_ranges, entropy_threshold


def test_clips_outliers() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=100_000), rng.normal(size=10) * 40]).astype(np.float32)
    t = float(np.abs(x).max())
    hist, edges = np.histogram(x, 2048, range=(-t, t))
    lo, hi = entropy_threshold(hist, edges)
    assert 2.5 < hi < 0.25 * t and -0.25 * t < lo < -2.5


def test_ranges_are_clipped_to_the_values_seen() -> None:
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=50_000)).astype(np.float32)  # a ReLU output: nothing below 0
    t = float(x.max())
    hist, edges = np.histogram(x, 2048, range=(-t, t))
    out = entropy_ranges({"relu": (hist, edges.astype(np.float32), np.float32(0.0), np.float32(t), t)})
    lo, hi = out["relu"][:2]
    assert float(lo) == 0.0 and 0 < float(hi) <= t
