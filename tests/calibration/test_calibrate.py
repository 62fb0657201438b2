"""INT8 and FP16 preparation of the tiny model: graph rules per flavour, sidecars, cache reuse, atomic outputs,
and the task-level report against FP32 on held-out real photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_cpu

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from sgjnd.calibration.pipeline import CalibrateConfig, CalibrationOutcome, calibrate_model  # noqa: E402
from sgjnd.calibration.quantize import QuantizeConfig, summarize_qdq  # noqa: E402
from sgjnd.calibration.reader import ReaderConfig  # noqa: E402
from sgjnd.errors import CalibrationError  # noqa: E402
from sgjnd.spec import read_sidecar  # noqa: E402

READER = ReaderConfig(num_patches=32, patches_per_image=4)
INT8_JND_BOUND = 5
"""|ΔQF| bound of INT8 vs FP32 on the held-out photos (sgjnd.compare.task.TASK_BOUNDS["int8"]); seeded tiny model: 0."""


@pytest.fixture(scope="module")
def model_dir(tiny_onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("calibrate") / "model"
    shutil.copytree(tiny_onnx_dir, target)
    return target


@pytest.fixture(scope="module")
def int8(model_dir: Path, calib_photos: Path, photos: list[Path]) -> CalibrationOutcome:
    config = CalibrateConfig(precision="int8", target="all", reader=READER, quantize=QuantizeConfig(method="minmax"),
                             report_patches=2, progress=False)
    return calibrate_model(model_dir, images=calib_photos, holdout=photos[:2], config=config)


def _load(path: Path):
    return onnx.load(str(path))


def test_tensorrt_flavour_is_symmetric_per_channel(int8: CalibrationOutcome, model_dir: Path) -> None:
    graph = _load(model_dir / "encoder.int8.onnx").graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    q_nodes = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert q_nodes
    for node in q_nodes:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    weights = {n.input[1]: n for n in graph.node if n.op_type in ("Conv", "Gemm")}
    conv_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in weights]
    assert len(conv_dq) == sum(1 for n in graph.node if n.op_type in ("Conv", "Gemm"))
    for node in conv_dq:
        scale = inits[node.input[1]]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        assert scale.ndim == 1 and scale.size > 1 and axis == 0, node.name
        assert scale.size == inits[node.input[0]].shape[0] and np.all(scale > 0)
    # Activations are per tensor (scalar scales) and biases stay float.
    for node in q_nodes:
        if node.input[0] not in inits:
            assert inits[node.input[1]].size == 1
    assert summarize_qdq(model_dir / "encoder.int8.onnx").bias_dtypes == ()


def test_ort_flavour_uses_uint8_activations(int8: CalibrationOutcome, model_dir: Path) -> None:
    summary = summarize_qdq(model_dir / "encoder.int8-ort.onnx")
    assert summary.activation_dtypes == ("uint8",) and summary.weight_dtypes == ("int8",)
    assert {op for op, _ in summary.per_channel_axes.values()} >= {"Conv"}
    kernels = read_sidecar(model_dir / "encoder.int8-ort.onnx").artifact.details["ort_cpu_kernels"]
    assert kernels["integer_ops"].get("QLinearConv", 0) > 0, kernels


def test_sidecars_record_the_calibration(int8: CalibrationOutcome, model_dir: Path) -> None:
    fp32 = read_sidecar(model_dir / "encoder.onnx").artifact
    for precision, flavour in (("int8", "tensorrt"), ("int8-ort", "ort-cpu")):
        enc = read_sidecar(model_dir / f"encoder.{precision}.onnx").artifact
        assert enc.precision == precision and enc.kind == "onnx" and enc.graph == "encoder"
        assert enc.checkpoint_sha256 == fp32.checkpoint_sha256 and enc.weights == fp32.weights
        calib = enc.details["calibration"]
        assert calib["flavour"] == flavour and calib["method"] == "minmax"
        assert calib["data_sha256"] == int8.data["sha256"] and calib["excluded_nodes"] == []
        assert enc.details["max_batch"] == fp32.details["max_batch"]
        head = read_sidecar(model_dir / f"head.{precision}.onnx").artifact
        assert head.details["kept_fp32"] is True and head.precision == precision


def test_int8_jnd_within_bound_on_held_out_photos(int8: CalibrationOutcome, model_dir: Path) -> None:
    for precision in ("int8", "int8-ort"):
        report = int8.report[precision]
        task = report.result.task
        assert task is not None and task.worst_qf <= INT8_JND_BOUND, report.format()
        features = report.result.tensors["encoder"][0]
        assert features.cosine > 0.95, report.format()
        doc = json.loads((model_dir / f"calibration.{precision}.json").read_text())
        assert doc["precision"] == precision and doc["calibration"]["data"]["patches"] == READER.num_patches


def test_cache_is_reused_when_nothing_changes(int8: CalibrationOutcome, model_dir: Path, calib_photos: Path,
                                              photos: list[Path]) -> None:
    before = (model_dir / "encoder.int8.onnx").read_bytes()
    config = CalibrateConfig(precision="int8", target="tensorrt", reader=READER,
                             quantize=QuantizeConfig(method="minmax"), report=False, progress=False)
    again = calibrate_model(model_dir, images=calib_photos, holdout=photos[:2], config=config)
    assert "encoder-ranges" in again.cache_hits
    assert (model_dir / "encoder.int8.onnx").read_bytes() == before
    # Another seed is other data: a new key, a miss.
    other = CalibrateConfig(precision="int8", target="tensorrt", reader=ReaderConfig(num_patches=32, seed=9,
                            patches_per_image=4), quantize=QuantizeConfig(method="minmax"), report=False,
                            progress=False)
    assert calibrate_model(model_dir, images=calib_photos, holdout=photos[:2], config=other).cache_hits == {}


def test_excluded_nodes_stay_float_and_are_reported(int8: CalibrationOutcome, model_dir: Path, calib_photos: Path,
                                                    photos: list[Path], tmp_path: Path) -> None:
    work = tmp_path / "model"
    shutil.copytree(model_dir, work, ignore=shutil.ignore_patterns("*.int8*", "calibration.*"))
    conv = next(n.name for n in _load(work / "encoder.onnx").graph.node if n.op_type == "Conv")
    config = CalibrateConfig(precision="int8", target="tensorrt", reader=READER, report=False, progress=False,
                             quantize=QuantizeConfig(method="minmax", exclude_nodes=(conv,),
                                                     exclude_op_types=("MatMul",)))
    out = calibrate_model(work, images=calib_photos, holdout=photos[:2], config=config)
    assert "encoder-ranges" in out.cache_hits  # exclusions reuse the cached ranges
    summary = summarize_qdq(work / "encoder.int8.onnx")
    assert conv in summary.float_nodes
    assert all(op != "MatMul" for op, _ in summary.per_channel_axes.values())
    calib = read_sidecar(work / "encoder.int8.onnx").artifact.details["calibration"]
    assert calib["excluded_nodes"] == [conv] and calib["excluded_op_types"] == ["MatMul"]


def test_failure_leaves_the_directory_as_it_was(model_dir: Path, calib_photos: Path, photos: list[Path],
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sgjnd.calibration.pipeline as pipeline

    work = tmp_path / "model"
    shutil.copytree(model_dir, work, ignore=shutil.ignore_patterns("*.int8*", "calibration.*", "*fp16*"))
    before = sorted(p.name for p in work.iterdir())

    def broken(*args, **kwargs):
        raise CalibrationError("simulated failure")

    monkeypatch.setattr(pipeline, "integer_kernels", broken)  # fails after the TensorRT pair was staged
    config = CalibrateConfig(precision="int8", target="all", reader=READER, quantize=QuantizeConfig(method="minmax"),
                             report=False, progress=False)
    with pytest.raises(CalibrationError, match="simulated"):
        calibrate_model(work, images=calib_photos, holdout=photos[:2], config=config)
    assert sorted(p.name for p in work.iterdir()) == sorted({*before, ".calibration-cache"})


def test_int8_needs_images(model_dir: Path) -> None:
    with pytest.raises(CalibrationError, match="needs images"):
        calibrate_model(model_dir, images=None, holdout=[], config=CalibrateConfig(report=False, progress=False))


def test_int8_refuses_to_calibrate_on_its_held_out_images(model_dir: Path, photos: list[Path],
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos[:2]:
        shutil.copy(photo, folder / photo.name)
    with pytest.raises(CalibrationError, match=r"all 2 images of .* are also held-out images"):
        calibrate_model(model_dir, images=folder, holdout=photos[:2],
                        config=CalibrateConfig(report=False, progress=False))


def test_fp16_keeps_layernorm_softmax_attention_in_fp32(model_dir: Path, photos: list[Path]) -> None:
    from sgjnd.calibration.fp16 import attention_matmuls, node_output_dtypes

    config = CalibrateConfig(precision="fp16", report_patches=2, progress=False)
    out = calibrate_model(model_dir, holdout=photos[:1], config=config)
    model = _load(model_dir / "encoder.fp16.onnx")
    dtypes = node_output_dtypes(model)
    kept = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert kept and all(dtypes[n.name] == "float32" for n in kept)
    assert all(dtypes[name] == "float32" for name in attention_matmuls(model))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(dtypes[n.name] == "float16" for n in convs)
    # The I/O types are the FP32 graph's: uint8 pixels in (the export default), float32 features out.
    fp32 = _load(model_dir / "encoder.onnx")
    io_types = [t.type.tensor_type.elem_type for t in [*model.graph.input, *model.graph.output]]
    assert io_types == [t.type.tensor_type.elem_type for t in [*fp32.graph.input, *fp32.graph.output]]
    assert io_types == [onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT]
    report = out.report["fp16"]
    assert report.result.tensors["encoder"][0].cosine > 0.999, report.format()
    assert report.passed, report.format()
    assert read_sidecar(model_dir / "encoder.fp16.onnx").artifact.details["fp16"]["fp16_share"] > 0.5


def test_sensitivity_lists_the_noisiest_quantised_tensors(model_dir: Path, calib_photos: Path, photos: list[Path],
                                                          tmp_path: Path) -> None:
    work = tmp_path / "model"
    shutil.copytree(model_dir, work, ignore=shutil.ignore_patterns("*.int8*", "calibration.*"))
    config = CalibrateConfig(precision="int8", target="ort-cpu", reader=READER, report=False, progress=False,
                             quantize=QuantizeConfig(method="minmax"), sensitivity=True)
    calibrate_model(work, images=calib_photos, holdout=photos[:1], config=config)
    summary = read_sidecar(work / "encoder.int8-ort.onnx").artifact.details["sensitivity"]
    worst = summary["worst_local"]
    assert summary["tensors"] >= len(worst) > 0
    local = [row["local_db"] for row in worst]
    assert local == sorted(local)  # noisiest first
    assert all(db is None or db < 80 for db in local)  # int8 noise is finite and real
    names = {n for node in _load(work / "encoder.onnx").graph.node for n in node.output}
    assert all(row["name"] in names or row["name"] == "patches" for row in worst)


@pytest.mark.parametrize(("reduce_range", "warned"), [("off", True), ("on", False)])
def test_ort_warns_when_8bit_weights_meet_a_cpu_without_vnni(
    model_dir: Path, calib_photos: Path, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, reduce_range: str, warned: bool,
) -> None:
    from sgjnd.runtime.backends.registry import open_model

    work = tmp_path / "model"
    shutil.copytree(model_dir, work, ignore=shutil.ignore_patterns("*.int8*", "calibration.*"))
    config = CalibrateConfig(precision="int8", target="ort-cpu", reader=READER, report=False, progress=False,
                             quantize=QuantizeConfig(method="minmax", reduce_range=reduce_range))  # type: ignore[arg-type]
    calibrate_model(work, images=calib_photos, holdout=photos[:1], config=config)
    calibration = read_sidecar(work / "encoder.int8-ort.onnx").artifact.details["calibration"]
    assert calibration["reduce_range"] is (reduce_range == "on")
    fake_cpu(monkeypatch, {"machine": "x86_64", "vnni": False, "model": "test CPU"})
    with caplog.at_level("WARNING", logger="sgjnd"), open_model("onnxruntime", work, precision="int8-ort"):
        pass
    assert ("may saturate" in caplog.text) is warned


def test_unfused_float_compute_is_reported(model_dir: Path, calib_photos: Path, photos: list[Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A quantised Conv that ONNX Runtime leaves in float (no QLinearConv fusion) is named as lost speed."""
    import sgjnd.calibration.pipeline as pipeline

    work = tmp_path / "model"
    shutil.copytree(model_dir, work, ignore=shutil.ignore_patterns("*.int8*", "calibration.*"))
    config = CalibrateConfig(precision="int8", target="ort-cpu", reader=READER, report=False, progress=False,
                             quantize=QuantizeConfig(method="minmax"))
    clean = calibrate_model(work, images=calib_photos, holdout=photos[:1], config=config)
    assert not any("still run in float" in n for n in clean.notes)
    real = pipeline.integer_kernels

    def with_two_unfused(path: Path, *, threads: int | None = None) -> dict:
        kernels = real(path, threads=threads)
        kernels["float_compute_ops"] = {**kernels["float_compute_ops"], "Conv": 2}
        return kernels

    monkeypatch.setattr(pipeline, "integer_kernels", with_two_unfused)
    out = calibrate_model(work, images=calib_photos, holdout=photos[:1], config=config)
    assert any(n.startswith("2 compute node(s)") and "onnxslim" in n for n in out.notes), out.notes
    details = read_sidecar(work / "encoder.int8-ort.onnx").artifact.details
    assert details["ort_cpu_kernels"]["unfused_float_compute"] == 2


