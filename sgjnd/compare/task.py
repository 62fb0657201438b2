"""Task-level comparison: run a reference and targets on the same images and compare their JND QFs.

:func:`run_comparison` runs two or more targets (backend, location, precision) on the same patches (reference and
JPEG-distorted, from real photos): each graph's outputs are checked against the reference's with
:func:`sgjnd.compare.tensors.compare_outputs`, and each target predicts the JND QF of every image; the difference to
the reference is judged against a per-precision :class:`TaskBound` (:func:`compare_jnd`). The result is a
:class:`ComparisonReport`, readable (:meth:`ComparisonReport.format`) and JSON-ready (:meth:`ComparisonReport.to_dict`).

This module imports only numpy at the top; the runtime and the backends are imported when a comparison runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sgjnd.compare.tensors import (
    OutputComparison,
    ToleranceSpec,
    compare_outputs,
    format_comparisons,
    jsonable,
    precision_key,
    tolerances_for,
)
from sgjnd.errors import UsageError
from sgjnd.spec import ModelSpec

if TYPE_CHECKING:
    from sgjnd.runtime.pairs import PairSet
    from sgjnd.runtime.predictor import PredictConfig
    from sgjnd.runtime.source import ModelSource


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


def task_bound_for(precision: str) -> TaskBound:
    """The default task-level bound for ``precision``."""
    return TASK_BOUNDS[precision_key(precision)]


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
    diffs = [
        abs((t if t is not None else floor) - (r if r is not None else floor))
        for r, t in zip(reference_qf, target_qf, strict=True)
    ]
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
            targets.append(
                {
                    "target": t.target,
                    "description": t.description,
                    "passed": t.passed,
                    "seconds": round(t.seconds, 3),
                    "tensors": {g: [c.to_dict() for c in cs] for g, cs in t.tensors.items()},
                    "task": None if t.task is None else dataclasses.asdict(t.task),
                }
            )
        return jsonable(
            {
                "reference": self.reference,
                "reference_description": self.reference_description,
                "inputs": self.inputs,
                "passed": self.passed,
                "reference_qf": self.reference_qf,
                "targets": targets,
            }
        )


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
    """What every target is fed: the patches for the encoders (uint8 pixels in ``pair_set``, given to each encoder as
    its graph takes them), the reference's feature pairs for the heads."""

    pair_set: PairSet
    f_ref: np.ndarray
    f_dis: np.ndarray


CONVERT_ROWS = 64
"""Patches converted to a target's encoder input at a time: the uint8 pixels of the whole set are held (a quarter of
the float32 bytes), a float32 copy only for one slice (the same batches as one array: ``batching.run_stream``)."""


def _converted(pixels: np.ndarray, to_input: Callable[[np.ndarray], np.ndarray]) -> Iterator[np.ndarray]:
    for start in range(0, len(pixels), CONVERT_ROWS):
        yield to_input(pixels[start : start + CONVERT_ROWS])


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
            if expect is not None and not m.model.same_network(expect):  # a uint8 or float32 encoder input may differ
                raise UsageError(
                    f"{target.label} is model {m.model.name!r} (patch {m.model.patch_size}, features "
                    f"{m.model.feature_dim}) but the reference is {expect.name!r} (patch {expect.patch_size}, "
                    f"features {expect.feature_dim}), or their preprocessing differs: compare artifacts of one model"
                )
            batch, pad = config.batch_size, config.pad_last_batch  # the predictor's batching
            to_input = PairMaker(m.model).encoder_input  # uint8 pixels or normalised float32, as its graph takes them
            if inputs is None:
                maker = PairMaker(m.model.with_encoder_input("uint8"), margin=config.jpeg_margin)  # pixels, shared
                pair_set = make_pair_set(maker, [d.bgr for d in decoded], qfs, max_patches=max_patches)
                features = encode(m, _converted(pair_set.patches, to_input), batch, pad=pad)
                f_ref, f_dis = pair_set.pairs(features)
                inputs = _Inputs(pair_set, np.ascontiguousarray(f_ref), np.ascontiguousarray(f_dis))
            else:
                features = encode(m, _converted(inputs.pair_set.patches, to_input), batch, pad=pad)
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
