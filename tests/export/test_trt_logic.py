"""The TensorRT build logic that needs no GPU: options, profiles, compatibility decisions, rebuild commands, layer
summaries, the LEGACY calibration source and cache checks, the ORT TensorRT EP options, and the `sgjnd build` /
`sgjnd inspect` CLI on a machine without TensorRT."""

from __future__ import annotations

import ctypes
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sgjnd.cli import build_parser, main
from sgjnd.commands.build import config_from_args
from sgjnd.engine_spec import (
    BatchProfile,
    BuildConfig,
    EngineRecord,
    Platform,
    batch_shape,
    buffer_nbytes,
    check_compatibility,
    parse_compute_capability,
    parse_version,
    profile_shapes,
)
from sgjnd.errors import BackendUnavailable, BuildError, SpecError, UsageError
from sgjnd.export.trt import onnx_source, summarize_layers, tensor_precision
from sgjnd.export.trt_legacy import (
    CachePlan,
    SourceSummary,
    calibration_cache_path,
    calibration_key,
    calibration_key_parts,
    check_calibration_source,
    plan_calibration_cache,
    write_cache,
)
from sgjnd.fileio import sha256_bytes
from sgjnd.runtime import cuda
from sgjnd.runtime.backends.ort_trt import shapes_option, tensorrt_ep_options, tensorrt_ep_options_for
from sgjnd.runtime.backends.trt import require_tensorrt
from sgjnd.spec import ArtifactInfo, ModelSpec, Sidecar, TensorSpec, sidecar_path, write_sidecar

SPEC = ModelSpec(name="sgjnd_tiny", patch_size=32, feature_dim=64)


