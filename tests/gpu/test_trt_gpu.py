"""TensorRT on a real GPU: build every precision of the tiny model, compare with ONNX Runtime FP32, inspect,
and refuse an engine whose sidecar names another TensorRT.

Run with `make test-gpu` on a machine with an NVIDIA GPU and `pip install 'sgjnd[trt]'`. The fixture makes the fp16
and int8 graphs with `sgjnd calibrate` (as a user would) before anything is built, so every precision runs the path
that NVIDIA's builder once rejected (a quantised scalar constant in the INT8 graph).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sgjnd.engine_spec import BatchProfile, BuildConfig
from sgjnd.errors import SpecError
from sgjnd.spec import read_sidecar, sidecar_path

pytestmark = pytest.mark.gpu

PROFILE = BatchProfile(1, 4, 16)
BATCHES = (1, 3, 16)


@pytest.fixture(scope="module")
def model_dir(tiny_graphs: Path) -> Path:
    """The tiny model's FP32, FP16 and INT8 graphs (tests/gpu/conftest.py); engines are built beside them."""
    assert PROFILE.max == 16  # the graphs' max batch
    return tiny_graphs


_BUILT: dict[str, list[Path]] = {}


def engines(model_dir: Path, precision: str) -> list[Path]:
    """Build (once per module) both engines at ``precision``, or skip when its ONNX graphs are absent."""
    from sgjnd.export.trt import engines_from_model_dir, onnx_source
    from sgjnd.runtime.backends.registry import graph_names

    config = BuildConfig(precision=precision, batch=PROFILE, workspace_gib=2.0,
                         timing_cache=model_dir / "timing.cache")
    for graph in graph_names():
        source = onnx_source(model_dir, graph, config)
        if not source.is_file():
            pytest.skip(f"{source.name} is absent: the {precision} graphs come from sgjnd.calibration")
    if precision not in _BUILT:
        _BUILT[precision] = engines_from_model_dir(model_dir, config)
    return _BUILT[precision]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_writes_engines_with_sidecars(model_dir: Path, precision: str) -> None:
    import tensorrt as trt

    from sgjnd.engine_spec import EngineRecord
    from sgjnd.runtime import cuda

    paths = engines(model_dir, precision)
    suffix = "" if precision == "fp32" else f".{precision}"
    assert [p.name for p in paths] == [f"encoder{suffix}.engine", f"head{suffix}.engine"]
    gpu = cuda.require_device(cuda.load_cuda())
    for path in paths:
        sidecar = read_sidecar(path)
        assert sidecar.artifact.kind == "engine" and sidecar.artifact.precision == precision
        record = EngineRecord.from_details(sidecar.artifact.details)
        assert record.tensorrt_version == trt.__version__
        assert (record.gpu_name, record.compute_capability) == (gpu.name, gpu.compute_capability)
        assert record.profile == PROFILE and record.network == "strongly-typed"
        onnx_name = record.onnx_file
        assert record.onnx_sha256 == read_sidecar(model_dir / onnx_name).artifact.sha256
    assert (model_dir / "timing.cache").stat().st_size > 0


def _ort_reference(model_dir: Path, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(model_dir / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_parity_with_onnxruntime_fp32(model_dir: Path, precision: str) -> None:
    from sgjnd.compare.tensors import compare_outputs, format_comparisons, tolerances_for
    from sgjnd.runtime.backends.registry import open_model

    engines(model_dir, precision)
    spec = read_sidecar(model_dir / "encoder.onnx").model
    rng = np.random.default_rng(0)
    failures = []
    with open_model("tensorrt", model_dir, precision=precision) as model:
        assert model.encoder.max_batch_size == PROFILE.max and model.encoder.preferred_batch_size == PROFILE.opt
        for n in BATCHES:
            patches = rng.standard_normal((n, 3, spec.patch_size, spec.patch_size)).astype(np.float32)
            ref_features = _ort_reference(model_dir, "encoder", {"patches": patches})
            got_features = model.encoder.infer({"patches": patches})
            head_feeds = {"f_ref": ref_features["features"], "f_dis": ref_features["features"][::-1].copy()}
            ref_head = _ort_reference(model_dir, "head", head_feeds)
            got_head = model.head.infer(head_feeds)
            for title, ref, got in (("encoder", ref_features, got_features), ("head", ref_head, got_head)):
                comparisons = compare_outputs(ref, got, tolerances_for(precision))
                if not all(c.passed for c in comparisons):
                    failures.append(format_comparisons(comparisons, title=f" {title} batch={n}"))
    assert not failures, "\n".join(failures)


def test_engine_of_another_tensorrt_version_is_refused(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from sgjnd.runtime.backends.registry import open_model

    engines(model_dir, "fp32")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("encoder.engine", "head.engine"):
        shutil.copy(model_dir / name, copy / name)
        data = json.loads(sidecar_path(model_dir / name).read_text())
        data["artifact"]["details"]["tensorrt_version"] = "9.0.1.4"
        sidecar_path(copy / name).write_text(json.dumps(data))
    with pytest.raises(SpecError) as info, open_model("tensorrt", copy):
        pass
    text = str(info.value)
    assert "built with TensorRT 9.0.1.4" in text and f"sgjnd build {copy} --precision fp32 --batch 1,4,16" in text


def test_inspect_reports_layer_precisions(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sgjnd.cli import main

    engines(model_dir, "fp32")
    assert main(["inspect", str(model_dir / "encoder.engine")]) == 0
    report = json.loads(capsys.readouterr().out)
    layers = report["layers"]
    assert layers["layers"], report
    assert "fp32" in layers["precision_counts"]
    assert "int8" not in layers["precision_counts"] and "fp16" not in layers["precision_counts"]


def test_build_cli_writes_both_engines(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from sgjnd.cli import main

    for name in ("encoder.onnx", "head.onnx"):
        shutil.copy(model_dir / name, tmp_path / name)
        shutil.copy(sidecar_path(model_dir / name), sidecar_path(tmp_path / name))
    code = main(["build", str(tmp_path), "--batch", "1,2,4", "--opt-level", "0", "--workspace", "1"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "encoder.engine"), str(tmp_path / "head.engine")]
