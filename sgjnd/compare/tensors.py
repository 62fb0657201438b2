"""Tensor-level checks: compare each output of a graph with the reference's, in the spirit of Polygraphy's comparator.

:func:`compare_outputs` reports per output the max/mean absolute and relative error and the cosine similarity, a
PASS/FAIL against a :class:`Tolerance`, and the smallest tolerance that would have passed. :data:`TOLERANCES` holds
the default tolerances per precision (:func:`tolerances_for`).

This module imports only numpy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sgjnd.errors import UsageError

AtolScale = Literal["abs", "ref_max"]


@dataclass(frozen=True)
class Tolerance:
    """When an output counts as equal to the reference.

    An output passes when every element satisfies ``|out - ref| <= atol_eff + rtol * |ref|`` and the cosine
    similarity is at least ``min_cosine``. ``atol_eff`` is ``atol`` itself (``atol_scale="abs"``) or ``atol`` times
    the largest ``|ref|`` (``"ref_max"``, for outputs such as features whose scale depends on the weights).

    Attributes:
        atol: absolute tolerance (in units of ``atol_scale``); ``inf`` disables the elementwise check.
        rtol: relative tolerance, as a fraction of ``|ref|`` per element.
        min_cosine: smallest accepted cosine similarity (per sample for outputs with more than one axis).
        atol_scale: what ``atol`` is measured in.
    """

    atol: float
    rtol: float = 0.0
    min_cosine: float = -1.0
    atol_scale: AtolScale = "abs"

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):
            raise UsageError(f"atol and rtol must be >= 0, got atol={self.atol} rtol={self.rtol}")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise UsageError(f"min_cosine must be in [-1, 1], got {self.min_cosine}")
        if self.atol_scale not in ("abs", "ref_max"):
            raise UsageError(f"atol_scale must be 'abs' or 'ref_max', got {self.atol_scale!r}")

    def describe(self) -> str:
        """``atol=0.0001·max|ref| rtol=0.001 cos>=0.99999``."""
        scale = "·max|ref|" if self.atol_scale == "ref_max" else ""
        parts = [f"atol={self.atol:.2g}{scale}" if math.isfinite(self.atol) else "atol=off"]
        if self.rtol:
            parts.append(f"rtol={self.rtol:.2g}")
        if self.min_cosine > -1.0:
            parts.append(f"cos>={self.min_cosine:g}")
        return " ".join(parts)


ToleranceSpec = Tolerance | Mapping[str, Tolerance]
"""One tolerance for every output, or one per output name with ``""`` as the fallback (as in Polygraphy)."""

_FEATURES_FP32 = Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.99999, atol_scale="ref_max")
TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "fp32": {
        "features": _FEATURES_FP32,
        "q": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
        "": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999, atol_scale="ref_max"),
    },
    # bf16 (OpenVINO: the fp32 graphs at bf16 inference precision) keeps 8 significant bits where fp16 keeps 11:
    # five times fp16's elementwise tolerance, the same cosine floor.
    "bf16": {
        "features": Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.999, atol_scale="ref_max"),
        "q": Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.999),
        "": Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.999, atol_scale="ref_max"),
    },
    "fp16": {
        "features": Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999, atol_scale="ref_max"),
        "q": Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999),
        "": Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999, atol_scale="ref_max"),
    },
    # INT8 is judged at the task level (sgjnd.compare.task.TASK_BOUNDS); tensors only have to point the same way.
    "int8": {
        "features": Tolerance(atol=math.inf, min_cosine=0.95),
        "q": Tolerance(atol=0.25),
        "": Tolerance(atol=math.inf, min_cosine=0.9),
    },
}
"""Default tensor tolerances per precision and output (``""`` is the fallback); int8-ort uses int8's."""


def precision_key(precision: str) -> str:
    """The precision whose defaults apply to ``precision`` (``int8-ort`` -> ``int8``).

    Raises:
        UsageError: not fp32, fp16, bf16, int8 or int8-ort.
    """
    key = precision.split("-")[0]
    if key not in TOLERANCES:
        raise UsageError(
            f"no default tolerance for precision {precision!r}: expected fp32, fp16, bf16, int8 or int8-ort"
        )
    return key


def tolerances_for(precision: str) -> dict[str, Tolerance]:
    """The default per-output tolerances for ``precision`` (fp32, fp16, bf16, int8, int8-ort)."""
    return dict(TOLERANCES[precision_key(precision)])


def _tolerance_of(tol: ToleranceSpec, name: str) -> Tolerance:
    if isinstance(tol, Tolerance):
        return tol
    if name in tol:
        return tol[name]
    if "" in tol:
        return tol[""]
    raise UsageError(f"no tolerance for output {name!r}: give one for it or a fallback under the key ''")


