"""INT8 with the demo weights: on the bundled photos (held out from calibration), the JND QF of both INT8 flavours
stays within the stated bound of FP32, with the demo's recipe (models/demo/int8_exclude_nodes.txt, as `make demo`
uses it)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("torch")

from sgjnd.calibration.pipeline import CalibrateConfig, CalibrationOutcome, calibrate_model
from sgjnd.calibration.quantize import QuantizeConfig
from sgjnd.calibration.reader import ReaderConfig
from sgjnd.compare import TaskBound
from sgjnd.spec import read_sidecar

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"
CHECKPOINT = DEMO / "sgjnd_effl0_proxy.pt"
BOUND = TaskBound(max_abs_qf=3, min_within_1=0.8)
"""The bound stated for the demo weights: stricter than the generic INT8 bound (|ΔQF| <= 5); measured on this
machine: worst |ΔQF| 1 (ort-cpu) and 2 (the tensorrt flavour, run on ONNX Runtime CPU), mean 0.2 and 0.4."""
MAX_MEAN_QF = 1.0


def demo_exclusions() -> tuple[str, ...]:
    """The node patterns of models/demo/int8_exclude_nodes.txt (comment lines dropped)."""
    lines = (DEMO / "int8_exclude_nodes.txt").read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="module")
def outcome(calib_photos: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> CalibrationOutcome:
    from sgjnd.export.onnx import onnx_from_checkpoint

    model_dir = onnx_from_checkpoint(CHECKPOINT, tmp_path_factory.mktemp("demo") / "model").out_dir
    config = CalibrateConfig(
        precision="int8", target="all", reader=ReaderConfig(num_patches=512, patches_per_image=64),
        quantize=QuantizeConfig(exclude_nodes=demo_exclusions()), progress=False,
    )
    return calibrate_model(model_dir, images=calib_photos, holdout=photos, config=config)


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
    assert calib["exclude_nodes"] == list(demo_exclusions())
    assert "/backbone/Clip" in calib["excluded_nodes"] and len(calib["excluded_nodes"]) > 20
    assert len(calib["float_attention_matmuls"]) == 6  # QKᵀ and PV of the three CSA layers
