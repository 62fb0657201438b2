"""Task-level accuracy of reduced-precision graphs against FP32, on held-out real images.

The comparison itself is :func:`sgjnd.compare.task.run_comparison` (the same code as ``sgjnd compare``): the FP32 graphs
of the model directory on ONNX Runtime's CPU provider are the reference and each new precision a target, run on ONNX
Runtime's CPU provider too unless another backend is asked for (``backend="openvino"``, where ``bf16`` is also a
precision: the FP32 graphs at bf16 inference precision).

- Tensor level: every encoder sees the same reference and JPEG-distorted patches of the held-out images, every head
  the FP32 features; cosine, max and mean absolute error of ``features``, ``q`` and ``w``.
- Task level: the real :class:`~sgjnd.runtime.predictor.JNDPredictor` predicts each image's JND QF with both, and
  the differences give the mean |ΔQF|, the worst case and the share within ±1 QF, judged against the precision's
  :class:`~sgjnd.compare.task.TaskBound`.

This module adds the calibration facts (data, exclusions, CPU kernels, cache use) and a per-precision JSON document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgjnd.calibration.sensitivity import format_noise
from sgjnd.compare.task import ComparisonReport, TargetComparison, run_comparison
from sgjnd.compare.tensors import format_comparisons
from sgjnd.runtime.source import ModelSource

REPORT_QFS: tuple[int, ...] = (10, 30, 50, 70, 90)
"""JPEG qualities of the distorted patches compared at the tensor level (spread over the search range)."""


@dataclass(frozen=True)
class CalibrationReport:
    """One precision against FP32.

    Attributes:
        precision: the precision compared (int8, int8-ort, fp16).
        reference: what ran the FP32 reference.
        inputs: the patches the tensor level used.
        result: the comparison (tensor and task level).
        reference_qf: the FP32 JND QF per image.
        calibration: facts about how the graphs were made (filled in by the pipeline).
    """

    precision: str
    reference: str
    inputs: str
    result: TargetComparison
    reference_qf: dict[str, int | None]
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every tensor tolerance and the task bound hold."""
        return self.result.passed

    def format(self) -> str:
        """A readable block: verdict, tensor metrics, JND drift, per-image QFs, and the graphs' notes."""
        r = self.result
        lines = [f"{'PASS' if r.passed else 'FAIL'} {self.precision} vs fp32 ({r.description}); reference "
                 f"{self.reference}", f"  inputs: {self.inputs}"]
        for graph, comparisons in r.tensors.items():
            lines.append(format_comparisons(comparisons, title=f"  {graph}"))
        if r.task is not None:
            lines.append(f"  {r.task.line()}")
            for image, ref, got in zip(r.task.images, r.task.reference_qf, r.task.target_qf, strict=True):
                lines.append(f"    {Path(image).name[:40]:<40} fp32 {_qf(ref):>4}  {self.precision} {_qf(got):>4}")
        for graph, details in self.calibration.get("graphs", {}).items():
            lines += [f"  {graph}: {line}" for line in _graph_lines(details)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready document (the comparison in ``sgjnd compare``'s layout, plus the calibration facts)."""
        r = self.result
        comparison = ComparisonReport(self.reference, self.reference, self.inputs, [r], self.reference_qf).to_dict()
        return {"precision": self.precision, "passed": self.passed, "comparison": comparison,
                "calibration": self.calibration}


def _qf(value: int | None) -> str:
    return "-" if value is None else str(value)


def _graph_lines(details: dict[str, Any]) -> list[str]:
    lines = []
    if details.get("kept_fp32"):
        lines.append("kept in FP32")
    calib = details.get("calibration", {})
    excluded = calib.get("excluded_nodes") or []
    if excluded:
        shown = ", ".join(excluded[:6]) + (f", ... ({len(excluded) - 6} more)" if len(excluded) > 6 else "")
        lines.append(f"kept in float on request ({', '.join(calib.get('exclude_nodes') or [])}): "
                     f"{len(excluded)} node(s): {shown}")
    if calib.get("float_attention_matmuls"):
        lines.append(f"attention MatMuls kept in float: {len(calib['float_attention_matmuls'])}")
    if calib.get("reduce_range"):
        lines.append("weights quantised to 7 bits (reduce_range: no U8S8 saturation without VNNI)")
    if calib.get("excluded_op_types"):
        lines.append(f"excluded op types: {', '.join(calib['excluded_op_types'])}")
    qdq = details.get("qdq")
    if qdq:
        lines.append(f"{qdq['quantize_nodes']} QuantizeLinear, activations {'/'.join(qdq['activation_dtypes'])}, "
                     f"weights {'/'.join(qdq['weight_dtypes'])} per channel {qdq['per_channel_weights']}, "
                     f"float compute nodes {len(qdq['float_compute_nodes'])}")
    if details.get("sensitivity"):
        lines += format_noise(details["sensitivity"])
    kernels = details.get("ort_cpu_kernels")
    if kernels:
        lines.append(f"ONNX Runtime CPU runs it with integer kernels {kernels['integer_ops'] or 'none'}; float "
                     f"compute left: {kernels['float_compute_ops'] or 'none'} (integer share "
                     f"{kernels['integer_share']:.0%})")
    fp16 = details.get("fp16")
    if fp16:
        lines.append(f"{fp16['engine']}: {fp16['fp16_share']:.0%} of compute nodes in FP16; FP32 kept for "
                     f"{', '.join(fp16['fp32_op_types'])} and {len(fp16['fp32_nodes'])} attention/named node(s)")
    return lines


def accuracy_report(
    model_dir: Path,
    precisions: Sequence[str],
    images: Sequence[Path],
    *,
    max_patches: int = 4,
    strategy: str = "coarse-to-fine",
    qfs: Sequence[int] = REPORT_QFS,
    threads: int | None = None,
    backend: str = "onnxruntime",
) -> dict[str, CalibrationReport]:
    """Compare each precision's graphs in ``model_dir`` with the FP32 graphs on ``images``.

    Args:
        model_dir: the model directory.
        precisions: precisions to compare (their graphs must exist).
        images: held-out photos (not the calibration images).
        max_patches: patches per image in the JND predictions and at the tensor level.
        strategy: the QF search strategy of the JND predictions.
        qfs: JPEG qualities of the distorted patches at the tensor level.
        threads: intra-op threads of every backend; None leaves the choice to each library.
        backend: the backend that runs the targets (``onnxruntime``, ``openvino``); the reference is always ONNX
            Runtime's CPU provider on the FP32 graphs, so reports of different backends share one reference.

    Returns:
        precision -> report.
    """
    from sgjnd.runtime.predictor import PredictConfig
    from sgjnd.runtime.search import SearchConfig

    options: dict[str, Any] = {"providers": ("cpu",), "threads": threads}
    reference = ModelSource("onnxruntime", Path(model_dir), "fp32", options)
    target_options = options if backend == "onnxruntime" else {"threads": threads}
    targets = [ModelSource(backend, Path(model_dir), p, target_options) for p in precisions]
    predict = PredictConfig(search=SearchConfig(strategy=strategy), max_patches=max_patches)  # type: ignore[arg-type]
    report = run_comparison([Path(p) for p in images], reference, targets, qfs=tuple(qfs),
                            max_patches=max_patches, predict_config=predict)
    return {
        precision: CalibrationReport(precision, report.reference_description, report.inputs, result,
                                     report.reference_qf)
        for precision, result in zip(precisions, report.targets, strict=True)
    }
