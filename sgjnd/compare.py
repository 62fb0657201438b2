"""Compare backends and precisions, in the spirit of Polygraphy's comparator.

Two levels:

- **Tensor level**: :func:`compare_outputs` compares each output of a graph with the reference's: max/mean absolute
  and relative error, cosine similarity, PASS/FAIL against a :class:`Tolerance`, and the smallest tolerance that
  would have passed.
- **Task level**: :func:`run_comparison` runs two or more targets (backend, location, precision) on the same
  patches (reference and JPEG-distorted, from real photos) and predicts the JND QF of each image on every target;
  the difference to the reference is judged against a per-precision :class:`TaskBound`.

This module imports only numpy at the top; the runtime and the backends are imported when a comparison runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sgjnd.errors import UsageError
from sgjnd.spec import ModelSpec

if TYPE_CHECKING:
    from sgjnd.runtime.pairs import PairSet
    from sgjnd.runtime.predictor import PredictConfig
    from sgjnd.runtime.source import ModelSource

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
    # INT8 is judged at the task level (TASK_BOUNDS); tensors only have to point the same way.
    "int8": {
        "features": Tolerance(atol=math.inf, min_cosine=0.95),
        "q": Tolerance(atol=0.25),
        "": Tolerance(atol=math.inf, min_cosine=0.9),
    },
}
"""Default tensor tolerances per precision and output (``""`` is the fallback); int8-ort uses int8's."""


@dataclass(frozen=True)
class TaskBound:
    """How far a target's JND QF may be from the reference's.

    Attributes:
        max_abs_qf: the largest accepted |ΔQF| on any image.
        min_within_1: the smallest accepted share of images with |ΔQF| <= 1.
    """

    max_abs_qf: int
    min_within_1: float

    def describe(self) -> str:
        """``|ΔQF| <= 2, >= 95% within ±1``."""
        return f"|ΔQF| <= {self.max_abs_qf}, >= {self.min_within_1:.0%} within ±1"


TASK_BOUNDS: dict[str, TaskBound] = {
    "fp32": TaskBound(max_abs_qf=1, min_within_1=1.0),
    "fp16": TaskBound(max_abs_qf=2, min_within_1=0.95),
    "bf16": TaskBound(max_abs_qf=2, min_within_1=0.95),
    "int8": TaskBound(max_abs_qf=5, min_within_1=0.8),
}
"""Default task-level bounds per precision; int8-ort uses int8's."""


def _precision_key(precision: str) -> str:
    key = precision.split("-")[0]
    if key not in TOLERANCES:
        raise UsageError(f"no default tolerance for precision {precision!r}: expected fp32, fp16, bf16, int8 or "
                         "int8-ort")
    return key


def tolerances_for(precision: str) -> dict[str, Tolerance]:
    """The default per-output tolerances for ``precision`` (fp32, fp16, bf16, int8, int8-ort)."""
    return dict(TOLERANCES[_precision_key(precision)])


def task_bound_for(precision: str) -> TaskBound:
    """The default task-level bound for ``precision``."""
    return TASK_BOUNDS[_precision_key(precision)]


def _tolerance_of(tol: ToleranceSpec, name: str) -> Tolerance:
    if isinstance(tol, Tolerance):
        return tol
    if name in tol:
        return tol[name]
    if "" in tol:
        return tol[""]
    raise UsageError(f"no tolerance for output {name!r}: give one for it or a fallback under the key ''")


# -- tensor level ----------------------------------------------------------------------------------------------


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
        return _jsonable(dataclasses.asdict(self))


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


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# -- targets and runs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskComparison:
    """JND QFs of one target against the reference's, image by image.

    Attributes:
        images: image labels.
        reference_qf: the reference's JND QF per image (None: even the lowest candidate was invisible).
        target_qf: the target's JND QF per image.
        mean_abs_qf: mean |ΔQF| over the images.
        worst_qf: largest |ΔQF|.
        within_1: share of images with |ΔQF| <= 1.
        bound: the bound applied.
        passed: whether the bound holds.
    """

    images: list[str]
    reference_qf: list[int | None]
    target_qf: list[int | None]
    mean_abs_qf: float
    worst_qf: int
    within_1: float
    bound: TaskBound
    passed: bool

    def line(self) -> str:
        """One readable line."""
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict} JND QF over {len(self.images)} image(s): mean |ΔQF|={self.mean_abs_qf:.2f} "
            f"worst={self.worst_qf} within ±1={self.within_1:.0%} [{self.bound.describe()}]"
        )


