"""The checks every backend that runs the tiny model's graphs must pass (plain helpers for the backend tests)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from sgjnd.errors import BackendError, UsageError
from sgjnd.runtime.backends.base import ModelBackends, Runner
from sgjnd.spec import ModelSpec


def tiny_patches(n: int, seed: int = 0, *, spec: ModelSpec | None = None) -> np.ndarray:
    """``n`` random 64 px patches (the tiny model's input) as ``spec``'s encoder takes them: (n, 64, 64, 3) uint8
    BGR pixels for a uint8-input encoder (what ``sgjnd export`` makes by default, and the default when ``spec`` is
    None), normalised (n, 3, 64, 64) float32 for a float one."""
    rng = np.random.default_rng(seed)
    if spec is None or spec.encoder_input == "uint8":
        return rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    return rng.standard_normal((n, 3, 64, 64), dtype=np.float32)


def check_runs_both_graphs_at_any_batch(models: ModelBackends, description: str) -> None:
    """The tiny model on a backend: spec and limits from the sidecars, both graphs at batches 1..64, valid q and w,
    the backend's description, and the two refusals every backend shares (too large a batch, a wrong shape)."""
    assert models.model.name == "sgjnd_tiny" and models.weights == "UNTRAINED: seed 0"
    assert models.encoder.max_batch_size == 64 and models.encoder.preferred_batch_size == 16
    with models:
        for n in (1, 5, 64):
            features = models.encoder.infer({"patches": tiny_patches(n, spec=models.model)})["features"]
            assert features.shape == (n, 128) and features.dtype == np.float32
        out = models.head.infer({"f_ref": features, "f_dis": features[::-1].copy()})
        assert out["q"].shape == (64,) and out["w"].shape == (64,)
        assert np.all((out["q"] > 0) & (out["q"] < 1)) and np.all(out["w"] > 0)
        assert models.encoder.description == description
        with pytest.raises(UsageError, match="exceeds the artifact's maximum batch 64"):
            models.encoder.infer({"patches": tiny_patches(65, spec=models.model)})
        with pytest.raises(UsageError, match="must have shape"):
            small = tiny_patches(2, spec=models.model)
            models.encoder.infer({"patches": small[:, :32, :32] if small.dtype == np.uint8 else small[:, :, :32, :32]})


# -- the contract every backend x precision passes against the PyTorch reference (test_backend_contract.py)


def check_outputs_at_batches(models: ModelBackends, batches: Sequence[int]) -> None:
    """Both graphs (entered) at each batch size: output names, shapes and dtypes of the spec, finite values, q in
    (0, 1) and w > 0 (the head's sigmoid and softplus)."""
    spec = models.model
    for n in batches:
        features = models.encoder.infer({"patches": tiny_patches(n, seed=n, spec=spec)})["features"]
        assert features.shape == (n, spec.feature_dim) and features.dtype == np.float32, (n, features.shape)
        assert np.isfinite(features).all()
        out = models.head.infer({"f_ref": features, "f_dis": features[::-1].copy()})
        assert set(out) == {"q", "w"}
        for name in ("q", "w"):
            assert out[name].shape == (n,) and out[name].dtype == np.float32, (name, out[name].shape, out[name].dtype)
        assert np.all((out["q"] > 0) & (out["q"] < 1)) and np.all(out["w"] > 0)


def check_batch_independence(models: ModelBackends, patches: np.ndarray, atol: float) -> None:
    """Rows give the same outputs whatever batch they come in: all at once, one by one, and in batches of 3 (the
    last one short); ``atol`` is relative to the largest feature (kernels may change with the batch size)."""
    whole = models.encoder.infer({"patches": patches})["features"]
    for size in (1, 3):
        parts = [
            models.encoder.infer({"patches": patches[i : i + size]})["features"]
            for i in range(0, len(patches), size)
        ]
        np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=atol * np.abs(whole).max())
    ref, dis = whole, whole[::-1].copy()
    head = models.head.infer({"f_ref": ref, "f_dis": dis})
    for i in (0, len(ref) - 1):
        row = models.head.infer({"f_ref": ref[i : i + 1], "f_dis": dis[i : i + 1]})
        for name in ("q", "w"):
            np.testing.assert_allclose(row[name], head[name][i : i + 1], rtol=0, atol=atol * np.abs(head[name]).max())


def check_description(models: ModelBackends, backend: str, precision: str) -> None:
    """Both runners' descriptions name the backend and the precision (as a word: ``int8`` is not ``int8-ort``)."""
    for runner in (models.encoder, models.head):
        text = runner.description
        assert re.search(rf"(?<![\w-]){re.escape(backend)}(?![\w-])", text), (backend, text)
        assert re.search(rf"(?<![\w-]){re.escape(precision)}(?![\w-])", text), (precision, text)


