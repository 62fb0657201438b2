"""OpenVINO targets in `sgjnd compare`, the calibration report and `sgjnd info`: bf16 as a precision with its own
tolerances, the bf16 accuracy gate (`sgjnd calibrate --precision bf16`), and what the CPU offers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sgjnd.compare.task import task_bound_for
from sgjnd.compare.tensors import tolerances_for
from sgjnd.runtime.source import ModelSource


def test_bf16_targets_parse_and_sit_between_fp16_and_int8() -> None:
    t = ModelSource.parse("openvino:models/r50:bf16", threads=2)
    assert (t.backend, t.location, t.precision, dict(t.options)) == ("openvino", Path("models/r50"), "bf16",
                                                                     {"threads": 2})
    assert ModelSource.parse("openvino:models/r50:int8-ort").precision == "int8-ort"
    fp32, fp16, bf16, int8 = (tolerances_for(p)["features"] for p in ("fp32", "fp16", "bf16", "int8"))
    assert fp32.atol < fp16.atol < bf16.atol < int8.atol
    assert fp32.min_cosine > bf16.min_cosine > int8.min_cosine
    bounds = [task_bound_for(p).max_abs_qf for p in ("fp32", "bf16", "int8")]
    assert bounds[0] < bounds[1] == 2 < bounds[2]


def test_other_backends_refuse_bf16_saying_who_offers_it(tiny_onnx_dir: Path) -> None:
    pytest.importorskip("onnxruntime")
    from sgjnd.errors import UsageError
    from sgjnd.runtime.backends.registry import open_model

    with pytest.raises(UsageError, match=r"precision 'bf16' runs the fp32 graphs .* openvino backend only"):
        open_model("onnxruntime", tiny_onnx_dir, precision="bf16")


def test_missing_openvino_is_refused_naming_the_extra(tiny_onnx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from sgjnd.errors import BackendUnavailable
    from sgjnd.runtime.backends.registry import open_model

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(BackendUnavailable, match=r"needs the openvino package .*pip install 'sgjnd\[openvino\]'"):
        open_model("openvino", tiny_onnx_dir)


def test_info_reports_the_cpu_matrix_engines(capsys: pytest.CaptureFixture[str]) -> None:
    from sgjnd.cli import main
    from sgjnd.environment import cpu_info, environment

    cpu = cpu_info()
    assert {"vnni", "bf16", "amx"} <= set(cpu)
    env = environment()
    assert "capabilities" in env["openvino_cpu"] or "reason" in env["openvino_cpu"]
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "CPU matrix engines: INT8 dot products (VNNI)" in out and "OpenVINO" in out


@pytest.fixture(scope="module")
def ov_model(tiny_onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("openvino", reason="the openvino backend needs openvino: pip install 'sgjnd[openvino]'")
    pytest.importorskip("onnxruntime")
    return Path(shutil.copytree(tiny_onnx_dir, tmp_path_factory.mktemp("ov_compare") / "model"))


def _has_bf16() -> bool:
    from sgjnd.environment import cpu_info, openvino_cpu
    from sgjnd.runtime.backends.openvino_backend import bf16_refusal

    return not bf16_refusal(cpu_info()["flags"], openvino_cpu().get("capabilities"))


def test_openvino_targets_compare_like_any_other(ov_model: Path, photos: list[Path]) -> None:
    from sgjnd.compare.task import run_comparison
    from sgjnd.runtime.predictor import PredictConfig
    from sgjnd.runtime.search import SearchConfig

    targets = [ModelSource.parse(f"openvino:{ov_model}", threads=1)]
    if _has_bf16():
        targets.append(ModelSource.parse(f"openvino:{ov_model}:bf16", threads=1))
    config = PredictConfig(search=SearchConfig(strategy="coarse-to-fine"), max_patches=2)
    report = run_comparison(photos[:1], ModelSource.parse(f"onnxruntime:{ov_model}"), targets, max_patches=2,
                            predict_config=config)
    assert report.passed, report.format()
    assert [t.description for t in report.targets][:1] == ["openvino CPU fp32"]
    for result, precision in zip(report.targets, ("fp32", "bf16"), strict=False):
        assert result.tensors["encoder"][0].tolerance == tolerances_for(precision)["features"]
        assert result.task is not None and result.task.bound == task_bound_for(precision)


def test_bf16_gate_is_recorded_by_calibrate_and_read_by_auto(ov_model: Path, photos: list[Path]) -> None:
    if not _has_bf16():
        pytest.skip("bf16 needs a CPU with AVX-512-BF16 or AMX")
    from sgjnd.calibration.pipeline import CalibrateConfig, calibrate_model
    from sgjnd.environment import cpu_info
    from sgjnd.runtime.backends.choose import choose_for_model_dir, cpu_kind

    config = CalibrateConfig(precision="bf16", report_patches=2, progress=False, threads=1)
    outcome = calibrate_model(ov_model, holdout=photos[:2], config=config)
    assert outcome.graphs == [] and outcome.report["bf16"].passed, outcome.format()
    doc = json.loads((ov_model / "calibration.bf16.json").read_text())
    fp32 = json.loads((ov_model / "encoder.onnx.json").read_text())["artifact"]["sha256"]
    assert doc["passed"] and doc["calibration"]["graph_sha256"]["encoder"] == fp32
    assert doc["comparison"]["targets"][0]["target"].startswith("openvino:")
    choice = choose_for_model_dir(ov_model)
    if cpu_kind(cpu_info()["flags"]) != "plain":
        assert (choice.backend, choice.precision) == ("openvino", "bf16"), choice.reason
    from sgjnd.errors import UsageError

    with pytest.raises(UsageError, match="bf16 writes no graph"):
        CalibrateConfig(precision="bf16", report=False)
