"""Ground-truth JND labels: from per-subject samples or SUR curves to one QF per image, and per-QF targets.

Convention (method notes §4.3, A12), shared by the labels, the search and the metrics: a subject's JND sample is
the **highest QF at which that subject still sees the compression**; QF ≤ J is *perceptible* (target 0) and
QF > J is *lossless* (target 1). The satisfied-user ratio is ``SUR(q) = share of subjects with sample < q``: the
share who see no difference at q.

Aggregations of one image's samples into ``J``:
- ``median``: the median of the samples (may be fractional for an even count);
- ``mean``: the mean of the samples;
- ``sur``: the SUR-p point, ``J_p = max{q : SUR(q) < p}`` (0 when SUR(1) >= p): the highest QF at which fewer
  than a share p of subjects are satisfied. For p = 0.5 and an odd count it equals the median.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sgjnd.errors import UsageError

Aggregation = Literal["median", "mean", "sur"]
AGGREGATIONS: tuple[Aggregation, ...] = ("median", "mean", "sur")
QF_AXIS: tuple[int, ...] = tuple(range(1, 101))
"""Every JPEG quality factor; SUR curves are defined on this axis."""


@dataclass(frozen=True)
class LabelConfig:
    """How an image's samples become one JND.

    Attributes:
        method: ``median``, ``mean`` or ``sur`` (the SUR-p point).
        p: the satisfied share of the ``sur`` method, in (0, 1).
    """

    method: Aggregation = "median"
    p: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in AGGREGATIONS:
            raise UsageError(f"label aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.method!r}")
        if not 0.0 < float(self.p) < 1.0:
            raise UsageError(f"the SUR point p must lie strictly between 0 and 1, got {self.p}")


def _samples(samples: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(samples), dtype=np.float64)
    if arr.size == 0:
        raise UsageError("no JND samples: expected at least one subject's JND QF")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 100:
        raise UsageError(f"JND samples must be QFs in 0..100, got values from {arr.min()} to {arr.max()}")
    return arr


def sur_from_samples(samples: Iterable[float], qfs: Sequence[int] = QF_AXIS) -> np.ndarray:
    """SUR at each QF of ``qfs``: the share of samples strictly below it.

    Args:
        samples: per-subject JND QFs (highest perceptible QF of each subject).
        qfs: the QFs to evaluate.

    Returns:
        float64 array, one SUR per QF, non-decreasing in QF.
    """
    arr = _samples(samples)
    q = np.asarray(qfs, dtype=np.float64)
    return np.asarray((arr[None, :] < q[:, None]).mean(axis=1), dtype=np.float64)


def sur_point(qfs: Sequence[int], sur: Sequence[float], p: float) -> float:
    """``max{q : SUR(q) < p}`` over ``qfs`` (ascending), or ``qfs[0] - 1`` when SUR is already >= p there."""
    below = [q for q, s in zip(qfs, sur, strict=True) if s < p]
    return float(max(below)) if below else float(qfs[0] - 1)


def jnd_from_samples(samples: Iterable[float], config: LabelConfig | None = None) -> float:
    """One image's JND QF from its per-subject samples.

    Args:
        samples: per-subject JND QFs.
        config: the aggregation; the default is the median.

    Returns:
        The JND QF (fractional for ``median`` of an even count and for ``mean``).

    Raises:
        UsageError: no samples, or a sample outside 0..100.
    """
    config = config or LabelConfig()
    arr = _samples(samples)
    if config.method == "median":
        return float(np.median(arr))
    if config.method == "mean":
        return float(arr.mean())
    return sur_point(QF_AXIS, sur_from_samples(arr).tolist(), config.p)


def dense_sur(sur: Mapping[int, float]) -> np.ndarray:
    """A SUR curve given at some QFs, on every QF 1..100 (linear between given QFs, constant beyond the ends).

    Raises:
        UsageError: the curve is empty, has a QF outside 1..100 or a value outside [0, 1].
    """
    if not sur:
        raise UsageError("empty SUR curve: expected SUR values at one or more QFs")
    qfs = np.array(sorted(sur), dtype=np.float64)
    vals = np.array([sur[int(q)] for q in qfs], dtype=np.float64)
    if qfs[0] < 1 or qfs[-1] > 100:
        raise UsageError(f"SUR curve QFs must lie in 1..100, got {int(qfs[0])}..{int(qfs[-1])}")
    if not np.all(np.isfinite(vals)) or vals.min() < 0 or vals.max() > 1:
        raise UsageError(f"SUR values must lie in [0, 1], got {vals.min()}..{vals.max()}")
    return np.interp(np.asarray(QF_AXIS, dtype=np.float64), qfs, vals)


def jnd_from_sur(sur: Mapping[int, float], config: LabelConfig | None = None) -> float:
    """One image's JND QF from its SUR curve (e.g. MCL-JCI's fitted ``first_SUR``).

    ``median`` is the SUR-0.5 point; ``mean`` is ``Σ_q (1 - SUR(q))`` over q = 1..100, the expectation of a
    sample j in 0..100 whose ``P(j >= q) = 1 - SUR(q)``; ``sur`` is the SUR-p point.
    """
    config = config or LabelConfig()
    curve = dense_sur(sur)
    if config.method == "mean":
        return float(np.sum(1.0 - curve))
    p = 0.5 if config.method == "median" else config.p
    return sur_point(QF_AXIS, curve.tolist(), p)


def binary_target(qf: int, jnd: float) -> float:
    """1.0 when ``qf`` is judged lossless for a JND of ``jnd`` (qf > jnd), else 0.0."""
    return 1.0 if qf > jnd else 0.0
