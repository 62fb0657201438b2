"""TensorRT-RTX as a build target and runtime: options it refuses, what its sidecar records, when its engines may
run, the runtime cache's place, and one process-wide TensorRT logger. Logic only, except one real build of the tiny
model's head with TensorRT-RTX and no CUDA at all."""

from __future__ import annotations

import gc
import logging
import os
import sys
import types
from pathlib import Path

import pytest

from sgjnd.cli import main
from sgjnd.engine_spec import (
    RTX_DEFAULT_COMPUTE_CAPABILITIES,
    TENSORRT_RTX,
    BuildConfig,
    EngineRecord,
    Platform,
    check_compatibility,
)
from sgjnd.errors import BackendUnavailable, SpecError, UsageError
from sgjnd.runtime.backends.trt import TrtLogCapture, check_engine_validity, make_trt_logger, require_tensorrt
from sgjnd.runtime.backends.trt_rtx import RUNTIME_CACHE_SUFFIX, runtime_cache_path


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# -- options -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--timing-cache", "t.cache"], "--timing-cache does not apply to --runtime tensorrt-rtx: TensorRT-RTX has no"),
        (["--version-compatible"], "--version-compatible does not apply"),
        (["--hardware-compatibility", "ampere+"], "name the targets with --compute-capability"),
        (["--precision", "int8", "--legacy-precision-flags"], "strongly typed only"),
        (["--compute-capability", "9.0"], "9.0 GPUs such as the H100 need full TensorRT"),
        (["--compute-capability", "8.6,8.6"], "lists a value twice"),
    ],
)
def test_options_tensorrt_rtx_does_not_honour_are_refused_in_one_line(
    argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["build", str(tmp_path), "--runtime", "tensorrt-rtx", *argv])
    assert code == UsageError.exit_code
    assert fragment in one_line(capsys.readouterr().err)


def test_compute_capabilities_belong_to_tensorrt_rtx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(tmp_path), "--compute-capability", "8.6"]) == UsageError.exit_code
    assert "only applies to --runtime tensorrt-rtx" in one_line(capsys.readouterr().err)


def test_rtx_build_options_round_trip_and_reproduce() -> None:
    config = BuildConfig(precision="int8", runtime="tensorrt-rtx", compute_capabilities=("8.6", "12.0")).validate()
    assert BuildConfig.from_record(config.to_record()) == config
    assert config.command("m").startswith("sgjnd build m --runtime tensorrt-rtx --compute-capability 8.6,12.0 ")
    assert BuildConfig().command("m").startswith("sgjnd build m --precision fp32")  # TensorRT: as before
    old = BuildConfig().to_record()
    del old["runtime"], old["compute_capabilities"]  # a sidecar written before TensorRT-RTX existed
    assert BuildConfig.from_record(old) == BuildConfig()


def test_missing_tensorrt_rtx_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(BackendUnavailable, match=r"TensorRT-RTX is not installed.*pip install 'sgjnd\[trt-rtx\]'"):
        require_tensorrt(TENSORRT_RTX)


# -- may it run here? -----------------------------------------------------------------------------------------------
def rtx_record(targets: tuple[str, ...] = ("8.6", "8.9"), version: str = "1.7.1.116") -> EngineRecord:
    build = BuildConfig(precision="fp16", runtime="tensorrt-rtx", compute_capabilities=targets)
    return EngineRecord(version, "", "", build, target_compute_capabilities=targets)


def test_rtx_engines_run_on_any_gpu_model_of_a_targeted_compute_capability() -> None:
    for gpu, cc in (("NVIDIA GeForce RTX 3090", "8.6"), ("NVIDIA RTX 4000 Ada Generation", "8.9")):
        assert check_compatibility(rtx_record(), Platform("1.7.1.116", gpu, cc, "tensorrt-rtx")).ok


def test_rtx_engines_refuse_other_targets_releases_and_products() -> None:
    h100 = check_compatibility(rtx_record(), Platform("1.7.1.116", "NVIDIA H100", "9.0", "tensorrt-rtx"))
    assert not h100.ok and "built for compute capabilities 8.6, 8.9" in h100.problems[0]
    assert "use full TensorRT" in h100.problems[0]
    other = check_compatibility(rtx_record(), Platform("1.8.0.1", "NVIDIA GeForce RTX 3090", "8.6", "tensorrt-rtx"))
    assert not other.ok and "TensorRT-RTX 1.7.1.116" in other.problems[0]
    full = check_compatibility(rtx_record(), Platform("10.13.0.35", "NVIDIA GeForce RTX 3090", "8.6"))
    assert not full.ok and "tensorrt-rtx engine and this runtime is tensorrt" in full.problems[0]


