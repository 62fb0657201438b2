"""The bad-input matrix (docs/errors.md): every awkward or broken input, through the library and through the CLI.

Each case either works (with the note that says what was converted) or fails with one error type, one clear message,
the documented exit code and a single stderr line, and leaves nothing partial behind. The model is the untrained
tiny model on ONNX Runtime with few patches and bisection, so the whole matrix runs in seconds.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from fixtures_bad import (
    animated,
    cmyk_jpeg,
    crop,
    encode,
    heic_header,
    jpeg_bomb,
    jpeg_with_exif,
    png_bomb,
)

from sgjnd.cli import main
from sgjnd.errors import (
    BackendError,
    BackendUnavailable,
    ImageError,
    SgjndError,
    SpecError,
    UsageError,
)
from sgjnd.fileio import sha256_file
from sgjnd.runtime import decode as decode_module
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.runtime.search import SearchConfig

FAST = ["--search", "bisect", "--max-patches", "2", "--workers", "1"]


def model_args(model_dir: Path) -> list[str]:
    return ["--backend", "onnxruntime", "--model", str(model_dir), *FAST]


@pytest.fixture(scope="module")
def predictor(tiny_onnx_dir: Path) -> Iterator[JNDPredictor]:
    config = PredictConfig(search=SearchConfig(strategy="bisect"), max_patches=2)
    with open_model("onnxruntime", tiny_onnx_dir) as models:
        yield JNDPredictor(models, config)


@pytest.fixture(scope="module")
def base(photos: list[Path]) -> np.ndarray:
    """A 96×128 crop (not square, so rotations show in the shape)."""
    return np.ascontiguousarray(crop(photos[1], 128)[:96])


# -- the matrix of image inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One input: a file name and how to make its bytes; the expected outcome."""

    name: str
    file: str
    make: Callable[[np.ndarray], bytes]
    error: type[SgjndError] | None = None
    message: str = ""  # regex in the error message, or in the notes when the input works
    shape: tuple[int, int] | None = None  # (width, height) after decoding, when it works


def _gray16(img: np.ndarray) -> bytes:
    return encode(img.astype(np.uint16) * 257 + 1, ".png")


def _rgba(img: np.ndarray) -> bytes:
    alpha = np.tile(np.linspace(0, 255, img.shape[1], dtype=np.uint8), (img.shape[0], 1))
    return encode(np.dstack([img, alpha]), ".png")


def _exif_jpeg(img: np.ndarray, orientation: int) -> bytes:
    return jpeg_with_exif(img, orientation)


def _sized(width: int, height: int) -> Callable[[np.ndarray], bytes]:
    def make(img: np.ndarray) -> bytes:
        return encode(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA), ".png")

    return make


