"""The OpenVINO backend through the backend contract on the tiny model: both graphs at any batch, parity with ONNX
Runtime FP32 within the per-precision tolerances, explicit compile properties, static batch, model cache, INT8 QDQ
graphs, and refusals (bad options, fp16 graphs, bf16 on a CPU without AVX-512-BF16/AMX, mismatching sidecars)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backend_contract import check_runs_both_graphs_at_any_batch, tiny_patches
from conftest import fake_cpu

ov = pytest.importorskip("openvino", reason="the openvino backend needs openvino: pip install 'sgjnd[openvino]'")
pytest.importorskip("onnxruntime", reason="the tiny model is exported and compared with ONNX Runtime")

from sgjnd.compare.tensors import compare_outputs, tolerances_for  # noqa: E402
from sgjnd.environment import cpu_info, openvino_cpu  # noqa: E402
from sgjnd.errors import BackendUnavailable, SpecError, UsageError  # noqa: E402
from sgjnd.runtime.backends import openvino_backend  # noqa: E402
from sgjnd.runtime.backends.openvino_backend import OpenVinoBackend, bf16_refusal, resolve_precision  # noqa: E402
from sgjnd.runtime.backends.registry import backend_class, open_model  # noqa: E402

EXPORT_HINT = "sgjnd export CHECKPOINT -o"
HAS_BF16 = not bf16_refusal(cpu_info()["flags"], openvino_cpu().get("capabilities"))


@pytest.fixture
def model_dir(tiny_onnx_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model directory."""
    return Path(shutil.copytree(tiny_onnx_dir, tmp_path / "model"))


def _load(model_dir: Path, **options: Any) -> None:
    """Open and load both graphs (where the hash and I/O checks run), then release them."""
    with open_model("openvino", model_dir, **options):
        pass


def _run(model_dir: Path, patches: np.ndarray, backend: str = "openvino", **options: Any) -> dict[str, np.ndarray]:
    with open_model(backend, model_dir, **options) as models:
        features = models.encoder.infer({"patches": patches})["features"]
        head = models.head.infer({"f_ref": features, "f_dis": features[::-1].copy()})
    return {"features": features, **head}


def test_registry_finds_the_backend() -> None:
    assert backend_class("openvino") is OpenVinoBackend


def test_runs_both_graphs_at_any_batch(tiny_onnx_dir: Path) -> None:
    check_runs_both_graphs_at_any_batch(open_model("openvino", tiny_onnx_dir, threads=1), "openvino CPU fp32")


def test_matches_onnxruntime_fp32_within_tolerance(tiny_onnx_dir: Path) -> None:
    patches = tiny_patches(8)
    reference = _run(tiny_onnx_dir, patches, "onnxruntime")
    ours = _run(tiny_onnx_dir, patches)
    results = compare_outputs(reference, ours, tolerances_for("fp32"))
    assert all(r.passed for r in results), [r.line() for r in results]


@pytest.mark.skipif(not HAS_BF16, reason="bf16 needs a CPU with AVX-512-BF16 or AMX")
def test_bf16_runs_the_fp32_graphs_within_the_bf16_tolerance(tiny_onnx_dir: Path) -> None:
    patches = tiny_patches(8)
    reference = _run(tiny_onnx_dir, patches, "onnxruntime")
    with open_model("openvino", tiny_onnx_dir, precision="bf16") as models:
        assert models.encoder.artifact.name == "encoder.onnx"
        assert models.encoder.description == "openvino CPU bf16 (fp32 graphs)"
        hint = models.encoder.compiled_model.get_property("INFERENCE_PRECISION_HINT")  # type: ignore[attr-defined]
        assert hint.get_type_name() == "bf16"
    ours = _run(tiny_onnx_dir, patches, precision="bf16")
    results = compare_outputs(reference, ours, tolerances_for("bf16"))
    assert all(r.passed for r in results), [r.line() for r in results]
    fp32 = compare_outputs(reference, ours, tolerances_for("fp32"))
    assert not all(r.passed for r in fp32)  # bf16 really ran: the fp32 tolerance is too tight for it


