"""Every graph we make, built by NVIDIA's own builder: TensorRT-RTX compiles engines ahead of time with no GPU.

TensorRT-RTX shares TensorRT's ONNX parser and QDQ optimiser, so a graph change that NVIDIA's builder rejects fails
here, through the project's own ``sgjnd calibrate`` and ``sgjnd build`` commands, for the FP32, FP16 and INT8 graphs
of the demo checkpoint and of ``sgjnd_r50`` (seeded weights). Running the engines needs an RTX-class GPU
(tests/gpu). Skipped with the reason where ``tensorrt-rtx-cu13`` is not installed (``pip install 'sgjnd[trt-rtx]'``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install 'sgjnd[trt-rtx]'")

from sgjnd.calibration.pipeline import CalibrationOutcome  # noqa: E402
from sgjnd.cli import main  # noqa: E402
from sgjnd.engine_spec import RTX_DEFAULT_COMPUTE_CAPABILITIES, EngineRecord  # noqa: E402
from sgjnd.export.onnx import ExportReport  # noqa: E402
from sgjnd.fileio import sha256_bytes  # noqa: E402
from sgjnd.runtime.modeldir import artifact_path  # noqa: E402
from sgjnd.spec import read_sidecar  # noqa: E402

pytestmark = pytest.mark.slow

PRECISIONS = ("fp32", "fp16", "int8")
BATCH = "1,8,32"


def build_all(model_dir: Path, caplog: pytest.LogCaptureFixture, *extra: str) -> dict[str, dict[str, Path]]:
    """``sgjnd build --runtime tensorrt-rtx`` at every precision; fails on any TensorRT error in the log."""
    engines: dict[str, dict[str, Path]] = {}
    for precision in PRECISIONS:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sgjnd.tensorrt"):
            code = main(["build", str(model_dir), "--runtime", "tensorrt-rtx", "--precision", precision,
                         "--batch", BATCH, *extra])
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert code == 0 and not errors, (precision, errors)
        engines[precision] = {g: artifact_path(model_dir, g, precision, "rtx.engine") for g in ("encoder", "head")}
    return engines


def check_sidecars(engines: dict[str, dict[str, Path]], targets: tuple[str, ...]) -> None:
    """Each engine exists, matches its sidecar, and the sidecar records product, version, targets and source."""
    for precision, graphs in engines.items():
        for graph, path in graphs.items():
            sidecar = read_sidecar(path)  # verifies the sha256
            record = EngineRecord.from_details(sidecar.artifact.details)
            assert sidecar.artifact.precision == precision and sidecar.artifact.graph == graph
            if graph == "encoder":  # the export default: uint8 pixels in, cast and normalised inside the network
                assert sidecar.model.encoder_input == "uint8"
            assert record.product == "tensorrt-rtx" and record.tensorrt_version == rtx.__version__
            assert record.target_compute_capabilities == targets
            assert record.gpu_name == "" and record.compute_capability == ""  # built with no GPU
            assert record.network == "strongly-typed" and str(record.build.batch) == BATCH
            onnx = path.parent / record.onnx_file
            assert record.onnx_sha256 == sha256_bytes(onnx.read_bytes())
            assert sidecar.artifact.producer["tensorrt-rtx"] == rtx.__version__
            assert sidecar.artifact.producer["onnx-parser-interface"] != "unknown"


@pytest.fixture(scope="module")
def demo_dir(demo_int8: CalibrationOutcome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model directory (FP32 + both INT8 flavours, from the shared fixture) plus its FP16 graphs."""
    model_dir = tmp_path_factory.mktemp("demo-rtx") / "model"
    shutil.copytree(demo_int8.model_dir, model_dir)
    assert main(["calibrate", str(model_dir), "--precision", "fp16", "--no-report", "--quiet"]) == 0
    return model_dir


@pytest.fixture(scope="module")
def r50_dir(r50_export: ExportReport, calib_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sgjnd_r50`` (seeded weights) with FP16 and TensorRT-flavour INT8 graphs, INT8 head included."""
    model_dir = tmp_path_factory.mktemp("r50-rtx") / "model"
    shutil.copytree(r50_export.out_dir, model_dir)
    assert main(["calibrate", str(model_dir), "--images", str(calib_photos), "--precision", "int8",
                 "--target", "tensorrt", "--num-patches", "16", "--head", "int8", "--no-report", "--quiet"]) == 0
    assert main(["calibrate", str(model_dir), "--precision", "fp16", "--no-report", "--quiet"]) == 0
    return model_dir


def test_demo_graphs_build_at_every_precision(demo_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    engines = build_all(demo_dir, caplog)
    check_sidecars(engines, RTX_DEFAULT_COMPUTE_CAPABILITIES)
    sizes = {p: engines[p]["encoder"].stat().st_size for p in PRECISIONS}
    assert sizes["int8"] < sizes["fp32"], sizes  # int8 weights: the QDQ graph really was quantised


def test_r50_graphs_build_at_every_precision_for_named_targets(
    r50_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engines = build_all(r50_dir, caplog, "--compute-capability", "8.6,8.9,12.0")
    check_sidecars(engines, ("8.6", "8.9", "12.0"))
    sizes = {p: engines[p]["encoder"].stat().st_size for p in PRECISIONS}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"], sizes
    head_sizes = {p: engines[p]["head"].stat().st_size for p in PRECISIONS}
    assert head_sizes["int8"] < head_sizes["fp32"], head_sizes  # --head int8 quantised the head too
    record = EngineRecord.from_details(read_sidecar(engines["fp16"]["head"]).artifact.details)
    command = record.build.command(r50_dir)  # what a mismatch error tells the user to run
    assert "--runtime tensorrt-rtx --compute-capability 8.6,8.9,12.0 --precision fp16 --batch 1,8,32" in command

