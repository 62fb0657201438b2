"""The embedding API (sgjnd.runtime): one model, predictions from a path, bytes and arrays that agree."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sgjnd.errors import ImageError, PixelLimitError, SgjndError, UsageError
from sgjnd.runtime import ModelSource, PredictConfig, SearchConfig, decoded_from_array, open_predictor
from sgjnd.runtime.predictor import JNDResult

CONFIG = PredictConfig(search=SearchConfig(strategy="coarse-to-fine"), max_patches=4)


def test_path_bytes_and_arrays_give_the_same_result(tiny_onnx_dir: Path, photos: list[Path]) -> None:
    photo = photos[0]
    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    lines: list[str] = []
    with open_predictor(tiny_onnx_dir, backend="onnxruntime", config=CONFIG, announce=lines.append) as predictor:
        assert "onnxruntime" in predictor.backend
        results = [
            predictor.predict(photo),
            predictor.predict(str(photo)),
            predictor.predict(photo.read_bytes()),
            predictor.predict(bgr),
            predictor.predict(np.ascontiguousarray(bgr[:, :, ::-1]), rgb=True),
        ]
    first = results[0]
    assert isinstance(first, JNDResult)
    for other in results[1:]:
        assert other.jnd_qf == first.jnd_qf
        assert other.recommended_qf == first.recommended_qf
        np.testing.assert_allclose(list(other.scores.values()), list(first.scores.values()), atol=1e-6)
    # BGR given as RGB is a different image: the flag is honoured, not ignored
    with open_predictor(tiny_onnx_dir, backend="onnxruntime", config=CONFIG) as predictor:
        swapped = predictor.predict(bgr, rgb=True)
    assert list(swapped.scores.values()) != list(first.scores.values())


def test_predict_many_keeps_going_past_a_bad_image(tiny_onnx_dir: Path, photos: list[Path]) -> None:
    with open_predictor(ModelSource("onnxruntime", tiny_onnx_dir), config=CONFIG) as predictor:
        out = list(predictor.predict_many([photos[0], b"not an image", photos[1]]))
    assert isinstance(out[0], JNDResult) and isinstance(out[2], JNDResult)
    assert isinstance(out[1], ImageError)


def test_arrays_of_the_wrong_kind_are_refused_with_what_to_do() -> None:
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)):
        with pytest.raises(UsageError, match=r"\(H, W, 3\) uint8"):
            decoded_from_array(bad)


def test_a_large_array_meets_the_pixel_limit(tiny_onnx_dir: Path) -> None:
    config = PredictConfig(search=SearchConfig(strategy="coarse-to-fine"), max_patches=4, max_pixels=1000)
    with (
        open_predictor(tiny_onnx_dir, backend="onnxruntime", config=config) as predictor,
        pytest.raises(ImageError, match="above the limit"),
    ):
        predictor.predict(np.zeros((100, 100, 3), np.uint8))


def test_an_array_is_held_to_the_limits_of_a_file() -> None:
    """The same checks as decode_image: a pixel-limit refusal is a PixelLimitError (413 in the service), and a side
    below min_side is refused as it is for a file."""
    with pytest.raises(PixelLimitError):
        decoded_from_array(np.zeros((100, 100, 3), np.uint8), max_pixels=1000)
    with pytest.raises(ImageError, match="too small"):
        decoded_from_array(np.zeros((8, 40, 3), np.uint8))
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 255  # red in RGB
    assert decoded_from_array(rgb, rgb=True).bgr[0, 0].tolist() == [0, 0, 255]


def test_misuse_is_a_clear_error(tiny_onnx_dir: Path) -> None:
    predictor = open_predictor(tiny_onnx_dir, backend="onnxruntime")
    with pytest.raises(UsageError, match="not open"):
        predictor.predict(b"x")
    with pytest.raises(UsageError, match="inside the ModelSource"):
        open_predictor(ModelSource("onnxruntime", tiny_onnx_dir), precision="fp16")
    with pytest.raises(SgjndError):
        open_predictor(tiny_onnx_dir, backend="onnxruntime", no_such_option=1).__enter__()


def test_the_public_names_resolve_without_loading_opencv_at_package_import() -> None:
    """`import sgjnd.runtime.X` passes through the package; it must not load OpenCV before the CLI sets its limit."""
    import subprocess
    import sys

    code = (
        "import sys, sgjnd.runtime as r\n"
        "assert 'cv2' not in sys.modules\n"
        "missing = [n for n in r.__all__ if getattr(r, n, None) is None]\n"
        "assert not missing, missing\n"
        "print(sorted(r.__all__) == sorted(dir(r)) or set(r.__all__) <= set(dir(r)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
