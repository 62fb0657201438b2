"""The torch backend: opens a checkpoint, shares one network between the graphs, checks feeds, matches the module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sgjnd.errors import BackendError, BackendUnavailable, SpecError, UsageError  # noqa: E402
from sgjnd.model import SGJND, create_model, load_checkpoint, save_checkpoint  # noqa: E402
from sgjnd.runtime.backends import torch_backend  # noqa: E402
from sgjnd.runtime.backends.registry import backend_class, open_model  # noqa: E402
from sgjnd.runtime.backends.torch_backend import TorchBackend  # noqa: E402

WEIGHTS = "UNTRAINED: deterministic random initialisation from seed 0"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("torch_backend") / "tiny.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=0), path, weights=WEIGHTS)
    return path


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> SGJND:
    return load_checkpoint(checkpoint)


def patches(m: int, s: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((m, 3, s, s), dtype=np.float32)


def test_registry_finds_the_backend() -> None:
    assert backend_class("torch") is TorchBackend
    assert TorchBackend.name == "torch"


def test_outputs_match_the_module(checkpoint: Path, reference: SGJND) -> None:
    s, f = reference.spec.patch_size, reference.spec.feature_dim
    ref, dis = patches(5, s, seed=1), patches(5, s, seed=2)
    with open_model("torch", checkpoint) as model:
        assert model.model == reference.spec
        assert model.weights == WEIGHTS
        f_ref = model.encoder.infer({"patches": ref})["features"]
        f_dis = model.encoder.infer({"patches": dis})["features"]
        out = model.head.infer({"f_ref": f_ref, "f_dis": f_dis})
    assert f_ref.shape == (5, f) and f_ref.dtype == np.float32
    assert out["q"].shape == out["w"].shape == (5,)
    assert out["q"].dtype == out["w"].dtype == np.float32
    with torch.inference_mode():
        expected_ref = reference.encoder(torch.from_numpy(ref))
        q, w = reference.head(expected_ref, reference.encoder(torch.from_numpy(dis)))
    np.testing.assert_allclose(f_ref, expected_ref.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["q"], q.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["w"], w.numpy(), rtol=1e-6, atol=1e-7)


def test_graphs_share_one_network_and_release_it(checkpoint: Path) -> None:
    model = TorchBackend.open_model(checkpoint)
    assert not torch_backend._cache
    with model:
        enc, head = model.encoder, model.head
        assert isinstance(enc, TorchBackend) and isinstance(head, TorchBackend)
        assert enc._net is head._net is not None
        assert len(torch_backend._cache) == 1
    assert not torch_backend._cache


def test_feeds_are_checked(checkpoint: Path, reference: SGJND) -> None:
    s, f = reference.spec.patch_size, reference.spec.feature_dim
    good = patches(2, s)
    with open_model("torch", checkpoint) as model:
        with pytest.raises(UsageError, match="must be float32, got float64"):
            model.encoder.infer({"patches": good.astype(np.float64)})
        with pytest.raises(UsageError, match=rf"must have shape \('batch', 3, {s}, {s}\), got \(2, 3, 32, 32\)"):
            model.encoder.infer({"patches": patches(2, 32)})
        with pytest.raises(UsageError, match=r"expects inputs \['patches'\], got \['images'\]"):
            model.encoder.infer({"images": good})
        with pytest.raises(UsageError, match=r"expects inputs \['f_dis', 'f_ref'\], got \['f_ref'\]"):
            model.head.infer({"f_ref": np.zeros((2, f), np.float32)})
        with pytest.raises(UsageError, match="share the batch size"):
            model.head.infer({"f_ref": np.zeros((2, f), np.float32), "f_dis": np.zeros((3, f), np.float32)})
        with pytest.raises(UsageError, match="must be a numpy array"):
            model.encoder.infer({"patches": torch.from_numpy(good)})


def test_batch_of_one_and_read_only_input(checkpoint: Path, reference: SGJND) -> None:
    x = patches(1, reference.spec.patch_size)
    x.setflags(write=False)
    threads = torch.get_num_threads()
    try:
        with open_model("torch", checkpoint, threads=1) as model:
            assert torch.get_num_threads() == 1
            features = model.encoder.infer({"patches": x})["features"]
    finally:
        torch.set_num_threads(threads)  # the option is process-wide; leave other tests as they were
    assert features.shape == (1, reference.spec.feature_dim)


def test_infer_outside_with_is_refused(checkpoint: Path, reference: SGJND) -> None:
    model = open_model("torch", checkpoint)
    with pytest.raises(BackendError, match="use it in a `with` block"):
        model.encoder.infer({"patches": patches(1, reference.spec.patch_size)})


def test_construction_reads_nothing(tmp_path: Path, reference: SGJND) -> None:
    spec = reference.spec
    backend = TorchBackend(tmp_path / "missing.pt", spec, spec.encoder_graph(), device="cpu", threads=2)
    assert backend.preferred_batch_size == 16
    assert "cpu" in backend.description and "2 thread(s)" in backend.description and "encoder" in backend.description
    with pytest.raises(SpecError, match="does not exist"):
        backend.__enter__()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"providers": ["CPU"]}, r"unknown option\(s\) \['providers'\] for the torch backend"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"device": "gpu7"}, "device must be a torch device"),
    ],
)
def test_bad_options(checkpoint: Path, options: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        open_model("torch", checkpoint, **options)


def test_only_fp32(checkpoint: Path) -> None:
    with pytest.raises(UsageError, match="fp32 only, got precision 'fp16'"):
        open_model("torch", checkpoint, precision="fp16")


def test_directory_is_refused(checkpoint: Path) -> None:
    with pytest.raises(UsageError, match=r"opens a checkpoint file, got the directory .*tiny\.pt: pass one of them"):
        open_model("torch", checkpoint.parent)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_a_gpu(checkpoint: Path) -> None:
    with pytest.raises(BackendUnavailable, match="sees no CUDA device"), open_model("torch", checkpoint, device="cuda"):
        pass
    assert not torch_backend._cache


def test_tampered_checkpoint_is_refused_when_loading(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=0), path, weights=WEIGHTS)
    model = open_model("torch", path)  # reads only the sidecar
    other = tmp_path / "other.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=1), other, weights=WEIGHTS)
    os.replace(other, path)
    with pytest.raises(SpecError, match="does not match its sidecar"), model:
        pass
    assert not torch_backend._cache