@dataclass(frozen=True)
class OutputComparison:
    """One output compared with the reference.

    Attributes:
        name: output name.
        shape: the reference's shape.
        max_abs: largest ``|out - ref|``.
        mean_abs: mean ``|out - ref|``.
        max_rel: largest ``|out - ref| / |ref|`` (0/0 counts as 0, x/0 as inf).
        mean_rel: mean relative error over elements with ``ref != 0``.
        cosine: smallest per-sample cosine similarity (whole-array cosine for 1-D outputs).
        tolerance: the tolerance applied.
        passed: whether the output is within ``tolerance``.
        required_atol: the smallest ``atol`` (in the tolerance's units, with its rtol) that passes elementwise.
        required_rtol: the smallest ``rtol`` (with the tolerance's atol) that passes elementwise.
        reason: why it failed (empty when it passed).
    """

    name: str
    shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    max_rel: float
    mean_rel: float
    cosine: float
    tolerance: Tolerance
    passed: bool
    required_atol: float
    required_rtol: float
    reason: str = ""

    def line(self) -> str:
        """One readable line: verdict, errors, cosine, the tolerance and the smallest passing one."""
        if self.reason and math.isnan(self.max_abs):
            return f"FAIL {self.name:<10} {self.reason}"
        text = (
            f"{'PASS' if self.passed else 'FAIL'} {self.name:<10} max|Δ|={self.max_abs:.3g} "
            f"mean|Δ|={self.mean_abs:.3g} max rel={self.max_rel:.3g} cos={self.cosine:.7f} "
            f"[{self.tolerance.describe()}]"
        )
        if self.passed:
            return text
        tol = self.tolerance
        return (
            f"{text} {self.reason}; smallest passing: atol={self.required_atol:.3g} (at rtol={tol.rtol:g}) or "
            f"rtol={self.required_rtol:.3g} (at atol={tol.atol:g}), cos>={self.cosine:.7f}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become strings)."""
        return jsonable(dataclasses.asdict(self))


def compare_outputs(
    ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray], tol: ToleranceSpec
) -> list[OutputComparison]:
    """Compare every output of ``ref`` with the same-named output of ``out``.

    A missing output, a shape mismatch or a non-finite value fails that output (with a reason) instead of raising,
    so one report shows everything that is wrong.

    Args:
        ref: reference outputs by name.
        out: outputs to check, by name (extra names are ignored).
        tol: one tolerance, or one per output name with ``""`` as the fallback.

    Returns:
        One :class:`OutputComparison` per reference output, in the reference's order.

    Raises:
        UsageError: ``tol`` has no entry for an output and no fallback.
    """
    results = []
    for name, expected in ref.items():
        tolerance = _tolerance_of(tol, name)
        results.append(_compare_one(name, np.asarray(expected), out.get(name), tolerance))
    return results


def _compare_one(name: str, ref: np.ndarray, got: np.ndarray | None, tol: Tolerance) -> OutputComparison:
    nan = float("nan")

    def failed(reason: str) -> OutputComparison:
        return OutputComparison(name, tuple(ref.shape), nan, nan, nan, nan, nan, tol, False, nan, nan, reason)

    if got is None:
        return failed("(output missing)")
    got = np.asarray(got)
    if got.shape != ref.shape:
        return failed(f"(shape {tuple(got.shape)}, expected {tuple(ref.shape)})")
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    if not np.all(np.isfinite(r)):
        return failed("(the reference has non-finite values)")
    if not np.all(np.isfinite(g)):
        return failed(f"({int(np.sum(~np.isfinite(g)))} non-finite values)")
    diff = np.abs(g - r)
    mag = np.abs(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mag > 0, diff / np.where(mag > 0, mag, 1.0), np.where(diff > 0, np.inf, 0.0))
    nonzero = mag > 0
    scale = float(mag.max()) if tol.atol_scale == "ref_max" and mag.size and mag.max() > 0 else 1.0
    atol_eff = tol.atol * scale
    # Smallest atol (given rtol) and smallest rtol (given atol) that make every element pass.
    need_atol = float(np.max(diff - tol.rtol * mag, initial=0.0)) / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = diff - atol_eff
        need_rel = np.where(excess <= 0, 0.0, np.where(nonzero, excess / np.where(nonzero, mag, 1.0), np.inf))
    need_rtol = float(np.max(need_rel, initial=0.0))
    cosine = _min_cosine(r, g)
    reasons = []
    if math.isfinite(atol_eff) and np.any(diff > atol_eff + tol.rtol * mag):
        n_bad = int(np.sum(diff > atol_eff + tol.rtol * mag))
        reasons.append(f"{n_bad}/{diff.size} elements outside atol/rtol")
    if cosine < tol.min_cosine:
        reasons.append(f"cosine {cosine:.7f} < {tol.min_cosine}")
    return OutputComparison(
        name=name,
        shape=tuple(ref.shape),
        max_abs=float(diff.max(initial=0.0)),
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        max_rel=float(rel.max(initial=0.0)),
        mean_rel=float(rel[nonzero].mean()) if np.any(nonzero) else 0.0,
        cosine=cosine,
        tolerance=tol,
        passed=not reasons,
        required_atol=need_atol,
        required_rtol=need_rtol,
        reason=f"({'; '.join(reasons)})" if reasons else "",
    )


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two arrays taken as flat vectors; 1.0 when they are equal, 0.0 when one is zero."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if np.array_equal(x, y):
        return 1.0  # exactly, where the formula can round to 0.9999999999999998
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 0.0
    return float(np.clip(np.dot(x, y) / (nx * ny), -1.0, 1.0))


def _min_cosine(ref: np.ndarray, got: np.ndarray) -> float:
    """Per-sample cosine (rows along axis 0) for arrays with more than one axis, else the whole-array cosine."""
    if ref.ndim <= 1 or ref.shape[0] == 0:
        return cosine_similarity(ref, got)
    rows = ref.reshape(ref.shape[0], -1), got.reshape(got.shape[0], -1)
    return min(cosine_similarity(a, b) for a, b in zip(*rows, strict=True))


def format_comparisons(comparisons: Sequence[OutputComparison], *, title: str = "") -> str:
    """A readable block: an optional title line, then one line per output."""
    lines = [title] if title else []
    lines += [f"  {c.line()}" for c in comparisons]
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """``value`` ready for JSON: non-finite floats as strings (``"nan"``, ``"inf"``), tuples as lists, paths as
    strings, mapping keys as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