def compare_jnd(
    images: Sequence[str],
    reference_qf: Sequence[int | None],
    target_qf: Sequence[int | None],
    bound: TaskBound,
    *,
    floor: int = 0,
) -> TaskComparison:
    """Compare JND QFs image by image against ``bound``.

    Args:
        images: image labels.
        reference_qf: the reference's JND QF per image.
        target_qf: the target's, same order.
        bound: the accepted deviation.
        floor: the value a None JND (every candidate invisible) counts as: one below the lowest candidate.

    Raises:
        UsageError: the lists differ in length or are empty.
    """
    if not images or not len(images) == len(reference_qf) == len(target_qf):
        raise UsageError(
            f"need one reference and one target JND per image, got {len(images)} images, {len(reference_qf)} and "
            f"{len(target_qf)} JNDs"
        )
    diffs = [abs((t if t is not None else floor) - (r if r is not None else floor))
             for r, t in zip(reference_qf, target_qf, strict=True)]
    worst = max(diffs)
    within = sum(d <= 1 for d in diffs) / len(diffs)
    return TaskComparison(
        images=list(images),
        reference_qf=list(reference_qf),
        target_qf=list(target_qf),
        mean_abs_qf=float(np.mean(diffs)),
        worst_qf=int(worst),
        within_1=float(within),
        bound=bound,
        passed=worst <= bound.max_abs_qf and within >= bound.min_within_1,
    )


@dataclass(frozen=True)
class TargetComparison:
    """Everything known about one target against the reference.

    Attributes:
        target: the target's label.
        description: what ran it (backend, providers, precision).
        tensors: graph name -> per-output comparisons on identical inputs.
        task: JND QFs against the reference's; None when the task level was skipped.
        seconds: wall time of the target's run.
    """

    target: str
    description: str
    tensors: dict[str, list[OutputComparison]]
    task: TaskComparison | None
    seconds: float

    @property
    def passed(self) -> bool:
        """True when every output and the task level pass."""
        ok = all(c.passed for cs in self.tensors.values() for c in cs)
        return ok and (self.task is None or self.task.passed)