def test_the_sidecar_records_product_and_targets() -> None:
    details = rtx_record().to_details()
    assert details["product"] == "tensorrt-rtx" and details["target_compute_capabilities"] == ["8.6", "8.9"]
    assert EngineRecord.from_details(details) == rtx_record()
    details["product"] = "tensorrt"
    with pytest.raises(SpecError, match=r"disagrees with build_options\.runtime"):
        EngineRecord.from_details(details)


class FakeRuntime:
    def __init__(self, validity: str, diagnostics: int = 0) -> None:
        self.answer = (types.SimpleNamespace(name=validity), diagnostics)

    def get_engine_validity(self, data: bytes) -> tuple[object, int]:
        return self.answer


def test_tensorrt_rtx_validity_verdict_is_obeyed(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("tensorrt_rtx", reason="diagnostic names come from TensorRT-RTX: pip install 'sgjnd[trt-rtx]'")
    import tensorrt_rtx as rtx

    unsupported = int(rtx.EngineInvalidityDiagnostics.UNSUPPORTED_CC)
    with pytest.raises(SpecError, match=r"cannot run here.*unsupported_cc"):
        check_engine_validity(FakeRuntime("INVALID", unsupported), b"", "e.rtx.engine")
    check_engine_validity(FakeRuntime("SUBOPTIMAL", int(rtx.EngineInvalidityDiagnostics.OLD_CUDA_DRIVER)), b"", "e")
    assert "suboptimal" in caplog.text and "old_cuda_driver" in caplog.text
    check_engine_validity(FakeRuntime("VALID"), b"", "e")


# -- runtime cache ----------------------------------------------------------------------------------------------------
def test_runtime_cache_lives_beside_the_engine_or_in_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = tmp_path / "models" / "encoder.fp16.rtx.engine"
    engine.parent.mkdir()
    assert runtime_cache_path(engine, "auto", "ab" * 32) == engine.with_name(engine.name + RUNTIME_CACHE_SUFFIX)
    assert runtime_cache_path(engine, "off", "ab" * 32) is None and runtime_cache_path(engine, None, "") is None
    assert runtime_cache_path(engine, tmp_path / "x.cache", "") == tmp_path / "x.cache"
    with pytest.raises(UsageError, match="must be a file path"):
        runtime_cache_path(engine, tmp_path, "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only model directory
    cached = runtime_cache_path(engine, "auto", "ab" * 32)
    assert cached == tmp_path / "xdg" / "sgjnd" / "tensorrt-rtx" / f"{'ab' * 8}-{engine.name}{RUNTIME_CACHE_SUFFIX}"


# -- logging ----------------------------------------------------------------------------------------------------------
def test_one_logger_per_process_reaches_every_live_capture(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """TensorRT keeps the first logger it is given; a second build's errors must still reach the second capture."""
    trt = types.ModuleType("tensorrt")
    logger_base = type("ILogger", (), {"__init__": lambda self: None})
    trt.__dict__.update(__version__="10.13.0.35", Builder=object, ILogger=logger_base)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    first, second = TrtLogCapture(), TrtLogCapture()
    logger = make_trt_logger(first)
    assert make_trt_logger(second) is logger
    with caplog.at_level(logging.ERROR, logger="sgjnd.tensorrt"):
        logger.log(types.SimpleNamespace(name="ERROR"), "parser failed")
    assert first.errors == second.errors == ["parser failed"]
    assert [r.getMessage() for r in caplog.records] == ["parser failed"]  # logged once, not once per capture
    del first
    gc.collect()
    logger.log(types.SimpleNamespace(name="ERROR"), "build failed")
    assert second.errors == ["parser failed", "build failed"]


# -- a real build, no CUDA ------------------------------------------------------------------------------------------
def test_tensorrt_rtx_builds_without_cuda_python_or_a_gpu(
    tiny_onnx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install 'sgjnd[trt-rtx]'")
    import shutil

    from sgjnd.runtime import cuda
    from sgjnd.spec import read_sidecar

    def no_cuda(*args: object, **kwargs: object) -> None:
        raise BackendUnavailable("no CUDA here (the test forbids it)")

    monkeypatch.setattr(cuda, "load_cuda", no_cuda)
    monkeypatch.setitem(sys.modules, "cuda", None)  # cuda-python unimportable too
    shutil.copytree(tiny_onnx_dir, tmp_path / "m")
    assert main(["build", str(tmp_path / "m"), "--runtime", "tensorrt-rtx", "--batch", "1,4,8"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "m" / "encoder.rtx.engine"), str(tmp_path / "m" / "head.rtx.engine")]
    record = EngineRecord.from_details(read_sidecar(tmp_path / "m" / "head.rtx.engine").artifact.details)
    assert record.target_compute_capabilities == RTX_DEFAULT_COMPUTE_CAPABILITIES and record.gpu_name == ""
    # `sgjnd inspect` shows the sidecar without a GPU
    assert main(["inspect", str(tmp_path / "m" / "head.rtx.engine")]) == 0
    assert '"product": "tensorrt-rtx"' in capsys.readouterr().out
