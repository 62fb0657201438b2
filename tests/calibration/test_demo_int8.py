"""INT8 with the demo weights: on the bundled photos (held out from calibration), the JND QF of both INT8 flavours
stays within the stated bound of FP32, with the demo's recipe (models/demo/int8_exclude_nodes.txt, as `make demo`
uses it)."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("torch")

from conftest import demo_int8_exclusions

from sgjnd.calibration.pipeline import CalibrationOutcome
from sgjnd.compare.task import TaskBound
from sgjnd.spec import read_sidecar

pytestmark = pytest.mark.slow

BOUND = TaskBound(max_abs_qf=3, min_within_1=0.8)
"""The bound stated for the demo weights: stricter than the generic INT8 bound (|ΔQF| <= 5); measured on this
machine: worst |ΔQF| 1 (ort-cpu) and 2 (the tensorrt flavour, run on ONNX Runtime CPU), mean 0.2 and 0.4."""
MAX_MEAN_QF = 1.0


@pytest.fixture(scope="module")
def outcome(demo_int8: CalibrationOutcome) -> CalibrationOutcome:
    """The demo's INT8 calibration (shared with the TensorRT-RTX build test: tests/conftest.py)."""
    return demo_int8


@pytest.mark.parametrize("precision", ["int8-ort", "int8"])
def test_demo_int8_jnd_within_bound_of_fp32(outcome: CalibrationOutcome, precision: str) -> None:
    report = outcome.report[precision]
    task = report.result.task
    assert task is not None and len(task.images) == 5, report.format()
    assert task.worst_qf <= BOUND.max_abs_qf, report.format()
    assert task.within_1 >= BOUND.min_within_1, report.format()
    assert task.mean_abs_qf <= MAX_MEAN_QF, report.format()
    assert report.result.tensors["encoder"][0].cosine >= 0.95, report.format()


def test_demo_recipe_is_recorded(outcome: CalibrationOutcome) -> None:
    graph = next(g.path for g in outcome.graphs if g.path.name == "encoder.int8-ort.onnx")
    calib = read_sidecar(graph).artifact.details["calibration"]
    assert calib["exclude_nodes"] == list(demo_int8_exclusions())
    assert "/backbone/Clip" in calib["excluded_nodes"] and len(calib["excluded_nodes"]) > 20
    assert len(calib["float_attention_matmuls"]) == 6  # QKᵀ and PV of the three CSA layers