IMAGE_CASES = [
    Case("zero-byte", "empty.jpg", lambda img: b"", ImageError, r"empty \(0 bytes\)"),
    Case("truncated-jpeg", "cut.jpg", lambda img: encode(img, ".jpg")[:700], ImageError, "truncated or corrupt"),
    Case("truncated-png", "cut.png", lambda img: encode(img, ".png")[:900], ImageError, "truncated or corrupt"),
    Case("text-named-jpg", "notes.jpg", lambda img: b"hello, not a picture\n" * 4, ImageError, "text, not an image"),
    Case("1x1", "dot.png", _sized(1, 1), ImageError, r"1×1 pixels is too small: each side must be at least 16"),
    Case("20000x8", "sliver.png", _sized(20000, 8), ImageError, "too small"),
    Case("smaller-than-patch", "small.png", _sized(40, 24), None, r"smaller than the 64px patch", (40, 24)),
    Case("20000x16", "wide.png", _sized(20000, 16), None, "extended by edge replication", (20000, 16)),
    Case("16x20000", "tall.png", _sized(16, 20000), None, "extended by edge replication", (16, 20000)),
    Case("bomb-png", "bomb.png", lambda img: png_bomb(100_000, 100_000), ImageError, "refused before decoding"),
    Case("bomb-jpeg", "bomb.jpg", lambda img: jpeg_bomb(65_000, 60_000), ImageError, "refused before decoding"),
    Case("16-bit-png", "deep.png", _gray16, None, "16-bit samples scaled to 8 bits", (128, 96)),
    Case("rgba-png", "alpha.png", _rgba, None, "composited over a white background", (128, 96)),
    Case(
        "grayscale",
        "gray.png",
        lambda img: encode(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), ".png"),
        None,
        "grayscale replicated",
        (128, 96),
    ),
    Case("cmyk-jpeg", "cmyk.jpg", cmyk_jpeg, None, "CMYK JPEG converted to BGR", (128, 96)),
    Case("animated-gif", "anim.gif", lambda img: animated(img, "GIF"), None, r"animated GIF .* first frame", (128, 96)),
    Case("animated-webp", "anim.webp", lambda img: animated(img, "WEBP"), None, "first frame", (128, 96)),
    Case(
        "heic", "photo.heic", lambda img: heic_header(), ImageError, r"HEIF/HEIC image, but OpenCV .* no HEIF decoder"
    ),
    Case("avif", "photo.avif", lambda img: encode(img, ".avif"), None, "irot/imir", (128, 96)),
    *(
        Case(
            f"exif-orientation-{o}",
            f"exif{o}.jpg",
            functools.partial(_exif_jpeg, orientation=o),
            None,
            "" if o == 1 else f"EXIF orientation {o} applied",
            (128, 96) if o <= 4 else (96, 128),
        )
        for o in range(1, 9)
    ),
]
"""Every image case of docs/errors.md; exit code 3 for each ImageError, 0 for each one that works."""


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: c.name)
def test_library(case: Case, base: np.ndarray, predictor: JNDPredictor, tmp_path: Path) -> None:
    path = tmp_path / case.file
    path.write_bytes(case.make(base))
    if case.error is not None:
        with pytest.raises(case.error, match=case.message) as info:
            predictor.predict(path)
        assert str(path) in str(info.value)  # the message names the file
        assert "\n" not in str(info.value)
        return
    result = predictor.predict(path)
    assert (result.width, result.height) == case.shape
    assert re.search(case.message, " | ".join(result.notes)), result.notes
    json.dumps(result.to_dict())


