"""Where an INT8 graph loses accuracy: the quantisation noise of every quantised tensor, with ONNX Runtime's QDQ
debugging tools (``onnxruntime.quantization.qdq_loss_debug``).

Two figures per tensor, both signal-to-quantisation-noise ratios in dB (higher is better):

- ``local``: the tensor before vs after its own QuantizeLinear/DequantizeLinear pair, inside the QDQ graph: what
  quantising this one tensor costs.
- ``accumulated``: the FP32 graph's tensor vs the QDQ graph's, after its Q/DQ pair: all the noise of the layers
  before it, too.

A tensor with a low local figure is a candidate for ``--exclude-nodes`` (its producer); the accumulated figure shows
where along the graph the noise grows past what the task tolerates. Neither replaces the task-level report.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sgjnd.errors import CalibrationError


@dataclass(frozen=True)
class TensorNoise:
    """The quantisation noise of one quantised tensor (dB; ``inf`` when there is none).

    Attributes:
        name: the tensor's name in the FP32 graph.
        local_db: SQNR of the tensor's own Q/DQ pair.
        accumulated_db: SQNR of the QDQ graph's tensor against the FP32 graph's; None when the FP32 graph has no
            tensor of that name.
    """

    name: str
    local_db: float
    accumulated_db: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (infinite ratios as None)."""
        return {"name": self.name, "local_db": _finite(self.local_db),
                "accumulated_db": None if self.accumulated_db is None else _finite(self.accumulated_db)}


def _finite(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None


class _Batches:
    """A CalibrationDataReader over fixed batches: ``get_next`` then None, or iterated (as ``collect_activations``
    does)."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self._feeds = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self._feeds


def tensor_noise(float_model: Path, qdq_model: Path, batches: Sequence[np.ndarray]) -> list[TensorNoise]:
    """The noise of every quantised tensor of ``qdq_model`` on ``batches``, in the FP32 graph's node order.

    Args:
        float_model: the FP32 graph ``qdq_model`` was quantised from.
        qdq_model: the QDQ graph.
        batches: inputs of the graphs' single input (keep them few: every intermediate tensor is held in memory).

    Raises:
        CalibrationError: no batch, or ONNX Runtime cannot run the instrumented graphs.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    if not batches:
        raise CalibrationError("no patches to measure the quantisation noise on")
    graph = onnx.load(str(float_model), load_external_data=False).graph
    input_name = graph.input[0].name
    order = {out: i for i, node in enumerate(graph.node) for out in node.output}
    order.update({i.name: -1 for i in graph.input})
    with tempfile.TemporaryDirectory(prefix="sgjnd-noise-") as tmp:
        activations = []
        for model, name in ((float_model, "float"), (qdq_model, "qdq")):
            augmented = Path(tmp) / f"{name}.onnx"
            try:
                modify_model_output_intermediate_tensors(str(model), str(augmented))
                activations.append(collect_activations(str(augmented), _Batches(input_name, batches),
                                                       execution_providers=["CPUExecutionProvider"]))
            except Exception as exc:  # ORT raises several types while instrumenting or running
                raise CalibrationError(
                    f"could not collect the intermediate tensors of {Path(model).name}: {type(exc).__name__}: {exc}"
                ) from exc
    float_acts, qdq_acts = activations
    errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    rows = [TensorNoise(name, float(err["qdq_err"]), float(err["xmodel_err"]) if "xmodel_err" in err else None)
            for name, err in errors.items()]
    return sorted(rows, key=lambda r: order.get(r.name, len(order)))


def noise_summary(rows: Sequence[TensorNoise], worst: int = 8) -> dict[str, Any]:
    """The ``worst`` tensors by local noise and the accumulated noise at the graph's end (for sidecars/reports)."""
    ranked = sorted(rows, key=lambda r: r.local_db)[:worst]
    accumulated = [r for r in rows if r.accumulated_db is not None]
    return {
        "tensors": len(rows),
        "worst_local": [r.to_dict() for r in ranked],
        "accumulated_at_end": accumulated[-1].to_dict() if accumulated else None,
        "accumulated_min": min(accumulated, key=lambda r: r.accumulated_db or 0.0).to_dict() if accumulated else None,
    }


def format_noise(summary: dict[str, Any]) -> list[str]:
    """Readable lines of a :func:`noise_summary`."""
    def db(value: float | None) -> str:
        return "inf" if value is None else f"{value:.1f}"

    lines = [f"quantisation noise of {summary['tensors']} quantised tensors (SQNR dB; low = noisy); worst local:"]
    for row in summary["worst_local"]:
        lines.append(f"  {db(row['local_db']):>6} local {db(row['accumulated_db']):>6} accumulated  {row['name']}")
    end = summary.get("accumulated_at_end")
    if end:
        lines.append(f"accumulated at the last quantised tensor: {db(end['accumulated_db'])} dB ({end['name']})")
    return lines