def check_refuses_wrong_inputs(models: ModelBackends) -> None:
    """Feeds of the wrong shape, dtype, name or batch are refused with a UsageError that names what was expected, and
    the runner still works afterwards."""
    spec = models.model
    s, f = spec.patch_size, spec.feature_dim
    if spec.encoder_input == "uint8":
        encoder_cases = [
            ({"patches": np.zeros((2, s // 2, s // 2, 3), np.uint8)}, "must have shape"),
            ({"patches": np.zeros((2, 3, s, s), np.uint8)}, "must have shape"),  # NCHW for NHWC
            ({"patches": np.zeros((3, s, s), np.uint8)}, "must have shape"),
            ({"patches": np.zeros((2, s, s, 3), np.float32)}, "must be uint8"),  # normalised floats for pixels
            ({"images": np.zeros((2, s, s, 3), np.uint8)}, r"expects inputs \['patches'\]"),
        ]
    else:
        encoder_cases = [
            ({"patches": np.zeros((2, 3, s // 2, s // 2), np.float32)}, "must have shape"),
            ({"patches": np.zeros((2, s, s, 3), np.float32)}, "must have shape"),  # NHWC for NCHW
            ({"patches": np.zeros((3, s, s), np.float32)}, "must have shape"),
            ({"patches": np.zeros((2, 3, s, s), np.float64)}, "must be float32"),
            ({"patches": np.zeros((2, 3, s, s), np.uint8)}, "must be float32"),  # pixels for normalised floats
            ({"images": np.zeros((2, 3, s, s), np.float32)}, r"expects inputs \['patches'\]"),
        ]
    cases: list[tuple[Runner, dict[str, np.ndarray], str]] = [
        *((models.encoder, feeds, message) for feeds, message in encoder_cases),
        (models.head, {"f_ref": np.zeros((2, f), np.float32), "f_dis": np.zeros((2, f + 1), np.float32)},
         "must have shape"),
        (models.head, {"f_ref": np.zeros((2, f), np.float32), "f_dis": np.zeros((3, f), np.float32)},
         "must share the batch size"),
    ]
    limit = models.encoder.max_batch_size
    if limit is not None:
        too_many = {"patches": tiny_patches(limit + 1, spec=spec)}
        cases.append((models.encoder, too_many, f"exceeds the artifact's maximum batch {limit}"))
    for runner, feeds, message in cases:
        with pytest.raises(UsageError, match=message):
            runner.infer(feeds)
    assert models.encoder.infer({"patches": tiny_patches(1, spec=spec)})["features"].shape == (1, f)


def check_device_tensors(models: ModelBackends, patches: np.ndarray) -> None:
    """Where a runner runs on torch tensors (``tensor_device``), ``infer_device`` gives ``infer``'s outputs as
    tensors on that device (bit for bit on a CPU: the same kernels on the same memory), and refuses numpy arrays,
    tensors of the wrong dtype and a missing input; where it does not, ``infer_device`` says so."""
    torch = pytest.importorskip("torch")
    from sgjnd.runtime.backends.base import tensor_device_of

    for runner, feeds in (
        (models.encoder, {"patches": patches}),
        (models.head, {"f_ref": patches_features(models, patches), "f_dis": patches_features(models, patches[::-1])}),
    ):
        device = tensor_device_of(runner)
        if device is None:
            with pytest.raises(BackendError, match="cannot run on device tensors"):
                runner.infer_device({k: torch.from_numpy(v) for k, v in feeds.items()})  # type: ignore[attr-defined]
            continue
        want = runner.infer(feeds)
        got = runner.infer_device({k: torch.from_numpy(v.copy()).to(device) for k, v in feeds.items()})  # type: ignore[attr-defined]
        assert set(got) == set(want)
        for name, tensor in got.items():
            assert str(tensor.device).split(":")[0] == device.split(":")[0] and tensor.dtype == torch.float32
            np.testing.assert_array_equal(tensor.cpu().numpy(), want[name])
        name, array = next(iter(feeds.items()))
        wrong = {**{k: torch.from_numpy(v.copy()).to(device) for k, v in feeds.items()}}
        with pytest.raises(UsageError, match="must be a torch tensor"):
            runner.infer_device({**wrong, name: array})  # type: ignore[attr-defined]
        with pytest.raises(UsageError, match="must be"):
            runner.infer_device({**wrong, name: wrong[name].to(torch.float64)})  # type: ignore[attr-defined]
        with pytest.raises(UsageError, match="expects inputs"):
            runner.infer_device({k: v for k, v in wrong.items() if k != name})  # type: ignore[attr-defined]
        # the host path still works after the device path (a backend that bound tensor memory must rebind its own)
        np.testing.assert_array_equal(runner.infer(feeds)[next(iter(want))], want[next(iter(want))])


def patches_features(models: ModelBackends, patches: np.ndarray) -> np.ndarray:
    """Encoder features of ``patches`` (host path), contiguous."""
    return np.ascontiguousarray(models.encoder.infer({"patches": np.ascontiguousarray(patches)})["features"])


def check_close_and_reopen(
    open_models: Callable[[], ModelBackends], freed: Callable[[ModelBackends], bool], patches: np.ndarray
) -> None:
    """Leaving ``with`` frees what loading took (``freed`` says so for the backend) and refuses further calls; the
    same object entered again, and a second ``open``, give the same outputs as the first."""
    models = open_models()
    with models:
        assert not freed(models)
        first = models.encoder.infer({"patches": patches})["features"]
    assert freed(models)
    for runner, feeds in ((models.encoder, {"patches": patches}), (models.head, {"f_ref": first, "f_dis": first})):
        with pytest.raises(BackendError, match="not loaded"):
            runner.infer(feeds)
    with models:  # entered again
        np.testing.assert_array_equal(models.encoder.infer({"patches": patches})["features"], first)
    assert freed(models)
    again = open_models()
    with again:
        np.testing.assert_array_equal(again.encoder.infer({"patches": patches})["features"], first)
    assert freed(again)