# -- batch profile ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("1,16,64", BatchProfile(1, 16, 64)), (" 2, 8 ,8", BatchProfile(2, 8, 8)), ("4", BatchProfile(4, 4, 4))],
)
def test_batch_profile_parses(text: str, expected: BatchProfile) -> None:
    assert BatchProfile.parse(text) == expected
    assert BatchProfile.parse(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("16,1,64", "min <= opt <= max"),
        ("1,64,16", "min <= opt <= max"),
        ("0,1,2", "at least 1"),
        ("1,2", "three integers"),
        ("a,b,c", "integers"),
        ("1.5,2,3", "integers"),
    ],
)
def test_batch_profile_rejects(text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        BatchProfile.parse(text)


def test_profile_shapes_cover_every_input_of_both_graphs() -> None:
    profile = BatchProfile(1, 8, 32)
    encoder = profile_shapes(profile, SPEC.encoder_graph().inputs)
    assert encoder == {"patches": ((1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))}
    head = profile_shapes(profile, SPEC.head_graph().inputs)
    assert head == {"f_ref": ((1, 64), (8, 64), (32, 64)), "f_dis": ((1, 64), (8, 64), (32, 64))}


def test_batch_shape_refuses_a_second_dynamic_axis() -> None:
    with pytest.raises(SpecError, match="only the batch axis"):
        batch_shape(TensorSpec("x", ("batch", 3, "height", 32)), 4)


def test_buffer_sizes_are_computed_for_the_profile_max() -> None:
    assert buffer_nbytes(SPEC.encoder_graph().inputs[0], 64, 4) == 64 * 3 * 32 * 32 * 4
    assert buffer_nbytes(SPEC.head_graph().outputs[0], 64, 4) == 64 * 4
    assert buffer_nbytes(SPEC.encoder_graph().outputs[0], 16, 2) == 16 * 64 * 2


# -- build options ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"precision": "int4"}, "--precision"),
        ({"precision": "int8-ort"}, "--precision"),
        ({"workspace_gib": 0}, "--workspace"),
        ({"workspace_gib": -1.0}, "--workspace"),
        ({"workspace_gib": float("nan")}, "--workspace"),
        ({"opt_level": 6}, "--opt-level"),
        ({"opt_level": -1}, "--opt-level"),
        ({"hardware_compatibility": "turing+"}, "--hardware-compatibility"),
        ({"batch": BatchProfile(8, 4, 16)}, "min <= opt <= max"),
        ({"legacy_precision_flags": True}, "fp16 or int8"),
    ],
)
def test_build_config_rejects_bad_options(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        BuildConfig(**changes).validate()  # type: ignore[arg-type]


def test_build_config_rejects_a_directory_as_timing_cache(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--timing-cache"):
        BuildConfig(timing_cache=tmp_path).validate()


def test_build_config_record_round_trips() -> None:
    config = BuildConfig(
        precision="int8",
        batch=BatchProfile(2, 8, 16),
        workspace_gib=1.5,
        opt_level=5,
        timing_cache=Path("/tmp/t.cache"),
        version_compatible=True,
        hardware_compatibility="same-cc",
        legacy_precision_flags=True,
        tf32=True,
    )
    record = json.loads(json.dumps(config.to_record()))
    assert BuildConfig.from_record(record) == config


@pytest.mark.parametrize(
    "config",
    [
        BuildConfig(),
        BuildConfig(precision="fp16", batch=BatchProfile(4, 4, 4), workspace_gib=0.5, opt_level=0),
        BuildConfig(
            precision="int8",
            batch=BatchProfile(1, 32, 128),
            timing_cache=Path("caches/my timing.cache"),
            version_compatible=True,
            hardware_compatibility="ampere+",
            legacy_precision_flags=True,
            tf32=True,
        ),
    ],
)
def test_rebuild_command_reproduces_the_build_options(config: BuildConfig) -> None:
    command = config.command(Path("models/my model"))
    assert command.startswith("sgjnd build 'models/my model' --precision ")
    import shlex

    argv = shlex.split(command)[1:]
    args = build_parser().parse_args(argv)
    assert args.model_dir == Path("models/my model")
    assert config_from_args(args) == config


def test_rebuild_command_text() -> None:
    config = BuildConfig(precision="fp16", batch=BatchProfile(1, 16, 64), hardware_compatibility="same-cc")
    assert config.command("m") == (
        "sgjnd build m --precision fp16 --batch 1,16,64 --workspace 4 --opt-level 3 --hardware-compatibility same-cc"
    )


def test_onnx_source_is_the_precision_prepared_graph_except_for_legacy() -> None:
    d = Path("m")
    assert onnx_source(d, "encoder", BuildConfig()) == d / "encoder.onnx"
    assert onnx_source(d, "encoder", BuildConfig(precision="fp16")) == d / "encoder.fp16.onnx"
    assert onnx_source(d, "head", BuildConfig(precision="int8")) == d / "head.int8.onnx"
    legacy = BuildConfig(precision="int8", legacy_precision_flags=True)
    assert onnx_source(d, "encoder", legacy) == d / "encoder.onnx"


# -- compatibility decisions -------------------------------------------------------------------------------------------
def record(**changes: object) -> EngineRecord:
    build = changes.pop("build", BuildConfig(precision="fp16"))
    base: dict[str, object] = {
        "tensorrt_version": "10.13.0.35",
        "gpu_name": "NVIDIA A10",
        "compute_capability": "8.6",
        "build": build,
    }
    base.update(changes)
    return EngineRecord(**base)  # type: ignore[arg-type]


HERE = Platform("10.13.0.35", "NVIDIA A10", "8.6")


def test_the_building_machine_runs_its_engine() -> None:
    verdict = check_compatibility(record(), HERE)
    assert verdict.ok and not verdict.warnings


@pytest.mark.parametrize("running", ["10.13.1.2", "10.12.0.36", "11.0.0.114"])
def test_another_tensorrt_release_is_refused(running: str) -> None:
    verdict = check_compatibility(record(), Platform(running, "NVIDIA A10", "8.6"))
    assert not verdict.ok
    assert "10.13.0.35" in verdict.problems[0] and running in verdict.problems[0]


def test_another_build_number_of_the_same_release_is_accepted() -> None:
    assert check_compatibility(record(), Platform("10.13.0.99", "NVIDIA A10", "8.6")).ok


@pytest.mark.parametrize(("running", "ok"), [("10.13.0.35", True), ("10.14.1.0", True), ("10.12.0.0", False),
                                             ("11.0.0.114", False)])
def test_version_compatible_engines_run_on_later_releases_of_the_same_major(running: str, ok: bool) -> None:
    rec = record(build=BuildConfig(precision="fp16", version_compatible=True))
    assert check_compatibility(rec, Platform(running, "NVIDIA A10", "8.6")).ok is ok


def test_another_compute_capability_is_refused() -> None:
    verdict = check_compatibility(record(), Platform("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0"))
    assert not verdict.ok
    assert "8.6" in verdict.problems[0] and "9.0" in verdict.problems[0]


def test_another_gpu_model_of_the_same_capability_is_refused_unless_allowed() -> None:
    other = Platform("10.13.0.35", "NVIDIA GeForce RTX 3090", "8.6")
    refused = check_compatibility(record(), other)
    assert not refused.ok and "allow_other_gpu_model" in refused.problems[0]
    allowed = check_compatibility(record(), other, allow_other_gpu_model=True)
    assert allowed.ok and allowed.warnings
    same_cc = check_compatibility(record(build=BuildConfig(hardware_compatibility="same-cc")), other)
    assert same_cc.ok and not same_cc.warnings


@pytest.mark.parametrize(("cc", "ok"), [("8.0", True), ("9.0", True), ("12.0", True), ("7.5", False)])
def test_ampere_plus_engines_need_compute_capability_8(cc: str, ok: bool) -> None:
    rec = record(build=BuildConfig(hardware_compatibility="ampere+"))
    assert check_compatibility(rec, Platform("10.13.0.35", "Some GPU", cc)).ok is ok


def test_both_problems_are_reported() -> None:
    verdict = check_compatibility(record(), Platform("10.14.1.0", "NVIDIA H100", "9.0"))
    assert len(verdict.problems) == 2


def test_version_and_capability_parsing() -> None:
    assert parse_version("10.13.0.35") == (10, 13, 0, 35)
    assert parse_version("10.3.0.post1") == (10, 3, 0)
    assert parse_compute_capability("8.6") == (8, 6)
    with pytest.raises(SpecError):
        parse_version("unknown")
    with pytest.raises(SpecError):
        parse_compute_capability("sm_86")


def test_engine_record_round_trips_and_requires_its_fields() -> None:
    rec = record(calibration_sha256="ab" * 32, notes=("a note",), versions={"cuda_runtime": "12.9"})
    details = json.loads(json.dumps(rec.to_details()))
    assert EngineRecord.from_details(details) == rec
    del details["gpu_name"]
    with pytest.raises(SpecError, match="gpu_name"):
        EngineRecord.from_details(details)


# -- inspector JSON ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "precision"),
    [
        ("Row major linear FP16 format", "fp16"),
        ("Thirty-two wide channel vectorized row major Int8 format.", "int8"),
        ("Row major linear FP32", "fp32"),
        ("Float", "fp32"),
        ("Half", "fp16"),
        ("Row major linear UInt8 format", "uint8"),
        ("Row major linear BF16 format", "bf16"),
        ("N/A due to dynamic shapes", "unknown"),
    ],
)
def test_tensor_precision_reads_inspector_formats(text: str, precision: str) -> None:
    assert tensor_precision(text) == precision


def test_summarize_layers_counts_precisions() -> None:
    info = {
        "Layers": [
            {"Name": "conv1", "LayerType": "CaskConvolution",
             "Inputs": [{"Format/Datatype": "Row major linear FP32"}],
             "Outputs": [{"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}]},
            {"Name": "ln", "LayerType": "Normalization", "Inputs": [{"Format/Datatype": "Half"}],
             "Outputs": [{"Format/Datatype": "Float"}]},
            {"Name": "shape", "LayerType": "NoOp", "Inputs": [], "Outputs": []},
            "named-only-layer",
        ],
        "I/O Tensors": ["patches", "features"],
    }
    summary = summarize_layers(info)
    assert [r["precision"] for r in summary["layers"]] == ["int8", "fp32", "unknown", "unknown"]
    assert summary["precision_counts"] == {"int8": 1, "fp32": 1, "unknown": 2}
    assert summary["io_tensors"] == ["patches", "features"]
    assert summarize_layers({"Layers": [], "Bindings": ["x"]})["io_tensors"] == ["x"]


# TensorRT 10.x layout: per-tensor "Format/Datatype" text, "Bindings" a list of names (layer from the TensorRT
# developer guide's kDETAILED example; Bindings from NVIDIA's IEngineInspector 10.x -> 11.x migration page).
TRT10_INFO = {
    "Layers": [
        {
            "Name": "node_of_gpu_0/res4_0_branch2a_1 + node_of_gpu_0/res4_0_branch2a_bn_1",
            "LayerType": "CaskConvolution",
            "Inputs": [{"Name": "gpu_0/res3_3_branch2c_bn_3", "Dimensions": [16, 512, 28, 28],
                        "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
            "Outputs": [{"Name": "gpu_0/res4_0_branch2a_bn_2", "Dimensions": [16, 256, 28, 28],
                         "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
            "ParameterType": "Convolution",
            "TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32kcrs_vect_c_32",
        },
        {
            "Name": "/ln/LayerNormalization",
            "LayerType": "Normalization",
            "Inputs": [{"Name": "x", "Location": "Device", "Dimensions": [16, 197, 768],
                        "Format/Datatype": "Row major linear FP32 format"}],
            "Outputs": [{"Name": "y", "Location": "Device", "Dimensions": [16, 197, 768],
                         "Format/Datatype": "Row major linear FP16 format"}],
        },
    ],
    "Bindings": ["input_0", "output_0"],
}

# TensorRT 11.x layout: the tensor text split into "Datatype" and "Format" (as NVIDIA's Polygraphy reads it), and
# "I/O Tensors" objects (verbatim shape of the example on NVIDIA's IEngineInspector migration page).
TRT11_INFO = {
    "Layers": [
        {
            "Name": "/attn/MatMul",
            "LayerType": "gemm",
            "Inputs": [{"Name": "q", "Location": "Device", "Dimensions": [16, 12, 197, 64],
                        "Format": "Row major linear format (kLINEAR)", "Datatype": "Float"}],
            "Outputs": [{"Name": "scores", "Location": "Device", "Dimensions": [16, 12, 197, 197],
                         "Format": "Row major linear format (kLINEAR)", "Datatype": "Float"}],
            "TacticName": "sm90_xmma_gemm_f32f32_tf32f32_f32_nn_n",
        },
        {
            "Name": "/mlp/fc1/MatMul",
            "LayerType": "gemm",
            "Inputs": [{"Name": "h", "Location": "Device", "Dimensions": [16, 197, 768],
                        "Format": "Row major linear format (kLINEAR)", "Datatype": "Half"}],
            "Outputs": [{"Name": "h1", "Location": "Device", "Dimensions": [16, 197, 3072],
                         "Format": "Row major linear format (kLINEAR)", "Datatype": "Half"}],
        },
        {
            "Name": "/conv/Conv",
            "LayerType": "CaskConvolution",
            "Inputs": [{"Name": "xq", "Dimensions": [16, 64, 28, 28], "DataType": "Int8",
                        "Format": "Thirty-two wide channel vectorized row major format (kCHW32)"}],
            "Outputs": [{"Name": "yq", "Dimensions": [16, 64, 28, 28], "DataType": "Int8",
                         "Format": "Thirty-two wide channel vectorized row major format (kCHW32)"}],
        },
    ],
    "I/O Tensors": [
        {
            "Name": "input_0", "IOMode": "Input", "DataType": "Float", "Dimensions": [1, 3, 224, 224],
            "Location": "Device", "IsShapeInferenceIO": False,
            "ProfileInfo": [{"MinShape": [1, 3, 224, 224], "OptShape": [1, 3, 224, 224],
                             "MaxShape": [1, 3, 224, 224], "Format": "Row major linear FP32 format (kLINEAR)"}],
        },
        {
            "Name": "output_0", "IOMode": "Output", "DataType": "Float", "Dimensions": [1, 1000],
            "Location": "Device", "IsShapeInferenceIO": False,
        },
    ],
}


def test_summarize_layers_reads_the_tensorrt_10_layout() -> None:
    summary = summarize_layers(TRT10_INFO)
    assert [r["precision"] for r in summary["layers"]] == ["int8", "fp16"]
    assert summary["layers"][1]["inputs"] == ["fp32"] and summary["layers"][1]["outputs"] == ["fp16"]
    assert summary["layers"][0]["tactic"].startswith("sm80_xmma")
    assert summary["io_tensors"] == ["input_0", "output_0"]
    assert summary["io_precisions"] == {"input_0": "unknown", "output_0": "unknown"}  # Bindings carry no type


def test_summarize_layers_reads_the_tensorrt_11_layout() -> None:
    summary = summarize_layers(TRT11_INFO)
    # Before TensorRT 11 support every layer read as "unknown" (no "Format/Datatype" field any more).
    assert [r["precision"] for r in summary["layers"]] == ["fp32", "fp16", "int8"]
    assert summary["precision_counts"] == {"fp32": 1, "fp16": 1, "int8": 1}
    assert summary["layers"][0]["inputs"] == ["fp32"] and summary["layers"][0]["name"] == "/attn/MatMul"
    # I/O Tensors are objects now: names and types come out, not the raw objects.
    assert summary["io_tensors"] == ["input_0", "output_0"]
    assert summary["io_precisions"] == {"input_0": "fp32", "output_0": "fp32"}
    json.dumps(summary)  # still plain JSON for `sgjnd inspect`


@pytest.mark.parametrize(
    ("text", "precision"),
    [
        ("Half", "fp16"),
        ("Float", "fp32"),
        ("BFloat16", "bf16"),  # not fp32, though it contains "float"
        ("Float8E4M3", "fp8"),
        ("FP8", "fp8"),
        ("Int4", "int4"),
        ("Row major linear format (kLINEAR)", "unknown"),  # a TensorRT 11 format text without a type
    ],
)
def test_tensor_precision_reads_tensorrt_11_data_types(text: str, precision: str) -> None:
    assert tensor_precision(text) == precision


# -- LEGACY calibration: source and cache ------------------------------------------------------------------------------
class Batches:
    def __init__(self, arrays: list[np.ndarray], fingerprint: str | None = None) -> None:
        self.arrays = arrays
        if fingerprint:
            self.fingerprint = fingerprint

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter([{"patches": a} for a in self.arrays])


def patches(n: int, s: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, s, s)).astype(np.float32)


def test_calibration_source_summary_and_fingerprint() -> None:
    summary = check_calibration_source(Batches([patches(4), patches(4, seed=1)]), SPEC)
    assert (summary.batch_size, summary.batches) == (4, 2)
    again = check_calibration_source(Batches([patches(4), patches(4, seed=1)]), SPEC)
    assert again.fingerprint == summary.fingerprint
    other = check_calibration_source(Batches([patches(4), patches(4, seed=2)]), SPEC)
    assert other.fingerprint != summary.fingerprint
    named = check_calibration_source(Batches([patches(4)], fingerprint="set-v1"), SPEC)
    assert named.fingerprint == "set-v1"


def test_an_empty_calibration_source_fails_with_numbered_causes() -> None:
    with pytest.raises(BuildError) as info:
        check_calibration_source(Batches([]), SPEC)
    text = str(info.value)
    assert "(1)" in text and "(2)" in text and "generators cannot be rewound" in text


def test_a_generator_is_refused_before_any_work() -> None:
    generator = ({"patches": a} for a in [patches(2)])
    with pytest.raises(UsageError, match="re-iterable"):
        check_calibration_source(generator, SPEC)


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ([patches(2).astype(np.float64)], "float32"),
        ([patches(2, s=16)], "float32 \\(B, 3, 32, 32\\)"),
        ([patches(4), patches(3)], "same batch size"),
    ],
)
def test_bad_calibration_batches_are_named(arrays: list[np.ndarray], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        check_calibration_source(Batches(arrays), SPEC)


def test_uint8_graphs_calibrate_on_pixels() -> None:
    """The legacy calibrator feeds what the encoder graph takes: uint8 (B, s, s, 3) pixels for a uint8 graph."""
    spec = SPEC.with_encoder_input("uint8")
    pixels = [{"patches": np.random.default_rng(i).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)} for i in (0, 1)]
    assert check_calibration_source(pixels, spec).batches == 2
    with pytest.raises(UsageError, match=r"must be uint8 \(B, 32, 32, 3\), got float32"):
        check_calibration_source(Batches([patches(4)]), spec)


def test_a_batch_without_patches_is_named() -> None:
    with pytest.raises(UsageError, match="'patches'"):
        check_calibration_source([{"images": patches(2)}], SPEC)


def test_calibration_key_changes_with_every_part() -> None:
    base = calibration_key_parts("a" * 64, SPEC, "10.13.0.35")
    key = calibration_key(base, "set-1")
    assert calibration_key(base, "set-2") != key
    assert calibration_key(calibration_key_parts("b" * 64, SPEC, "10.13.0.35"), "set-1") != key
    assert calibration_key(calibration_key_parts("a" * 64, SPEC, "10.14.0.1"), "set-1") != key
    other_spec = ModelSpec(name="sgjnd_tiny", patch_size=32, feature_dim=64, std=(0.2, 0.2, 0.2))
    assert calibration_key(calibration_key_parts("a" * 64, other_spec, "10.13.0.35"), "set-1") != key


def test_calibration_cache_is_reused_only_when_its_key_matches(tmp_path: Path) -> None:
    cache = calibration_cache_path(tmp_path, "encoder")
    parts = calibration_key_parts("a" * 64, SPEC, "10.13.0.35")
    summary = SourceSummary(4, 2, "set-1")
    first = plan_calibration_cache(cache, parts, summary)
    assert not first.reuse
    write_cache(first, b"TRT-100x-EntropyCalibration2\n", summary.fingerprint)
    assert plan_calibration_cache(cache, parts, summary).reuse
    assert not plan_calibration_cache(cache, parts, SourceSummary(4, 2, "set-2")).reuse
    # Without a source: reused when all but the set matches, refused otherwise.
    assert plan_calibration_cache(cache, parts, None).reuse
    stale = calibration_key_parts("a" * 64, SPEC, "10.14.0.1")
    with pytest.raises(BuildError, match="another ONNX, preprocessing or TensorRT"):
        plan_calibration_cache(cache, stale, None)


def test_no_source_and_no_cache_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="sgjnd calibrate"):
        plan_calibration_cache(calibration_cache_path(tmp_path, "encoder"), {"x": 1}, None)
    assert isinstance(CachePlan(tmp_path, "k", {}, False), CachePlan)


# -- ONNX Runtime TensorRT EP options ----------------------------------------------------------------------------------
def test_tensorrt_ep_options_for_the_head(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    options = tensorrt_ep_options(cache, BatchProfile(1, 16, 64), SPEC.head_graph().inputs)
    assert cache.is_dir()
    assert options["trt_engine_cache_enable"] == "True" and options["trt_timing_cache_enable"] == "True"
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(cache)
    assert options["trt_profile_min_shapes"] == "f_ref:1x64,f_dis:1x64"
    assert options["trt_profile_opt_shapes"] == "f_ref:16x64,f_dis:16x64"
    assert options["trt_profile_max_shapes"] == "f_ref:64x64,f_dis:64x64"
    assert options["trt_fp16_enable"] == "False" and options["trt_int8_enable"] == "False"
    assert all(isinstance(v, str) for v in options.values())


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_ep_options_leave_precision_to_the_graph(tmp_path: Path, precision: str) -> None:
    # trt_fp16_enable / trt_int8_enable make ORT build a weakly typed network, where TensorRT may run the FP32
    # islands of the mixed-precision graph (LayerNorm, Softmax, attention MatMuls) in FP16: both stay off, so the
    # EP builds the graph strongly typed, in the precision the file carries.
    options = tensorrt_ep_options(tmp_path, BatchProfile(), SPEC.encoder_graph().inputs, precision=precision)
    assert options["trt_fp16_enable"] == "False" and options["trt_int8_enable"] == "False"
    assert "trt_layer_norm_fp32_fallback" not in options  # acts only with trt_fp16_enable
    assert "trt_bf16_enable" not in options


def test_tensorrt_ep_options_precisions(tmp_path: Path) -> None:
    inputs = SPEC.encoder_graph().inputs
    assert shapes_option({"patches": (2, 3, 32, 32)}) == "patches:2x3x32x32"
    with pytest.raises(UsageError):
        tensorrt_ep_options(tmp_path, BatchProfile(4, 2, 8), inputs)
    with pytest.raises(UsageError):
        tensorrt_ep_options(tmp_path, BatchProfile(), inputs, precision="int8-ort")


def test_tensorrt_ep_options_for_an_onnx_sidecar(tmp_path: Path) -> None:
    info = ArtifactInfo(kind="onnx", file="encoder.int8.onnx", sha256="c" * 64, graph="encoder", precision="int8",
                        details={"max_batch": 32})
    options = tensorrt_ep_options_for(tmp_path / "encoder.int8.onnx", Sidecar(SPEC, info), cache_root=tmp_path)
    assert options["trt_profile_max_shapes"] == "patches:32x3x32x32"
    assert options["trt_profile_opt_shapes"] == "patches:16x3x32x32"
    # The folder names the build mode: engines cached by the old weakly typed options are never reused.
    assert options["trt_engine_cache_path"] == str(tmp_path / ("c" * 16 + "-strongly-typed"))
    assert options["trt_int8_enable"] == "False" and options["trt_fp16_enable"] == "False"
    fp16 = Sidecar(SPEC, ArtifactInfo(kind="onnx", file="encoder.fp16.onnx", sha256="d" * 64, graph="encoder",
                                      precision="fp16"))
    assert tensorrt_ep_options_for(tmp_path / "encoder.fp16.onnx", fp16, cache_root=tmp_path)["trt_fp16_enable"] \
        == "False"
    ort_flavour = Sidecar(SPEC, ArtifactInfo(kind="onnx", file="e.onnx", sha256="c" * 64, graph="encoder",
                                             precision="int8-ort"))
    with pytest.raises(UsageError, match="symmetric int8"):
        tensorrt_ep_options_for(tmp_path / "e.onnx", ort_flavour, cache_root=tmp_path)


# -- no TensorRT on this machine ---------------------------------------------------------------------------------------
@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import tensorrt` fail even where TensorRT is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def stub_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """An importable `tensorrt` without a Builder, as `pip install tensorrt-stubs --no-deps` leaves."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.usefixtures("no_tensorrt")
def test_require_tensorrt_says_how_to_install() -> None:
    with pytest.raises(BackendUnavailable, match=r"pip install 'sgjnd\[trt\]'"):
        require_tensorrt()


@pytest.mark.usefixtures("stub_tensorrt")
def test_a_stub_tensorrt_package_counts_as_missing() -> None:
    with pytest.raises(BackendUnavailable, match="not a working TensorRT"):
        require_tensorrt()


@pytest.mark.parametrize("fixture", ["no_tensorrt", "stub_tensorrt"])
def test_build_without_tensorrt_prints_one_line(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request.getfixturevalue(fixture)
    code = main(["build", str(tmp_path), "--precision", "fp16"])
    out, err = capsys.readouterr()
    assert code == BackendUnavailable.exit_code
    line = one_line(err)
    assert line.startswith("sgjnd build: error:")
    assert "pip install 'sgjnd[trt]'" in line and "pip install tensorrt" in line
    assert out == ""


@pytest.mark.usefixtures("no_tensorrt")
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--batch", "8,4,16"], "min <= opt <= max"),
        (["--batch", "1,x,4"], "MIN,OPT,MAX"),
        (["--workspace", "0"], "--workspace"),
        (["--opt-level", "9"], "--opt-level"),
        (["--legacy-precision-flags"], "fp16 or int8"),
    ],
)
def test_build_validates_options_before_anything_else(
    argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["build", str(tmp_path), *argv])
    assert code == UsageError.exit_code
    assert fragment in one_line(capsys.readouterr().err)


@pytest.mark.usefixtures("no_tensorrt")
def test_inspect_prints_the_sidecar_without_tensorrt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "encoder.engine"
    engine.write_bytes(b"not really an engine")
    details = record().to_details()
    info = ArtifactInfo(kind="engine", file=engine.name, sha256=sha256_bytes(engine.read_bytes()), graph="encoder",
                        precision="fp16", details=details)
    write_sidecar(engine, Sidecar(SPEC, info))
    assert main(["inspect", str(engine)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sidecar"]["artifact"]["details"]["tensorrt_version"] == "10.13.0.35"
    assert report["layers"] is None and "pip install" in report["layers_unavailable"]


def test_inspect_refuses_a_changed_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "encoder.engine"
    engine.write_bytes(b"v1")
    info = ArtifactInfo(kind="engine", file=engine.name, sha256=sha256_bytes(b"v1"), graph="encoder")
    write_sidecar(engine, Sidecar(SPEC, info))
    engine.write_bytes(b"v2")
    assert main(["inspect", str(engine)]) == SpecError.exit_code
    assert "does not match its sidecar" in one_line(capsys.readouterr().err)


# -- engine_from_onnx on a fake TensorRT -------------------------------------------------------------------------------
# The builder calls below only exist on a GPU machine; a fake `tensorrt` module that records what the build asked
# for checks the logic around them: flags, profiles, timing cache, parser errors, LEGACY calibration, the sidecar.

class FakeDims(tuple):  # type: ignore[type-arg]
    def __new__(cls, shape: object = ()) -> FakeDims:
        return super().__new__(cls, (int(d) for d in shape))  # type: ignore[attr-defined]


class Flag:
    def __init__(self, name: str, value: int = 0) -> None:
        self.name, self.value = name, value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return self.name


class FakeTimingCache:
    def __init__(self, data: bytes) -> None:
        self.entries = set(data.decode().split(",")) - {""}

    def combine(self, other: FakeTimingCache, ignore_mismatch: bool) -> bool:
        self.entries |= other.entries
        return True

    def serialize(self) -> bytes:
        return ",".join(sorted(self.entries)).encode()


class FakeProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[FakeDims, FakeDims, FakeDims]] = {}

    def set_shape(self, name: str, lo: FakeDims, opt: FakeDims, hi: FakeDims) -> None:
        self.shapes[name] = (lo, opt, hi)


class FakeConfig:
    def __init__(self) -> None:
        self.flags: set[str] = {"TF32"}  # TensorRT's default
        self.pools: dict[str, int] = {}
        self.profiles: list[FakeProfile] = []
        self.calibration_profile: FakeProfile | None = None
        self.int8_calibrator: object = None
        self.timing_cache: FakeTimingCache | None = None
        self.builder_optimization_level = 3
        self.profiling_verbosity: object = None
        self.hardware_compatibility_level: object = None

    def set_memory_pool_limit(self, pool: Flag, size: int) -> None:
        self.pools[pool.name] = size

    def set_flag(self, flag: Flag) -> None:
        self.flags.add(flag.name)

    def clear_flag(self, flag: Flag) -> None:
        self.flags.discard(flag.name)

    def add_optimization_profile(self, profile: FakeProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: FakeProfile) -> bool:
        self.calibration_profile = profile
        return True

    def create_timing_cache(self, data: bytes) -> FakeTimingCache:
        return FakeTimingCache(bytes(data))

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> FakeTimingCache:
        assert self.timing_cache is not None
        return self.timing_cache


class FakeTensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: str = "float32") -> None:
        self.name, self.shape = name, FakeDims(shape)
        self.dtype = types.SimpleNamespace(name={"float32": "FLOAT", "uint8": "UINT8"}[dtype])


class FakeNetwork:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[FakeTensor] = []
        self.outputs: list[FakeTensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, i: int) -> FakeTensor:
        return self.inputs[i]

    def get_output(self, i: int) -> FakeTensor:
        return self.outputs[i]


class FakeParser:
    def __init__(self, network: FakeNetwork, logger: object) -> None:
        self.network = network
        self.errors: list[str] = []

    def parse_from_file(self, path: str) -> bool:
        if "broken" in Path(path).read_text():
            self.errors = ["node 3 (Conv): unsupported", "node 9 (Foo): no importer"]
            return False
        graph = SPEC.graph(json.loads(Path(path).read_text())["graph"])
        self.network.inputs = [FakeTensor(t.name, batch_shape(t, -1), t.dtype) for t in graph.inputs]
        self.network.outputs = [FakeTensor(t.name, batch_shape(t, -1)) for t in graph.outputs]
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> str:
        return self.errors[i]


BUILDS: list[tuple[FakeNetwork, FakeConfig]] = []


class FakeBuilder:
    def __init__(self, logger: object) -> None:
        self.logger = logger

    def create_network(self, flags: int) -> FakeNetwork:
        return FakeNetwork(flags)

    def create_builder_config(self) -> FakeConfig:
        return FakeConfig()

    def create_optimization_profile(self) -> FakeProfile:
        return FakeProfile()

    def build_serialized_network(self, network: FakeNetwork, config: FakeConfig) -> bytes:
        BUILDS.append((network, config))
        calibrator = config.int8_calibrator
        # TensorRT's calibration protocol: use the cache, or read batches until an empty list, then write a cache
        if calibrator is not None and not calibrator.read_calibration_cache():  # type: ignore[attr-defined]
            while calibrator.get_batch(["patches"]):  # type: ignore[attr-defined]
                pass
            calibrator.write_calibration_cache(b"TRT-1013-EntropyCalibration2")  # type: ignore[attr-defined]
        assert config.timing_cache is not None
        config.timing_cache.entries.add(f"tactic-{len(BUILDS)}")
        return f"engine flags={network.flags} {sorted(config.flags)}".encode()


class FakeEntropyCalibrator:
    def __init__(self) -> None:
        pass


def fake_tensorrt(version: str = "10.13.0.35") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    names = ["FP16", "INT8", "TF32", "VERSION_COMPATIBLE"]
    trt.__dict__.update(
        __version__=version,
        Builder=FakeBuilder,
        OnnxParser=FakeParser,
        Dims=FakeDims,
        ILogger=type("ILogger", (), {"__init__": lambda self: None, "Severity": object}),
        IInt8EntropyCalibrator2=FakeEntropyCalibrator,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=Flag("STRONGLY_TYPED", 1)),
        BuilderFlag=types.SimpleNamespace(**{n: Flag(n) for n in names}),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=Flag("WORKSPACE")),
        ProfilingVerbosity=types.SimpleNamespace(DETAILED=Flag("DETAILED")),
        HardwareCompatibilityLevel=types.SimpleNamespace(
            AMPERE_PLUS=Flag("AMPERE_PLUS"), SAME_COMPUTE_CAPABILITY=Flag("SAME_COMPUTE_CAPABILITY")
        ),
        get_nv_onnx_parser_version=lambda: 200,  # NV_ONNX_PARSER_VERSION of TensorRT 10.x and TensorRT-RTX 1.7
    )
    return trt


class HostAsDeviceCuda(cuda.CudaApi):
    """Device memory is host memory; enough for the calibrator's copies."""

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.copies = 0

    def device_count(self) -> int:
        return 1

    def device_info(self, index: int) -> cuda.DeviceInfo:
        return cuda.DeviceInfo(0, "Fake GPU", 8, 6, 1 << 30)

    def set_device(self, index: int) -> None:
        pass

    def malloc(self, nbytes: int) -> int:
        array = np.zeros(nbytes, np.uint8)
        self.memory[array.ctypes.data] = array
        return int(array.ctypes.data)

    def free(self, ptr: int) -> None:
        del self.memory[ptr]

    def malloc_host(self, nbytes: int) -> np.ndarray:
        return np.zeros(nbytes, np.uint8)

    def free_host(self, array: np.ndarray) -> None:
        pass

    def stream_create(self) -> int:
        return 1

    def stream_destroy(self, stream: int) -> None:
        pass

    def stream_synchronize(self, stream: int) -> None:
        pass

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        self.memcpy_htod(dst, src)

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        ctypes.memmove(dst.ctypes.data, src, dst.nbytes)

    def memcpy_htod(self, dst: int, src: np.ndarray) -> None:
        assert any(base <= dst and dst + src.nbytes <= base + a.nbytes for base, a in self.memory.items())
        ctypes.memmove(dst, src.ctypes.data, src.nbytes)
        self.copies += 1

    def versions(self) -> dict[str, str]:
        return {"cuda_runtime": "12.9", "cuda_driver": "12.9", "cuda-python": "12.9.0"}


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HostAsDeviceCuda:
    """A model directory with fp32/fp16/int8 'ONNX' files and sidecars, a fake TensorRT and a fake GPU."""
    api = HostAsDeviceCuda()
    BUILDS.clear()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    monkeypatch.setattr(cuda, "load_cuda", lambda allocator="auto": api)
    for precision in ("fp32", "fp16", "int8"):
        for graph in ("encoder", "head"):
            name = f"{graph}.onnx" if precision == "fp32" else f"{graph}.{precision}.onnx"
            data = json.dumps({"graph": graph, "precision": precision}).encode()
            (tmp_path / name).write_bytes(data)
            details = {"calibration_sha256": "cal" * 8} if precision == "int8" else {}
            info = ArtifactInfo(kind="onnx", file=name, sha256=sha256_bytes(data), graph=graph, precision=precision,
                                checkpoint_sha256="ck" * 32, weights="UNTRAINED", details=details)
            write_sidecar(tmp_path / name, Sidecar(SPEC, info))
    return api


def test_strongly_typed_build_of_both_graphs(fake_build: HostAsDeviceCuda, tmp_path: Path) -> None:
    from sgjnd.export.trt import engines_from_model_dir
    from sgjnd.spec import read_sidecar

    cache = tmp_path / "caches" / "timing.cache"
    config = BuildConfig(precision="int8", batch=BatchProfile(2, 8, 32), workspace_gib=0.5, opt_level=1,
                         timing_cache=cache, hardware_compatibility="same-cc")
    paths = engines_from_model_dir(tmp_path, config)
    assert [p.name for p in paths] == ["encoder.int8.engine", "head.int8.engine"]
    (enc_net, enc_cfg), (head_net, head_cfg) = BUILDS
    assert enc_net.flags == head_net.flags == 1 << 1  # STRONGLY_TYPED
    assert enc_cfg.flags == set() and enc_cfg.int8_calibrator is None  # no precision flags, TF32 cleared
    assert enc_cfg.pools == {"WORKSPACE": 1 << 29} and enc_cfg.builder_optimization_level == 1
    assert str(enc_cfg.hardware_compatibility_level) == "SAME_COMPUTE_CAPABILITY"
    assert enc_cfg.profiles[0].shapes == {"patches": ((2, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))}
    assert head_cfg.profiles[0].shapes == {"f_ref": ((2, 64), (8, 64), (32, 64)), "f_dis": ((2, 64), (8, 64), (32, 64))}
    # the timing cache was saved after each build, merged, atomically
    assert cache.read_bytes() == b"tactic-1,tactic-2"
    sidecar = read_sidecar(paths[0])
    rec = EngineRecord.from_details(sidecar.artifact.details)
    assert rec.build == config and rec.network == "strongly-typed" and rec.gpu_name == "Fake GPU"
    assert rec.tensorrt_version == "10.13.0.35" and rec.compute_capability == "8.6"
    assert rec.onnx_file == "encoder.int8.onnx" and rec.calibration_sha256 == "cal" * 8
    assert sidecar.artifact.checkpoint_sha256 == "ck" * 32 and sidecar.artifact.producer["tensorrt"] == "10.13.0.35"
    # the parser ships with TensorRT: its release is TensorRT's; the function reports the parser's interface version
    assert sidecar.artifact.producer["onnx-parser"] == "10.13.0.35"
    assert sidecar.artifact.producer["onnx-parser-interface"] == "0.2.0"


def test_fp32_graph_cannot_be_built_strongly_typed_as_fp16(fake_build: HostAsDeviceCuda, tmp_path: Path) -> None:
    from sgjnd.export.trt import engine_from_onnx

    with pytest.raises(UsageError, match=r"encoder\.fp16\.onnx"):
        engine_from_onnx(tmp_path / "encoder.onnx", BuildConfig(precision="fp16"))


def test_missing_prepared_graphs_name_the_command(fake_build: HostAsDeviceCuda, tmp_path: Path) -> None:
    from sgjnd.export.trt import engines_from_model_dir

    (tmp_path / "head.fp16.onnx").unlink()
    with pytest.raises(SpecError, match=f"sgjnd calibrate {tmp_path} --precision fp16"):
        engines_from_model_dir(tmp_path, BuildConfig(precision="fp16"))


def test_every_parser_error_is_reported(fake_build: HostAsDeviceCuda, tmp_path: Path) -> None:
    from sgjnd.export.trt import engine_from_onnx

    data = b'{"graph": "encoder", "broken": true}'
    (tmp_path / "encoder.onnx").write_bytes(data)
    path = sidecar_path(tmp_path / "encoder.onnx")
    old = json.loads(path.read_text())["artifact"]["sha256"]
    path.write_text(path.read_text().replace(old, sha256_bytes(data)))
    with pytest.raises(BuildError) as info:
        engine_from_onnx(tmp_path / "encoder.onnx", BuildConfig())
    text = str(info.value)
    assert "2 error(s)" in text and "[0] node 3 (Conv): unsupported" in text and "[1] node 9 (Foo)" in text


def test_legacy_int8_calibrates_the_encoder_and_caches(fake_build: HostAsDeviceCuda, tmp_path: Path) -> None:
    from sgjnd.export.trt import engines_from_model_dir
    from sgjnd.spec import read_sidecar

    config = BuildConfig(precision="int8", batch=BatchProfile(1, 4, 8), legacy_precision_flags=True)
    source = Batches([patches(4, seed=i) for i in range(3)])
    paths = engines_from_model_dir(tmp_path, config, calibration=source)
    (enc_net, enc_cfg), (head_net, head_cfg) = BUILDS
    assert enc_net.flags == head_net.flags == 0  # weakly typed
    assert enc_cfg.flags == {"FP16", "INT8"} and head_cfg.flags == {"FP16"}
    assert enc_cfg.calibration_profile is not None
    assert enc_cfg.calibration_profile.shapes["patches"][0] == (4, 3, 32, 32)
    assert fake_build.copies == 3 and fake_build.memory == {}  # every batch copied, the buffer freed
    cache = calibration_cache_path(tmp_path, "encoder")
    assert cache.read_bytes() == b"TRT-1013-EntropyCalibration2"
    rec = EngineRecord.from_details(read_sidecar(paths[0]).artifact.details)
    assert rec.network == "legacy-weakly-typed" and rec.calibration_sha256 and rec.onnx_file == "encoder.onnx"
    assert "FP16 only" in EngineRecord.from_details(read_sidecar(paths[1]).artifact.details).notes[0]
    # a rebuild without batches reuses the matching cache and reads no batch
    BUILDS.clear()
    engines_from_model_dir(tmp_path, config)
    assert fake_build.copies == 3


def test_legacy_calibration_that_yields_nothing_fails_loudly(fake_build: HostAsDeviceCuda, tmp_path: Path) -> None:
    from sgjnd.export.trt import engine_from_onnx

    class Vanishing:
        """Non-empty when checked, empty when TensorRT reads it: what a consumed iterator inside looks like."""

        def __init__(self) -> None:
            self.calls = 0

        def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
            self.calls += 1
            return iter([{"patches": patches(2)}] if self.calls == 1 else [])

    config = BuildConfig(precision="int8", legacy_precision_flags=True)
    with pytest.raises(BuildError, match=r"provided no data.*\(1\).*\(2\)"):
        engine_from_onnx(tmp_path / "encoder.onnx", config, calibration=Vanishing())
    assert not (tmp_path / "encoder.int8.engine").exists()


def test_legacy_on_tensorrt_11_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    trt11 = fake_tensorrt("11.0.0.114")
    del trt11.IInt8EntropyCalibrator2
    trt11.BuilderFlag = types.SimpleNamespace(TF32=Flag("TF32"), VERSION_COMPATIBLE=Flag("VERSION_COMPATIBLE"))
    monkeypatch.setitem(sys.modules, "tensorrt", trt11)
    code = main(["build", str(tmp_path), "--precision", "fp16", "--legacy-precision-flags"])
    assert code == UsageError.exit_code
    line = one_line(capsys.readouterr().err)
    assert "needs TensorRT 10" in line and "11.0.0.114" in line


@pytest.mark.parametrize(("parsed", "encoder_input", "ok"), [
    ("uint8", "uint8", True), ("float32", "float32", True), ("float32", "uint8", False), ("uint8", "float32", False),
])
def test_parsed_network_input_dtype_must_be_the_specs(parsed: str, encoder_input: str, ok: bool) -> None:
    """A uint8-input encoder must reach TensorRT as a UINT8 network input (and a float one as FLOAT): a graph that
    does not match its sidecar is refused before building."""
    from sgjnd.export.trt import check_network_io

    spec = SPEC.with_encoder_input(encoder_input)  # type: ignore[arg-type]
    graph = spec.encoder_graph()
    network = FakeNetwork(0)
    (patches,) = graph.inputs
    shape = batch_shape(patches, -1)
    network.inputs = [FakeTensor("patches", shape, parsed)]
    network.outputs = [FakeTensor("features", batch_shape(graph.outputs[0], -1))]
    if ok:
        check_network_io(network, graph, Path("encoder.onnx"))  # type: ignore[arg-type]
    else:
        with pytest.raises(BuildError, match=f"is {parsed} in the parsed network, but the spec says {encoder_input}"):
            check_network_io(network, graph, Path("encoder.onnx"))  # type: ignore[arg-type]
