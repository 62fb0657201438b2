"""Shared fixtures. Keep this file small: fixtures used by one test module belong in that module."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """The bundled real photographs (scikit-image's data folder), in the order of ``sgjnd.samples.SAMPLE_PHOTOS``."""
    pytest.importorskip("skimage", reason="the photographs come from scikit-image: pip install 'sgjnd[samples]'")
    from sgjnd.samples import sample_photos

    return sample_photos()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``sgjnd_tiny`` checkpoint (seed 0, patch 64) with its sidecar, made once per session."""
    pytest.importorskip("torch")
    from sgjnd.model import create_model, save_checkpoint

    path = tmp_path_factory.mktemp("tiny_checkpoint") / "tiny.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=0), path, weights="UNTRAINED: seed 0")
    return path


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_checkpoint`` exported to ONNX (encoder.onnx, head.onnx, sidecars); read-only: copy it to change it."""
    pytest.importorskip("onnxruntime")
    from sgjnd.export.onnx import onnx_from_checkpoint

    return onnx_from_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("tiny_onnx") / "model").out_dir
