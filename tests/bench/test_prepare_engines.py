"""The bench's engine preparation builds TensorRT-RTX engines for TensorRT-RTX targets (no GPU needed to build),
and names the command when it may not write; the TensorRT product is only asked for when a TensorRT target is."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from sgjnd.bench.config import REFERENCE, Target, profile_config
from sgjnd.bench.prepare import Prepared, _engines
from sgjnd.runtime.modeldir import available_precisions
from sgjnd.spec import read_sidecar


def with_targets(*targets: Target):
    """The quick profile with the reference and ``targets`` only."""
    config = profile_config("quick")
    reference = next(t for t in config.targets if t.name == REFERENCE)
    return dataclasses.replace(config, targets=(reference, *targets), e2e_strategies={})


def test_rtx_targets_get_rtx_engines(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install 'sgjnd[trt-rtx]'")
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_onnx_dir, model_dir)
    prepared = Prepared(spec=read_sidecar(model_dir / "encoder.onnx").model, weights="UNTRAINED")
    said: list[str] = []
    config = with_targets(Target("trt-rtx/fp32", "tensorrt-rtx", "fp32", device="gpu"),
                          Target("trt-rtx/fp16", "tensorrt-rtx", "fp16", device="gpu"))
    _engines(prepared, model_dir, config, tmp_path, writable=True, say=said.append)
    assert available_precisions(model_dir, "rtx.engine") == ["fp32"]
    assert available_precisions(model_dir, "engine") == []  # no TensorRT target: TensorRT was not asked for
    assert "fp16 TensorRT-RTX engines could not be built" in prepared.missing["rtx.engine:fp16"]  # no fp16 graphs
    assert said == ["fp32 TensorRT-RTX engines: building in " + str(model_dir),
                    "fp16 TensorRT-RTX engines: building in " + str(model_dir)]


def test_a_read_only_model_directory_names_the_build_command(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    prepared = Prepared(spec=read_sidecar(tiny_onnx_dir / "encoder.onnx").model, weights="UNTRAINED")
    config = with_targets(Target("trt-rtx/int8", "tensorrt-rtx", "int8", device="gpu"))
    _engines(prepared, tiny_onnx_dir, config, tmp_path, writable=False, say=lambda _: None)
    assert prepared.missing == {
        "rtx.engine:int8": f"no int8 TensorRT-RTX engines in {tiny_onnx_dir}; build them with: "
                           f"sgjnd build {tiny_onnx_dir} --runtime tensorrt-rtx --precision int8"
    }
