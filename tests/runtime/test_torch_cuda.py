"""The PyTorch reference on CUDA computes in strict FP32 (no TF32) and matches the CPU; the TF32 switch is scoped to
the call. The CUDA comparison runs on a GPU machine; the flag handling runs anywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sgjnd.runtime.backends.torch_backend import _strict_fp32  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo" / "sgjnd_effl0_proxy.pt"


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_tf32_is_off_inside_the_call_and_restored_after(device: str) -> None:
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32)  # torch's flags are properties: monkeypatch cannot restore them
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        with _strict_fp32(torch.device(device)):
            inside = (cudnn.allow_tf32, matmul.allow_tf32)
        assert inside == ((False, False) if device == "cuda" else (True, True))
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (True, True)
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: runs on a machine with an NVIDIA GPU")
def test_cuda_reference_matches_cpu_within_fp32_tolerance(photos: list[Path]) -> None:
    from sgjnd.calibration.reader import ReaderConfig, read_calibration_set
    from sgjnd.compare.tensors import compare_outputs, tolerances_for
    from sgjnd.runtime.backends.registry import open_model

    assert torch.backends.cudnn.allow_tf32  # torch's default: the backend must turn TF32 off itself
    with (
        open_model("torch", DEMO) as cpu,
        open_model("torch", DEMO, device="cuda", encoder_input="float32") as gpu,
        open_model("torch", DEMO, device="cuda") as gpu_pixels,
    ):
        assert gpu_pixels.model.encoder_input == "uint8"  # the default on CUDA: normalised on the device
        patches = read_calibration_set(photos, cpu.model, ReaderConfig(num_patches=32), progress=False)
        ref = cpu.encoder.infer({"patches": patches.encoder_inputs(cpu.model)})
        got = gpu.encoder.infer({"patches": patches.encoder_inputs(gpu.model)})
        got_pixels = gpu_pixels.encoder.infer({"patches": patches.encoder_inputs(gpu_pixels.model)})
    for outputs in (got, got_pixels):
        results = compare_outputs(ref, outputs, tolerances_for("fp32"))
        assert all(r.passed for r in results), [r.line() for r in results]
        assert np.allclose(ref["features"], outputs["features"], atol=1e-4)