@dataclass(frozen=True)
class ComparisonReport:
    """The result of :func:`run_comparison`.

    Attributes:
        reference: the reference target's label.
        reference_description: what ran the reference.
        inputs: a description of the patches every target saw.
        targets: one comparison per target, in the order given.
        reference_qf: the reference's JND QF per image (empty when the task level was skipped).
        predictions: target label (the reference first) -> its full task-level prediction per image
            (:class:`sgjnd.runtime.predictor.JNDResult`, in image order; empty without the task level). For visual
            reports; not part of :meth:`to_dict`.
        model: the model spec every target shares (for visual reports).
    """

    reference: str
    reference_description: str
    inputs: str
    targets: list[TargetComparison]
    reference_qf: dict[str, int | None] = field(default_factory=dict)
    predictions: dict[str, list[Any]] = field(default_factory=dict, compare=False)
    model: ModelSpec | None = field(default=None, compare=False)

    @property
    def passed(self) -> bool:
        """True when every target passes."""
        return all(t.passed for t in self.targets)

    def format(self) -> str:
        """A readable report: inputs, then per target its tensor and task verdicts, then the overall verdict."""
        lines = [f"reference: {self.reference} ({self.reference_description})", f"inputs: {self.inputs}"]
        for t in self.targets:
            lines.append("")
            lines.append(f"{'PASS' if t.passed else 'FAIL'} {t.target} ({t.description}, {t.seconds:.1f} s)")
            for graph, comparisons in t.tensors.items():
                lines.append(format_comparisons(comparisons, title=f" {graph}"))
            if t.task is not None:
                lines.append(f"  {t.task.line()}")
                lines.append(f"    {'image':<32} {'ref':>5} {'target':>6}")
                for image, r, q in zip(t.task.images, t.task.reference_qf, t.task.target_qf, strict=True):
                    lines.append(f"    {Path(image).name[:32]:<32} {_qf(r):>5} {_qf(q):>6}")
        lines.append("")
        lines.append("all targets PASS" if self.passed else "some targets FAIL")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become strings)."""
        targets = []
        for t in self.targets:
            targets.append({
                "target": t.target,
                "description": t.description,
                "passed": t.passed,
                "seconds": round(t.seconds, 3),
                "tensors": {g: [c.to_dict() for c in cs] for g, cs in t.tensors.items()},
                "task": None if t.task is None else dataclasses.asdict(t.task),
            })
        return _jsonable({
            "reference": self.reference,
            "reference_description": self.reference_description,
            "inputs": self.inputs,
            "passed": self.passed,
            "reference_qf": self.reference_qf,
            "targets": targets,
        })


def _qf(value: int | None) -> str:
    return "-" if value is None else str(value)


@dataclass
class _Run:
    description: str
    model: ModelSpec
    features: np.ndarray
    head: dict[str, np.ndarray]
    seconds: float
    predictions: list[Any] = field(default_factory=list)

    @property
    def jnd(self) -> list[int | None]:
        """The JND QF of every image (empty without the task level)."""
        return [p.jnd_qf for p in self.predictions]


@dataclass(frozen=True)
class _Inputs:
    """What every target is fed: the patches for the encoders, the reference's feature pairs for the heads."""

    pair_set: PairSet
    f_ref: np.ndarray
    f_dis: np.ndarray


def _jnd_floor(predict_config: PredictConfig | None) -> int:
    """What a None JND (every candidate invisible) counts as: one below the lowest candidate QF."""
    from sgjnd.runtime.predictor import PredictConfig

    config = predict_config or PredictConfig()
    return int(config.search.qfs[0]) - 1


COMPARE_QFS: tuple[int, ...] = (20, 50, 80)
"""JPEG qualities of the distorted patches fed to every target at the tensor level."""


