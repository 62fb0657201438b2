"""Device-resident search rounds (sgjnd.runtime.device_rounds): the predictor's GPU path, run here on CPU tensors.

The path is the same code on any torch device: the image copied to the device once, the exact JPEG trials made
there, features kept there between encoder and head, only q and w copied back per round. On a CPU it runs with
the PyTorch backend and, through I/O binding, ONNX Runtime's CPU provider, and with the fake TensorRT of
test_trt_backend.py (host memory as "device" memory); each must give exactly the scores of the host path (same
pixels, same batches). The CUDA checks at the end run where a GPU is present.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from runtime.test_backend_contract import FAKE_TRT, write_fake_engines  # noqa: E402
from runtime.test_trt_backend import FakeCudaApi  # noqa: E402

from sgjnd.errors import UsageError  # noqa: E402
from sgjnd.runtime import cuda  # noqa: E402
from sgjnd.runtime.backends.base import ModelBackends  # noqa: E402
from sgjnd.runtime.backends.registry import open_model  # noqa: E402
from sgjnd.runtime.decode import decode_image  # noqa: E402
from sgjnd.runtime.device_rounds import encoder_input_on_device, shared_tensor_device  # noqa: E402
from sgjnd.runtime.patches import normalize_patches  # noqa: E402
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig, RoundPlan, plan_rounds  # noqa: E402
from sgjnd.runtime.search import SearchConfig  # noqa: E402

CASES = ["torch-f32in", "torch-u8in", "onnxruntime-u8in", "onnxruntime-f32in", "tensorrt-fake-u8in"]


@pytest.fixture(params=CASES)
def models(
    request: pytest.FixtureRequest,
    tiny_checkpoint: Path,
    tiny_onnx_dir: Path,
    tiny_float_onnx_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ModelBackends]:
    case: str = request.param
    if case.startswith("torch"):
        opened = open_model("torch", tiny_checkpoint, threads=1,
                            encoder_input="uint8" if case.endswith("u8in") else "float32")
    elif case.startswith("onnxruntime"):
        folder = tiny_onnx_dir if case.endswith("u8in") else tiny_float_onnx_dir
        opened = open_model("onnxruntime", folder, threads=1)
    else:
        monkeypatch.setitem(sys.modules, "tensorrt", FAKE_TRT)
        monkeypatch.setattr(cuda, "load_cuda", lambda allocator="auto": FakeCudaApi())
        write_fake_engines(tiny_onnx_dir, tmp_path, "fp32")
        opened = open_model("tensorrt", tmp_path)
    with opened as entered:
        yield entered


@pytest.mark.parametrize(("strategy", "pad"), [("full", False), ("coarse-to-fine", True), ("bisect", False)])
def test_device_rounds_give_the_host_paths_scores(
    models: ModelBackends, photos: list[Path], strategy: str, pad: bool
) -> None:
    search = SearchConfig(strategy=strategy)  # type: ignore[arg-type]
    host = JNDPredictor(models, PredictConfig(search=search, max_patches=3, jpeg="opencv", pad_last_batch=pad))
    device = JNDPredictor(models, PredictConfig(search=search, max_patches=3, rounds="device", pad_last_batch=pad))
    assert host.device_rounds is None and device.device_rounds is not None and device.device_rounds.device == "cpu"
    for photo in photos[:2]:
        decoded = decode_image(photo)
        want, got = host.predict(decoded), device.predict(decoded)
        assert got.scores == want.scores  # exact pixels, same batch rows: bit-identical S(QF)
        assert (got.jnd_qf, got.recommended_qf, got.encoder_passes) == (want.jnd_qf, want.recommended_qf,
                                                                         want.encoder_passes)
        assert [(p.q, p.w) for p in got.patches] == [(p.q, p.w) for p in want.patches]
        # what the host hands over: every encoder batch on the host path, the image once on the device path
        per_patch = 3 * 64 * 64 * (1 if models.model.encoder_input == "uint8" else 4)
        assert want.host_input_bytes == want.encoder_passes * per_patch
        assert got.host_input_bytes == decoded.bgr.nbytes  # (these photos need no padding)


def test_on_a_cpu_rounds_stay_on_the_host_unless_forced(models: ModelBackends) -> None:
    # the array pipeline is slower than libjpeg on a CPU
    assert plan_rounds(models, "auto") == RoundPlan("opencv", None, False)
    assert plan_rounds(models, "opencv") == RoundPlan("opencv", None, False)
    assert shared_tensor_device(models) == "cpu"
    # numpy: torch's CPU kernels are slower for it
    assert plan_rounds(models, "exact") == RoundPlan("exact", None, False)
    assert plan_rounds(models, "auto", "device") == RoundPlan("exact", "cpu", True)
    assert JNDPredictor(models, PredictConfig(jpeg="exact")).device_rounds is None
    assert JNDPredictor(models, PredictConfig(rounds="device")).device_rounds is not None
    with pytest.raises(UsageError, match="not 'opencv'"):
        JNDPredictor(models, PredictConfig(jpeg="opencv", rounds="device"))
    with pytest.raises(UsageError, match="rounds must be one of"):
        PredictConfig(rounds="gpu")  # type: ignore[arg-type]


def test_a_backend_without_device_tensors_keeps_the_host_path(tiny_onnx_dir: Path, photos: list[Path]) -> None:
    pytest.importorskip("openvino", reason="the openvino backend needs openvino")
    with open_model("openvino", tiny_onnx_dir, threads=1) as models:
        assert shared_tensor_device(models) is None
        assert plan_rounds(models, "exact") == RoundPlan("exact", None, False)  # numpy trials, host rounds
        with pytest.raises(UsageError, match="needs both graphs to take torch tensors on one device"):
            JNDPredictor(models, PredictConfig(rounds="device"))
        predictor = JNDPredictor(models, PredictConfig(max_patches=2, jpeg="exact"))
        assert predictor.device_rounds is None
        host = JNDPredictor(models, PredictConfig(max_patches=2, jpeg="opencv"))
        assert predictor.predict(photos[0]).scores == host.predict(photos[0]).scores


class _Runner:
    """A runner stand-in that only reports where it runs on tensors."""

    def __init__(self, device: str | None) -> None:
        self.tensor_device = device
        self.max_batch_size, self.preferred_batch_size, self.description = None, 4, "stand-in"

    def infer(self, feeds: object) -> dict[str, np.ndarray]:
        raise AssertionError("not called")

    def infer_device(self, feeds: object) -> dict[str, object]:
        raise AssertionError("not called")


@pytest.mark.parametrize(
    ("encoder", "head", "choice", "want"),
    [
        ("cuda:0", "cuda:0", "auto", ("exact", "cuda:0", True)),  # a GPU: trials and rounds there
        ("cuda:0", None, "auto", ("exact", "cuda:0", False)),  # trials on the GPU, rounds on the host
        ("cuda", "cuda:0", "auto", ("exact", "cuda", True)),  # torch's "cuda" is device 0
        ("cuda:0", "cuda:1", "exact", ("exact", "cuda:0", False)),
        ("cpu", "cpu", "auto", ("opencv", None, False)),
        ("cpu", "cpu", "exact", ("exact", None, False)),
        (None, None, "exact", ("exact", None, False)),
        ("cuda:0", "cuda:0", "opencv", ("opencv", None, False)),
    ],
)
def test_jpeg_trials_and_rounds_follow_where_the_graphs_run(
    encoder: str | None, head: str | None, choice: str, want: tuple[str, str | None, bool]
) -> None:
    from sgjnd.spec import ModelSpec

    models = ModelBackends(ModelSpec("x", 64, 128), _Runner(encoder), _Runner(head))  # type: ignore[arg-type]
    assert plan_rounds(models, choice) == RoundPlan(*want)
    assert not plan_rounds(models, choice, "host").on_device


@pytest.mark.parametrize("channel_order", ["rgb", "bgr"])
def test_normalising_on_the_device_equals_the_host(channel_order: str) -> None:
    from sgjnd.spec import ModelSpec

    spec = ModelSpec("x", 16, 8, channel_order=channel_order)  # type: ignore[arg-type]
    pixels = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    got = encoder_input_on_device(torch.from_numpy(pixels), spec).numpy()
    np.testing.assert_array_equal(got, normalize_patches(pixels, spec))
    u8 = encoder_input_on_device(torch.from_numpy(pixels), spec.with_encoder_input("uint8"))
    assert u8.dtype == torch.uint8 and np.array_equal(u8.numpy(), pixels)


def test_device_batches_are_padded_like_the_host(tiny_checkpoint: Path) -> None:
    from sgjnd.runtime.batching import run_batched

    with open_model("torch", tiny_checkpoint, threads=1) as models:
        f = np.random.default_rng(1).standard_normal((7, 128), dtype=np.float32)
        feeds = {"f_ref": f, "f_dis": f[::-1].copy()}
        for pad in (False, True):
            want = run_batched(models.head, feeds, 3, pad=pad)
            tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
            got = run_batched(models.head, tensors, 3, pad=pad, device=True)
            for name in ("q", "w"):
                assert got[name].shape[0] == 7
                np.testing.assert_array_equal(got[name].numpy(), want[name])


# -- on a GPU ---------------------------------------------------------------------------------------------------------
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: runs on a machine with an NVIDIA GPU")


@needs_cuda
def test_torch_cuda_rounds_stay_on_the_device_and_match_the_cpu(tiny_checkpoint: Path, photos: list[Path]) -> None:
    """PyTorch on CUDA: uint8 input by default, trials and rounds on the GPU, the CPU host path's JND."""
    with open_model("torch", tiny_checkpoint) as cpu, open_model("torch", tiny_checkpoint, device="cuda") as gpu:
        assert gpu.model.encoder_input == "uint8" and shared_tensor_device(gpu) in ("cuda", "cuda:0")
        device = JNDPredictor(gpu, PredictConfig(max_patches=4))
        assert device.device_rounds is not None  # auto: exact trials on the GPU, rounds there
        host = JNDPredictor(cpu, PredictConfig(max_patches=4, jpeg="opencv"))
        for photo in photos[:3]:
            got, want = device.predict(photo), host.predict(photo)
            assert got.encoder_passes == want.encoder_passes
            assert max(abs(got.scores[k] - want.scores[k]) for k in want.scores) < 1e-4
            assert got.jnd_qf == want.jnd_qf


@needs_cuda
def test_onnxruntime_cuda_rounds_stay_on_the_device(tiny_onnx_dir: Path, photos: list[Path]) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has no CUDA provider: pip install onnxruntime-gpu")
    with open_model("onnxruntime", tiny_onnx_dir, providers=("cuda",)) as gpu, \
            open_model("onnxruntime", tiny_onnx_dir, providers=("cpu",)) as cpu:
        assert shared_tensor_device(gpu) == "cuda:0"
        device = JNDPredictor(gpu, PredictConfig(max_patches=4))
        assert device.device_rounds is not None
        host = JNDPredictor(cpu, PredictConfig(max_patches=4, jpeg="opencv"))
        got, want = device.predict(photos[0]), host.predict(photos[0])
        assert max(abs(got.scores[k] - want.scores[k]) for k in want.scores) < 1e-4 and got.jnd_qf == want.jnd_qf