ERROR_CASES = [c for c in IMAGE_CASES if c.error is not None]
WORKING_CASES = [c for c in IMAGE_CASES if c.error is None]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_cli_refusal(
    case: Case, base: np.ndarray, tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert case.error is not None
    path = tmp_path / case.file
    path.write_bytes(case.make(base))
    code = main(["predict", str(path), *model_args(tiny_onnx_dir), "--json"])
    out, err = capsys.readouterr()
    assert code == case.error.exit_code == 3
    assert out == ""
    _assert_one_error_line(err, "predict", case.message)
    assert str(path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [case.file]  # nothing written beside the input


def test_cli_accepts_every_working_case(
    base: np.ndarray, tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One CLI run over all the inputs that work (a model load per case would only repeat the library test)."""
    paths = []
    for case in WORKING_CASES:
        paths.append(tmp_path / case.file)
        paths[-1].write_bytes(case.make(base))
    code = main(["predict", *map(str, paths), *model_args(tiny_onnx_dir), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["source"] for r in records] == [str(p) for p in paths]
    for case, record in zip(WORKING_CASES, records, strict=True):
        assert (record["width"], record["height"]) == case.shape
        assert re.search(case.message, " | ".join(record["notes"])), record["notes"]
    assert f"{len(paths)} done, 0 skipped, 0 failed" in err


def _assert_one_error_line(err: str, command: str, pattern: str) -> str:
    """stderr holds one error line (besides the model's weights statement) matching ``pattern``; no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("weights:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"sgjnd {command}: ")
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def test_max_pixels_option_refuses_from_the_header(
    base: np.ndarray,
    tiny_onnx_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(encode(base, ".png"))

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded an image above --max-pixels")

    monkeypatch.setattr(decode_module.cv2, "imdecode", no_decoding)
    code = main(["predict", str(path), *model_args(tiny_onnx_dir), "--max-pixels", "5000"])
    assert code == 3
    _assert_one_error_line(
        capsys.readouterr().err,
        "predict",
        r"128×96 = 12,288 pixels is above the limit of 5,000 pixels \(refused before",
    )


def test_missing_avif_support_is_named(
    base: np.ndarray, predictor: JNDPredictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode(base, ".avif")
    monkeypatch.setattr(decode_module, "_build_codecs", lambda: frozenset({"jpeg", "png"}))
    monkeypatch.setattr(decode_module.cv2, "imdecode", lambda *args: None)  # what a build without libavif returns
    with pytest.raises(ImageError, match=r"AVIF image, but this OpenCV build .* has no AVIF decoder.*Convert it"):
        predictor.predict(data)


def test_missing_input_file(tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["predict", str(tmp_path / "nope.jpg"), *model_args(tiny_onnx_dir)])
    assert code == 3
    _assert_one_error_line(capsys.readouterr().err, "predict", "nope.jpg: no such file")


def test_a_folder_without_images_is_a_usage_error(
    tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "readme.md").write_text("no images here")
    out = tmp_path / "results.jsonl"
    assert main(["predict", str(tmp_path), *model_args(tiny_onnx_dir), "--out", str(out)]) == 2
    _assert_one_error_line(capsys.readouterr().err, "predict", "error: no image files found")
    assert not out.exists()


def test_a_failure_in_a_results_file_is_one_complete_record(
    base: np.ndarray, tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "in" / "cut.jpg"
    bad.parent.mkdir()
    bad.write_bytes(encode(base, ".jpg")[:700])
    out = tmp_path / "out" / "results.jsonl"
    assert main(["predict", str(bad), *model_args(tiny_onnx_dir), "--out", str(out)]) == 3
    (line,) = out.read_text().splitlines()
    record = json.loads(line)
    assert record["error_type"] == "ImageError" and record["exit_code"] == 3
    assert "truncated or corrupt" in record["error"] and record["path"] == str(bad.resolve())
    assert record["sha256"] == sha256_file(bad)
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.jsonl"]  # no temporary files left
    assert "1 failed" in capsys.readouterr().err


# -- the model side ---------------------------------------------------------------------------------------------------


def _copy(tiny_onnx_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_onnx_dir, tmp_path / "model"))


def _missing(d: Path) -> Path:
    shutil.rmtree(d)
    return d


def _not_a_dir(d: Path) -> Path:
    shutil.rmtree(d)
    d.write_text("not a folder")
    return d


def _no_head(d: Path) -> Path:
    (d / "head.onnx").unlink()
    return d


def _corrupt_sidecar(d: Path) -> Path:
    (d / "encoder.onnx.json").write_text('{"format": 1, "model": ')
    return d


def _sidecar_hash(d: Path) -> Path:
    sidecar = d / "encoder.onnx.json"
    data = json.loads(sidecar.read_text())
    data["artifact"]["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(data))
    return d


def _truncated_onnx(d: Path) -> Path:
    onnx = d / "encoder.onnx"
    onnx.write_bytes(onnx.read_bytes()[:2000])
    return d


def _truncated_onnx_rehashed(d: Path) -> Path:
    """Someone 'fixed' the sidecar of a truncated graph: the hash matches, ONNX Runtime refuses the bytes."""
    _truncated_onnx(d)
    sidecar = d / "encoder.onnx.json"
    data = json.loads(sidecar.read_text())
    data["artifact"]["sha256"] = sha256_file(d / "encoder.onnx")
    sidecar.write_text(json.dumps(data))
    return d


MODEL_CASES = [
    ("missing-dir", _missing, SpecError, r"model directory .* does not exist. Create it with: sgjnd export"),
    ("dir-is-a-file", _not_a_dir, SpecError, "is a file, but a model directory was expected"),
    ("missing-graph", _no_head, SpecError, r"has no fp32 head graph \(expected head.onnx"),
    ("corrupt-sidecar", _corrupt_sidecar, SpecError, "is not a readable JSON sidecar"),
    ("sidecar-hash-mismatch", _sidecar_hash, SpecError, "does not match its sidecar: sha256"),
    ("truncated-onnx", _truncated_onnx, SpecError, r"does not match its sidecar.*truncated.*sgjnd export"),
    ("truncated-onnx-rehashed", _truncated_onnx_rehashed, BackendError, "ONNX Runtime could not load"),
]


@pytest.mark.parametrize(("name", "damage", "error", "message"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_model_dir_library(
    name: str,
    damage: Callable[[Path], Path],
    error: type[SgjndError],
    message: str,
    tiny_onnx_dir: Path,
    tmp_path: Path,
) -> None:
    model_dir = damage(_copy(tiny_onnx_dir, tmp_path))
    with pytest.raises(error, match=message), open_model("onnxruntime", model_dir):
        pass


@pytest.mark.parametrize(("name", "damage", "error", "message"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_model_dir_cli(
    name: str,
    damage: Callable[[Path], Path],
    error: type[SgjndError],
    message: str,
    base: np.ndarray,
    tiny_onnx_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_dir = damage(_copy(tiny_onnx_dir, tmp_path))
    image = tmp_path / "photo.png"
    image.write_bytes(encode(base, ".png"))
    out = tmp_path / "results" / "r.jsonl"
    code = main(["predict", str(image), *model_args(model_dir), "--out", str(out)])
    assert code == error.exit_code
    _assert_one_error_line(capsys.readouterr().err, "predict", "error: .*" + message)
    assert not out.parent.exists()  # nothing written when the model cannot load


def test_truncated_checkpoint_on_the_torch_backend(
    tiny_checkpoint: Path, base: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = Path(shutil.copy(tiny_checkpoint, tmp_path / "tiny.pt"))
    shutil.copy(tiny_checkpoint.with_name(tiny_checkpoint.name + ".json"), tmp_path / "tiny.pt.json")
    ckpt.write_bytes(ckpt.read_bytes()[:4096])
    image = tmp_path / "photo.png"
    image.write_bytes(encode(base, ".png"))
    code = main(["predict", str(image), "--backend", "torch", "--model", str(ckpt), *FAST])
    assert code == 4
    _assert_one_error_line(capsys.readouterr().err, "predict", "error: .*tiny.pt")


def test_truncated_engine_on_a_machine_without_tensorrt(
    tiny_onnx_dir: Path, base: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Here TensorRT is checked first (exit 5); with TensorRT the hash check refuses it (tests/runtime/test_trt_*)."""
    from sgjnd.engine_spec import BatchProfile, BuildConfig, EngineRecord
    from sgjnd.fileio import sha256_bytes
    from sgjnd.runtime.backends.trt import require_tensorrt
    from sgjnd.spec import ArtifactInfo, Sidecar, read_sidecar, write_sidecar

    try:
        require_tensorrt()
        pytest.skip("TensorRT is installed: the truncated-engine refusal is tested with the TensorRT backend's tests")
    except BackendUnavailable:
        pass
    model_dir = tmp_path / "engines"
    model_dir.mkdir()
    spec = read_sidecar(tiny_onnx_dir / "encoder.onnx", verify_hash=False).model
    for graph in ("encoder", "head"):
        data = b"engine bytes " * 100
        record = EngineRecord("10.13.0.35", "NVIDIA H100", "9.0", BuildConfig(batch=BatchProfile(1, 16, 64)))
        info = ArtifactInfo(
            kind="engine", file=f"{graph}.engine", sha256=sha256_bytes(data), graph=graph, details=record.to_details()
        )
        (model_dir / f"{graph}.engine").write_bytes(data[:100])  # truncated after the sidecar was written
        write_sidecar(model_dir / f"{graph}.engine", Sidecar(spec, info))
    image = tmp_path / "photo.png"
    image.write_bytes(encode(base, ".png"))
    code = main(["predict", str(image), "--backend", "tensorrt", "--model", str(model_dir), *FAST])
    assert code == BackendUnavailable.exit_code == 5
    _assert_one_error_line(capsys.readouterr().err, "predict", "error: .*TensorRT")


def test_usage_errors_exit_2(tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(tmp_path / "list.txt"), *model_args(tiny_onnx_dir)]) == UsageError.exit_code == 2
    _assert_one_error_line(capsys.readouterr().err, "predict", "no such list file")
    image = tmp_path / "photo.png"
    image.write_bytes(encode(np.zeros((32, 32, 3), np.uint8), ".png"))
    assert main(["predict", str(image), "--backend", "torch", "--model", str(tmp_path), *FAST]) == 2
    _assert_one_error_line(capsys.readouterr().err, "predict", "opens a checkpoint file, got the directory")
    assert main(["predict", str(image), *model_args(tiny_onnx_dir), "--workers", "0"]) == 2
    _assert_one_error_line(capsys.readouterr().err, "predict", "workers must be at least 1")
