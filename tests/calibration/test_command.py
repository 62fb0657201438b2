"""`sgjnd calibrate`: a thin shell over calibrate_model; errors exit with the error's code and one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from sgjnd.cli import main
from sgjnd.errors import CalibrationError


@pytest.fixture()
def model_dir(tiny_onnx_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_onnx_dir, target)
    return target


def test_fp16_command_writes_graphs(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", str(model_dir), "--precision", "fp16", "--no-report", "--quiet"]) == 0
    assert (model_dir / "encoder.fp16.onnx").is_file() and (model_dir / "head.fp16.onnx.json").is_file()
    assert "wrote encoder.fp16.onnx" in capsys.readouterr().out


def test_int8_without_images_fails_cleanly(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["calibrate", str(model_dir), "--precision", "int8", "--no-report", "--quiet"])
    assert code == CalibrationError.exit_code
    err = capsys.readouterr().err
    assert "needs images" in err and err.count("\n") == 1
    assert not list(model_dir.glob("*.int8*"))


def test_empty_image_folder_fails_cleanly(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["calibrate", str(model_dir), "--precision", "int8", "--images", str(empty), "--quiet"])
    assert code == CalibrationError.exit_code
    assert "no images found" in capsys.readouterr().err


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    out = capsys.readouterr().out
    assert "--exclude-op-types" in out and "(default: 256)" in out
