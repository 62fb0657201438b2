"""Shared fixtures. Keep this file small: fixtures used by one test module belong in that module."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Derived files (the demo model's ONNX graphs) go to a folder of this session, never the user's cache."""
    import os

    os.environ["SGJND_CACHE"] = str(tmp_path_factory.mktemp("sgjnd-cache"))


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """The bundled real photographs (scikit-image's data folder), in the order of ``sgjnd.samples.SAMPLE_PHOTOS``."""
    pytest.importorskip("skimage", reason="the photographs come from scikit-image: pip install 'sgjnd[samples]'")
    from sgjnd.samples import sample_photos

    return sample_photos()


@pytest.fixture(scope="session")
def calib_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real photos, none of them among the bundled sample photos used as held-out images."""
    pytest.importorskip("skimage", reason="the photographs come from scikit-image")
    from sgjnd.samples import calibration_photos, copy_photos

    photos = calibration_photos()
    if not photos:
        pytest.skip("scikit-image ships none of the calibration photographs")
    folder = tmp_path_factory.mktemp("calib_photos")
    copy_photos(photos, folder)
    return folder


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


@pytest.fixture(scope="session")
def tiny_float_onnx_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_checkpoint`` exported with ``encoder_input="float32"`` (the encoder takes normalised (N, 3, s, s)
    patches, as graphs exported before uint8 inputs did); read-only."""
    pytest.importorskip("onnxruntime")
    from sgjnd.export.onnx import onnx_from_checkpoint

    folder = tmp_path_factory.mktemp("tiny_float_onnx") / "model"
    return onnx_from_checkpoint(tiny_checkpoint, folder, encoder_input="float32").out_dir


DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"
"""The shipped demo model: checkpoint, model card, INT8 recipe."""


def demo_int8_exclusions() -> tuple[str, ...]:
    """The node patterns of models/demo/int8_exclude_nodes.txt (comment lines dropped), as `make demo` uses them."""
    lines = (DEMO / "int8_exclude_nodes.txt").read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="session")
def demo_onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo checkpoint exported to ONNX (FP32 graphs with sidecars); read-only: copy it to add files."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from sgjnd.export.onnx import onnx_from_checkpoint

    return onnx_from_checkpoint(DEMO / "sgjnd_effl0_proxy.pt", tmp_path_factory.mktemp("demo") / "model").out_dir


@pytest.fixture(scope="session")
def demo_int8(demo_onnx_dir: Path, calib_photos: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory):
    """The demo checkpoint exported and calibrated to both INT8 flavours with its recipe, with the accuracy report on
    the bundled photos (a ``CalibrationOutcome``; its ``model_dir`` is read-only: copy it to add files)."""
    import shutil

    from sgjnd.calibration.pipeline import CalibrateConfig, calibrate_model
    from sgjnd.calibration.quantize import QuantizeConfig
    from sgjnd.calibration.reader import ReaderConfig

    model_dir = tmp_path_factory.mktemp("demo-int8") / "model"
    shutil.copytree(demo_onnx_dir, model_dir)
    config = CalibrateConfig(
        precision="int8", target="all", reader=ReaderConfig(num_patches=512, patches_per_image=64),
        quantize=QuantizeConfig(exclude_nodes=demo_int8_exclusions()), progress=False,
    )
    return calibrate_model(model_dir, images=calib_photos, holdout=photos, config=config)


@pytest.fixture(scope="session")
def r50_export(tmp_path_factory: pytest.TempPathFactory):
    """``sgjnd_r50`` (the paper's form) with seeded, untrained weights, exported to ONNX with parity checked (an
    ``ExportReport``; its ``out_dir`` is read-only: copy it to add files)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from sgjnd.export.onnx import onnx_from_checkpoint
    from sgjnd.model import create_model, save_checkpoint

    folder = tmp_path_factory.mktemp("r50")
    checkpoint = folder / "sgjnd_r50_seed0.pt"
    save_checkpoint(create_model("sgjnd_r50", seed=0), checkpoint, weights="UNTRAINED: sgjnd_r50 seed 0")
    return onnx_from_checkpoint(checkpoint, folder / "model")


def fake_cpu(monkeypatch: pytest.MonkeyPatch, info: dict[str, object]) -> None:
    """Make this CPU look like ``info`` both to the runtime (``sgjnd.runtime.cpu``) and to reports (``environment``)."""
    import sgjnd.environment as environment
    import sgjnd.runtime.cpu as cpu

    monkeypatch.setattr(cpu, "cpu_info", lambda: info)
    monkeypatch.setattr(environment, "cpu_info", lambda: info)


@pytest.fixture(scope="session")
def tiny_precisions_dir(tiny_onnx_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_onnx_dir`` plus its FP16 graphs and both INT8 flavours (int8: TensorRT QDQ, int8-ort: ONNX Runtime
    CPU), calibrated on 32 patches of the first two bundled photos (seed 0, no report); read-only."""
    import shutil

    from sgjnd.calibration.pipeline import CalibrateConfig, calibrate_model
    from sgjnd.calibration.reader import ReaderConfig

    root = tmp_path_factory.mktemp("tiny_precisions")
    model_dir = Path(shutil.copytree(tiny_onnx_dir, root / "model"))
    images = root / "images"
    images.mkdir()
    for photo in photos[:2]:
        shutil.copy(photo, images / photo.name)
    reader = ReaderConfig(num_patches=32)
    for precision in ("int8", "fp16"):
        config = CalibrateConfig(precision=precision, target="all", reader=reader, report=False, progress=False,
                                 use_cache=False)
        calibrate_model(model_dir, images=images if precision == "int8" else None, holdout=[], config=config)
    return model_dir
