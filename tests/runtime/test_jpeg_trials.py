"""JPEG trials in the predictor (issue 17): OpenCV with prefetch and the exact pipeline give the same encoder inputs
and the same predictions; `auto` chooses OpenCV on a CPU encoder; the CUDA path runs where a GPU is."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgjnd.errors import UsageError
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.pairs import PairMaker, prefetched
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig, RoundPlan, plan_rounds
from sgjnd.runtime.search import SearchConfig
from sgjnd.spec import ModelSpec

SPEC = ModelSpec(name="t", patch_size=48, feature_dim=8)
QFS = [1, 9, 10, 33, 50, 51, 77, 90, 99, 100]  # more than one chunk of the exact pipeline


def _image(photo: Path, maker: PairMaker):
    return maker.grid(cv2.imread(str(photo), cv2.IMREAD_COLOR), max_patches=5)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_exact_and_opencv_trials_give_identical_encoder_inputs(photos: list[Path], device: str | None) -> None:
    if device is not None:
        pytest.importorskip("torch", reason="the tensor path needs torch")
    opencv, exact = PairMaker(SPEC), PairMaker(SPEC, trials="exact", device=device)
    image = _image(photos[3], opencv)
    for qf, a, b in zip(QFS, opencv.distorted_stream(image, QFS), exact.distorted_stream(image, QFS), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"QF {qf}")


def test_prefetched_trials_come_in_order_and_equal_the_serial_ones(photos: list[Path]) -> None:
    serial, ahead = PairMaker(SPEC), PairMaker(SPEC, prefetch=True)
    image = _image(photos[0], serial)
    for a, b in zip(serial.distorted_stream(image, QFS), ahead.distorted_stream(image, QFS), strict=True):
        np.testing.assert_array_equal(a, b)


def test_prefetch_works_ahead_raises_in_place_and_stops_early() -> None:
    made: list[int] = []
    gate = threading.Event()

    def make(i: int) -> int:
        if i == 1:
            gate.wait(5)  # item 1 is made while the caller still holds item 0
        made.append(i)
        if i == 3:
            raise ValueError("bad item 3")
        return i * 10

    stream = prefetched(make, range(6))
    assert next(stream) == 0
    gate.set()
    assert next(stream) == 10 and next(stream) == 20
    with pytest.raises(ValueError, match="bad item 3"):
        next(stream)
    stream.close()
    assert max(made) <= 4  # at most one item beyond the failure was started, nothing after the stop

    early = prefetched(lambda i: i, range(1000))
    assert next(early) == 0
    early.close()  # the worker's pending work is cancelled; nothing hangs


def test_predictions_are_the_same_whichever_way_trials_are_made(tiny_onnx_dir: Path, photos: list[Path]) -> None:
    search = SearchConfig(strategy="coarse-to-fine")
    results = {}
    with open_model("onnxruntime", tiny_onnx_dir) as models:
        for name, config in {
            "opencv-serial": PredictConfig(search=search, max_patches=4, jpeg="opencv", prefetch_jpeg=False),
            "opencv-prefetch": PredictConfig(search=search, max_patches=4, jpeg="opencv"),
            "exact": PredictConfig(search=search, max_patches=4, jpeg="exact"),
        }.items():
            results[name] = JNDPredictor(models, config).predict(photos[1])
    base = results["opencv-serial"]
    for name, result in results.items():
        assert result.jnd_qf == base.jnd_qf, name
        assert result.scores == base.scores, name  # identical pixels in, identical floats out


def test_auto_chooses_opencv_for_a_cpu_encoder(tiny_onnx_dir: Path) -> None:
    """On a CPU, auto keeps OpenCV; exact runs where both graphs take tensors (ONNX Runtime's CPU provider does,
    through I/O binding, where torch is installed). Every CUDA case: tests/runtime/test_device_rounds.py."""
    pytest.importorskip("torch", reason="device tensors are torch tensors")
    with open_model("onnxruntime", tiny_onnx_dir) as models:
        assert plan_rounds(models, "auto") == RoundPlan("opencv", None, False)
        assert plan_rounds(models, "exact") == RoundPlan("exact", None, False)  # numpy on a CPU
        assert plan_rounds(models, "exact", "device") == RoundPlan("exact", "cpu", True)
        assert plan_rounds(models, "opencv") == RoundPlan("opencv", None, False)


def test_bad_trial_settings_are_refused() -> None:
    with pytest.raises(UsageError, match="'opencv' or 'exact'"):
        PairMaker(SPEC, trials="turbo")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="needs trials='exact'"):
        PairMaker(SPEC, device="cuda")
    with pytest.raises(UsageError, match="jpeg trials must be one of"):
        PredictConfig(jpeg="gpu")  # type: ignore[arg-type]


def test_exact_trials_on_cuda_equal_opencv(photos: list[Path]) -> None:
    torch = pytest.importorskip("torch", reason="the CUDA path needs torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch: the GPU path of the exact JPEG pipeline runs on a GPU machine")
    opencv, exact = PairMaker(SPEC), PairMaker(SPEC, trials="exact", device="cuda")
    image = _image(photos[2], opencv)
    for a, b in zip(opencv.distorted_stream(image, QFS), exact.distorted_stream(image, QFS), strict=True):
        np.testing.assert_array_equal(a, b)
