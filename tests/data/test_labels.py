"""Label aggregation: median, mean and the SUR-p point, from samples and from SUR curves."""

from __future__ import annotations

import pytest

from sgjnd.data.labels import (
    LabelConfig,
    binary_target,
    dense_sur,
    jnd_from_samples,
    jnd_from_sur,
    sur_from_samples,
    sur_point,
)
from sgjnd.errors import UsageError


def test_aggregations_of_samples() -> None:
    samples = [10, 20, 30, 40]
    assert jnd_from_samples(samples) == 25.0
    assert jnd_from_samples(samples, LabelConfig("mean")) == 25.0
    # SUR(q) = share of samples < q: SUR(20) = 0.25, SUR(21..30) = 0.5 -> the SUR-0.5 point is 20
    assert jnd_from_samples(samples, LabelConfig("sur", 0.5)) == 20.0
    assert jnd_from_samples(samples, LabelConfig("sur", 0.75)) == 30.0
    # odd count: the SUR-0.5 point is the median
    assert jnd_from_samples([12, 31, 50], LabelConfig("sur")) == jnd_from_samples([12, 31, 50]) == 31.0


def test_sur_curve_and_point() -> None:
    sur = sur_from_samples([10, 20], [10, 11, 20, 21])
    assert sur.tolist() == [0.0, 0.5, 0.5, 1.0]
    assert sur_point([10, 11, 20, 21], sur.tolist(), 0.5) == 10.0
    assert sur_point([5, 6], [0.9, 1.0], 0.5) == 4.0  # already satisfied at the first QF


def test_jnd_from_sur_curves() -> None:
    curve = {q: 0.0 if q <= 30 else 1.0 for q in range(1, 101)}  # a step: everybody's JND is 30
    assert jnd_from_sur(curve) == 30.0
    assert jnd_from_sur(curve, LabelConfig("mean")) == pytest.approx(30.0)
    assert jnd_from_sur(curve, LabelConfig("sur", 0.9)) == 30.0
    sparse = {10: 0.0, 50: 1.0}  # linear between the given points
    assert dense_sur(sparse)[29] == pytest.approx(0.5)  # QF 30
    assert jnd_from_sur(sparse) == 29.0


def test_binary_target_boundary() -> None:
    assert binary_target(30, 30) == 0.0 and binary_target(31, 30) == 1.0
    assert binary_target(26, 25.5) == 1.0 and binary_target(25, 25.5) == 0.0


def test_bad_inputs() -> None:
    with pytest.raises(UsageError, match="no JND samples"):
        jnd_from_samples([])
    with pytest.raises(UsageError, match=r"must be QFs in 0\.\.100"):
        jnd_from_samples([120])
    with pytest.raises(UsageError, match="aggregation must be one of median, mean, sur"):
        LabelConfig("mode")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="strictly between 0 and 1"):
        LabelConfig("sur", 1.0)
    with pytest.raises(UsageError, match=r"SUR values must lie in \[0, 1\]"):
        dense_sur({10: 1.5})