def test_without_a_report_every_image_calibrates(model_dir: Path, calib_photos: Path, tmp_path: Path) -> None:
    work = tmp_path / "model"
    shutil.copytree(model_dir, work, ignore=shutil.ignore_patterns("*.int8*", "calibration.*"))
    config = CalibrateConfig(precision="int8", target="ort-cpu", reader=READER, report=False, progress=False,
                             quantize=QuantizeConfig(method="minmax"))
    out = calibrate_model(work, images=calib_photos, config=config)
    assert len(list(calib_photos.iterdir())) >= 5  # enough that a report would hold a fifth out
    assert out.holdout == [] and not any("held out" in n for n in out.notes)


def test_int8_head_is_calibrated_on_fp32_feature_pairs(model_dir: Path, calib_photos: Path, tmp_path: Path) -> None:
    """head=int8: the FP32 encoder's features of the pairs (through the runtime's batching) calibrate the head; the
    features and the head's ranges are cached steps like the encoder's ranges."""
    from sgjnd.calibration.reader import head_features, read_calibration_set
    from sgjnd.runtime.backends.registry import open_model
    from sgjnd.runtime.batching import encode

    work = tmp_path / "model"
    shutil.copytree(model_dir, work, ignore=shutil.ignore_patterns("*.int8*", "calibration.*"))
    config = CalibrateConfig(precision="int8", target="ort-cpu", reader=READER, head="int8", report=False,
                             progress=False, quantize=QuantizeConfig(method="minmax"))
    first = calibrate_model(work, images=calib_photos, config=config)
    assert "features" not in first.cache_hits and "head-ranges" not in first.cache_hits
    head = read_sidecar(work / "head.int8-ort.onnx").artifact.details
    assert head["kept_fp32"] is False and head["qdq"]["quantize_nodes"] > 0
    assert head["calibration"]["cache_key_head"] and head["calibration"]["data"].startswith("FP32 encoder features")
    before = (work / "head.int8-ort.onnx").read_bytes()
    again = calibrate_model(work, images=calib_photos, config=config)
    assert {"encoder-ranges", "features", "head-ranges"} <= set(again.cache_hits)
    assert (work / "head.int8-ort.onnx").read_bytes() == before
    # The features do not depend on how the encoder is batched.
    spec = read_sidecar(work / "encoder.onnx").model
    data = read_calibration_set(calib_photos, spec, READER, progress=False)
    with open_model("onnxruntime", work, providers=("cpu",)) as models:
        features = head_features(models, data)
        one_by_one = encode(models, data.encoder_inputs(spec), batch_size=1)
    assert features.shape == (len(data), spec.feature_dim) and features.dtype == np.float32
    np.testing.assert_allclose(features, one_by_one, rtol=1e-5, atol=1e-5)