def run_comparison(
    images: Sequence[Path | str],
    reference: ModelSource,
    targets: Sequence[ModelSource],
    *,
    qfs: Sequence[int] = COMPARE_QFS,
    max_patches: int = 4,
    task: bool = True,
    predict_config: PredictConfig | None = None,
    tolerances: Mapping[str, ToleranceSpec] | None = None,
    task_bounds: Mapping[str, TaskBound] | None = None,
) -> ComparisonReport:
    """Run the reference and every target on the same inputs and compare each target with the reference.

    Tensor level: the encoders all see the same reference and JPEG-distorted patches (``max_patches`` per image,
    distorted at every QF in ``qfs``); the heads all see the reference's features, so each graph is judged on its
    own. Task level: each target predicts the JND QF of every image with ``predict_config``.

    Args:
        images: image files.
        reference: the target everything is compared with (usually ``torch:CHECKPOINT``).
        targets: one or more targets.
        qfs: JPEG qualities of the distorted patches at the tensor level.
        max_patches: patches per image at the tensor level.
        task: also compare the JND QF per image.
        predict_config: a :class:`sgjnd.runtime.predictor.PredictConfig` for the task level; None uses its defaults.
        tolerances: precision -> tolerance, overriding :data:`TOLERANCES` for that precision.
        task_bounds: precision -> bound, overriding :data:`TASK_BOUNDS` for that precision.

    Returns:
        The report; ``report.passed`` tells whether every target passed.

    Raises:
        UsageError: no images or targets, or a target's model spec differs from the reference's.
        SgjndError: a model cannot be opened or an image cannot be read (the backend's or decoder's error).
    """
    from sgjnd.runtime.batching import encode, score_pairs
    from sgjnd.runtime.decode import decode_image
    from sgjnd.runtime.pairs import PairMaker, make_pair_set
    from sgjnd.runtime.predictor import PredictConfig
    from sgjnd.runtime.source import concrete_source, open_source

    if not images:
        raise UsageError("give at least one image to compare on")
    if not targets:
        raise UsageError("give at least one target to compare with the reference")
    if not qfs or any(not 1 <= int(q) <= 100 for q in qfs):
        raise UsageError(f"distortion QFs must be within 1..100, got {list(qfs)}")
    reference, targets = concrete_source(reference), [concrete_source(t) for t in targets]  # precisions known
    labels = [str(p) for p in images]
    decoded = [decode_image(Path(p)) for p in images]
    config = predict_config or PredictConfig()

    def run(target: ModelSource, expect: ModelSpec | None, inputs: _Inputs | None) -> tuple[_Run, _Inputs]:
        start = time.perf_counter()
        with open_source(target) as m:
            if expect is not None and m.model != expect:
                raise UsageError(
                    f"{target.label} is model {m.model.name!r} (patch {m.model.patch_size}, features "
                    f"{m.model.feature_dim}) but the reference is {expect.name!r} (patch {expect.patch_size}, "
                    f"features {expect.feature_dim}), or their preprocessing differs: compare artifacts of one model"
                )
            batch, pad = config.batch_size, config.pad_last_batch  # the predictor's batching
            if inputs is None:
                maker = PairMaker(m.model, margin=config.jpeg_margin)
                pair_set = make_pair_set(maker, [d.bgr for d in decoded], qfs, max_patches=max_patches)
                features = encode(m, pair_set.patches, batch, pad=pad)
                f_ref, f_dis = pair_set.pairs(features)
                inputs = _Inputs(pair_set, np.ascontiguousarray(f_ref), np.ascontiguousarray(f_dis))
            else:
                features = encode(m, inputs.pair_set.patches, batch, pad=pad)
            q, w = score_pairs(m, inputs.f_ref, inputs.f_dis, batch, pad=pad)
            head = {"q": q, "w": w}
            predictions: list[Any] = []
            if task:
                from sgjnd.runtime.predictor import JNDPredictor

                predictor = JNDPredictor(m, config)
                predictions = [predictor.predict(d, source=label) for d, label in zip(decoded, labels, strict=True)]
            description = m.encoder.description
            model = m.model
        seconds = time.perf_counter() - start
        return _Run(description, model, features, head, seconds, predictions), inputs

    ref_run, inputs = run(reference, None, None)
    floor = _jnd_floor(predict_config)
    results = []
    predictions = {reference.label: ref_run.predictions}
    for target in targets:
        out, _ = run(target, ref_run.model, inputs)
        predictions[target.label] = out.predictions
        precision = target.precision or "fp32"
        tol = (tolerances or {}).get(precision) or tolerances_for(precision)
        tensors = {
            "encoder": compare_outputs({"features": ref_run.features}, {"features": out.features}, tol),
            "head": compare_outputs(ref_run.head, out.head, tol),
        }
        task_cmp = None
        if task:
            bound = (task_bounds or {}).get(precision) or task_bound_for(precision)
            task_cmp = compare_jnd(labels, ref_run.jnd, out.jnd, bound, floor=floor)
        results.append(TargetComparison(target.label, out.description, tensors, task_cmp, out.seconds))
    described = (
        f"{len(inputs.pair_set.patches)} patches of {len(images)} image(s): {inputs.pair_set.n_ref} reference "
        f"patches (up to "
        f"{max_patches} per image) plus their JPEG-distorted copies at QF {', '.join(str(q) for q in qfs)}"
    )
    return ComparisonReport(
        reference=reference.label,
        reference_description=ref_run.description,
        inputs=described,
        targets=results,
        reference_qf=dict(zip(labels, ref_run.jnd, strict=True)) if task else {},
        predictions=predictions if task else {},
        model=ref_run.model,
    )