def test_compile_properties_are_explicit(tiny_onnx_dir: Path) -> None:
    with open_model("openvino", tiny_onnx_dir, threads=1) as models:
        compiled = models.encoder.compiled_model  # type: ignore[attr-defined]
        # f32 asked for explicitly: on AVX-512-BF16/AMX CPUs OpenVINO's own default would be bf16.
        assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        assert str(compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")


def test_static_batch_pads_smaller_batches(tiny_onnx_dir: Path) -> None:
    patches = tiny_patches(3)
    dynamic = _run(tiny_onnx_dir, patches)
    with open_model("openvino", tiny_onnx_dir, static_batch=4) as models:
        assert models.encoder.max_batch_size == 4 and models.encoder.preferred_batch_size == 4
        shape = models.encoder.compiled_model.inputs[0].get_partial_shape()  # type: ignore[attr-defined]
        assert shape.is_static and shape[0].get_length() == 4
        features = models.encoder.infer({"patches": patches})["features"]
        assert features.shape == (3, 128)
        np.testing.assert_allclose(features, dynamic["features"], rtol=1e-4, atol=1e-5)
        with pytest.raises(UsageError, match="exceeds the artifact's maximum batch 4"):
            models.encoder.infer({"patches": tiny_patches(5)})
    with pytest.raises(UsageError, match=r"static_batch 65 exceeds encoder\.onnx's maximum batch 64"):
        _run(tiny_onnx_dir, patches, static_batch=65)


def test_cache_dir_keeps_compiled_models(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "ov-cache"
    first = _run(tiny_onnx_dir, tiny_patches(2), cache_dir=cache)
    blobs = sorted(cache.glob("*.blob"))
    assert len(blobs) == 2  # encoder and head
    again = _run(tiny_onnx_dir, tiny_patches(2), cache_dir=cache)
    assert sorted(cache.glob("*.blob")) == blobs
    np.testing.assert_array_equal(first["features"], again["features"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threads": 0}, "threads must be a positive integer"),
        ({"threads": True}, "threads must be a positive integer"),
        ({"static_batch": 0}, "static_batch must be a positive integer"),
        ({"inference_precision": "fp16"}, "inference_precision must be one of fp32, bf16"),
        ({"precision": "fp16"}, "does not run fp16 graphs"),
        ({"precision": "fp8"}, "unknown precision 'fp8' for the openvino backend"),
        ({"precision": "bf16", "inference_precision": "fp32"}, "pass one of them"),
        ({"providers": ("cpu",)}, "providers"),
    ],
)
def test_bad_options_are_refused_with_the_fix(tiny_onnx_dir: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises((UsageError, TypeError), match=message):
        open_model("openvino", tiny_onnx_dir, **options)


def test_cache_dir_that_is_a_file_is_refused(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(UsageError, match="cache_dir must be a directory"):
        open_model("openvino", tiny_onnx_dir, cache_dir=path)


def test_precisions_map_onto_the_model_directory() -> None:
    assert resolve_precision("fp32", None) == ("fp32", "fp32")
    assert resolve_precision("bf16", None) == ("fp32", "bf16")
    assert resolve_precision("bf16", "bf16") == ("fp32", "bf16")
    assert resolve_precision("int8-ort", None) == ("int8-ort", "fp32")
    assert resolve_precision("int8", "bf16") == ("int8", "bf16")


def test_bf16_refusal_names_the_missing_flags() -> None:
    assert bf16_refusal(["avx2", "avx512_bf16"], ["FP32", "BF16", "INT8"]) == ""
    assert bf16_refusal(["amx_bf16"], None) == ""
    reason = bf16_refusal(["avx2", "avx512_vnni"], ["FP32", "INT8"], "Test CPU")
    assert "Test CPU" in reason and "avx512_bf16 and amx_bf16" in reason and "int8-ort" in reason
    reason = bf16_refusal(["avx512_bf16"], ["FP32", "INT8"])
    assert "without BF16" in reason


def test_bf16_is_refused_on_a_cpu_without_it(tiny_onnx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    fake_cpu(monkeypatch, {"model": "Test CPU", "flags": ["avx2", "fma"]})
    with pytest.raises(BackendUnavailable, match=r"bf16 inference needs a CPU with AVX-512-BF16 or AMX; Test CPU: "
                       r"it lacks avx512_bf16 and amx_bf16"):
        _run(tiny_onnx_dir, tiny_patches(1), precision="bf16")


# -- sidecar and graph checks (as the ONNX Runtime backend) ----------------------------------------------------


def _edit_sidecar(path: Path, **artifact: object) -> None:
    data = json.loads(path.read_text())
    data["artifact"].update(artifact)
    path.write_text(json.dumps(data))


def test_missing_graph_lists_the_precisions_present(model_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"no int8-ort encoder graph .*precisions present: fp32.*sgjnd calibrate"):
        open_model("openvino", model_dir, precision="int8-ort")


def test_edited_sha256_is_refused_at_load(model_dir: Path) -> None:
    _edit_sidecar(model_dir / "encoder.onnx.json", sha256="0" * 64)
    open_model("openvino", model_dir)  # reading sidecars is cheap; the hash is checked at load
    with pytest.raises(SpecError, match=rf"does not match its sidecar: sha256 .* records 000000000000.*{EXPORT_HINT}"):
        _load(model_dir)


def test_graph_swapped_for_another_is_refused(model_dir: Path) -> None:
    shutil.copyfile(model_dir / "head.onnx", model_dir / "encoder.onnx")
    head_sha = json.loads((model_dir / "head.onnx.json").read_text())["artifact"]["sha256"]
    _edit_sidecar(model_dir / "encoder.onnx.json", sha256=head_sha)
    with pytest.raises(SpecError, match=r"does not implement the encoder graph of its spec: inputs expected "
                       r"patches\['\?', 64, 64, 3\]:uint8, got f_ref\['\?', 128\]:float32"):
        _load(model_dir)


def test_sidecar_of_another_graph_kind_is_refused(model_dir: Path) -> None:
    _edit_sidecar(model_dir / "head.onnx.json", graph="encoder")
    with pytest.raises(SpecError, match="describes the encoder graph, but head was expected"):
        _load(model_dir)


# -- INT8 QDQ graphs -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_dir(tiny_onnx_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with both INT8 flavours, calibrated on a few patches of two photos (no report)."""
    from sgjnd.calibration.pipeline import CalibrateConfig, calibrate_model
    from sgjnd.calibration.reader import ReaderConfig

    root = tmp_path_factory.mktemp("ov_int8")
    model_dir = Path(shutil.copytree(tiny_onnx_dir, root / "model"))
    images = root / "images"
    images.mkdir()
    for photo in photos[:2]:
        shutil.copy(photo, images / photo.name)
    config = CalibrateConfig(precision="int8", target="all", reader=ReaderConfig(num_patches=32), report=False,
                             progress=False, use_cache=False)
    calibrate_model(model_dir, images=images, holdout=[], config=config)
    return model_dir


@pytest.mark.parametrize("precision", ["int8-ort", "int8"])
def test_int8_qdq_graphs_run_integer_kernels_close_to_fp32(int8_dir: Path, precision: str) -> None:
    patches = tiny_patches(8)
    reference = _run(int8_dir, patches, "onnxruntime")
    with open_model("openvino", int8_dir, precision=precision) as models:
        assert models.encoder.description == f"openvino CPU {precision}"
        runtime = models.encoder.compiled_model.get_runtime_model()  # type: ignore[attr-defined]
        kernels = {str(op.get_rt_info()["runtimePrecision"].astype(str)) for op in runtime.get_ops()
                   if str(op.get_rt_info()["layerType"].astype(str)) == "Convolution"}
        assert kernels & {"u8", "i8"}, kernels  # the QDQ pairs became integer convolutions
        features = models.encoder.infer({"patches": patches})["features"]
    results = compare_outputs({"features": reference["features"]}, {"features": features}, tolerances_for(precision))
    assert all(r.passed for r in results), [r.line() for r in results]


@pytest.mark.parametrize("precision", ["int8-ort", "int8"])
def test_int8_qdq_graphs_compute_what_onnx_runtime_computes_on_them(int8_dir: Path, precision: str) -> None:
    # The same QDQ graph on both runtimes: only rounding may differ. This caught OpenVINO 2026.4 computing the
    # encoder's F4 token mean wrongly behind a Transpose in these graphs (features cosine 0.5 on sgjnd_r50).
    patches = tiny_patches(8)
    reference = _run(int8_dir, patches, "onnxruntime", precision=precision)["features"].astype(np.float64)
    features = _run(int8_dir, patches, precision=precision)["features"].astype(np.float64)
    cosine = np.sum(reference * features, 1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(features, axis=1))
    assert cosine.min() > 0.999, cosine


def test_description_names_the_inference_precision_of_int8_graphs(int8_dir: Path) -> None:
    backend = openvino_backend.open_model(int8_dir, precision="int8-ort", inference_precision="bf16").encoder
    assert backend.description == "openvino CPU int8-ort + bf16"
