"""The ONNX Runtime backend: opens a model directory, runs both graphs, chooses providers by an ordered list, sets
session options deliberately, and refuses directories whose sidecars do not match their graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backend_contract import check_runs_both_graphs_at_any_batch, tiny_patches

ort = pytest.importorskip("onnxruntime")

from sgjnd.errors import BackendUnavailable, SpecError, UsageError  # noqa: E402
from sgjnd.runtime.backends.ort import OrtBackend, compiling_providers, resolve_providers  # noqa: E402
from sgjnd.runtime.backends.registry import backend_class, open_model  # noqa: E402

EXPORT_HINT = "sgjnd export CHECKPOINT -o"


@pytest.fixture(scope="module")
def exports(tiny_onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Model directories of the tiny model exported from seeds 0 and 1 (read-only; tests copy before editing)."""
    from sgjnd.export.onnx import onnx_from_checkpoint
    from sgjnd.model import create_model, save_checkpoint

    root = tmp_path_factory.mktemp("ort_seed1")
    ckpt = root / "tiny1.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=1), ckpt, weights="UNTRAINED: seed 1")
    return tiny_onnx_dir, onnx_from_checkpoint(ckpt, root / "model").out_dir


@pytest.fixture
def model_dir(exports: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the seed-0 model directory."""
    return Path(shutil.copytree(exports[0], tmp_path / "model"))


def _load(model_dir: Path, **options: Any) -> None:
    """Open and load both graphs (where the hash and I/O checks run), then release them."""
    with open_model("onnxruntime", model_dir, **options):
        pass


def test_registry_finds_the_backend() -> None:
    assert backend_class("onnxruntime") is OrtBackend


def test_runs_both_graphs_at_any_batch(exports: tuple[Path, Path]) -> None:
    check_runs_both_graphs_at_any_batch(open_model("onnxruntime", exports[0]), "onnxruntime CPU fp32")


def test_session_options_are_set_deliberately(exports: tuple[Path, Path]) -> None:
    with open_model("onnxruntime", exports[0], threads=1) as models:
        options = models.encoder.session.get_session_options()  # type: ignore[attr-defined]
        assert options.intra_op_num_threads == 1
        assert options.inter_op_num_threads == 1
        assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with open_model("onnxruntime", exports[0], graph_optimization="basic") as models:
        options = models.head.session.get_session_options()  # type: ignore[attr-defined]
        assert options.intra_op_num_threads == 0  # ONNX Runtime's own choice
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


@pytest.mark.parametrize("bad", [{"threads": 0}, {"threads": True}, {"graph_optimization": "max"}])
def test_bad_options_are_refused(exports: tuple[Path, Path], bad: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        open_model("onnxruntime", exports[0], **bad)


# -- providers -------------------------------------------------------------------------------------------------


def test_provider_aliases_and_names_any_case() -> None:
    cpu = "CPUExecutionProvider"
    for name in ("cpu", "CPU", "CPUExecutionProvider", "cpuexecutionprovider"):
        assert resolve_providers([name]) == [cpu]
    available = [*ort.get_available_providers()]
    assert resolve_providers(["cuda", "CPU"], available=["CUDAExecutionProvider", cpu]) == [
        "CUDAExecutionProvider", cpu]
    assert resolve_providers(("TensorRT", "cuda", "cpu"), available=["TensorrtExecutionProvider",
                                                                     "CUDAExecutionProvider", cpu]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", cpu]
    assert cpu in available


def test_unknown_provider_lists_the_available_ones(exports: tuple[Path, Path]) -> None:
    with pytest.raises(BackendUnavailable) as info:
        resolve_providers(["cpu", "warp-drive"])
    message = str(info.value)
    assert "unknown ONNX Runtime execution provider 'warp-drive'" in message
    for name in ort.get_available_providers():
        assert name in message
    # Through the backend: refused when the session is made, with the same message.
    with pytest.raises(BackendUnavailable, match=r"available here: .*CPUExecutionProvider"):
        _load(exports[0], providers=("warp-drive",))


def test_unavailable_provider_says_how_to_get_it() -> None:
    with pytest.raises(BackendUnavailable) as info:
        resolve_providers(["cuda", "cpu"], available=["CPUExecutionProvider"])
    message = str(info.value)
    assert "'cuda' (CUDAExecutionProvider) is not available" in message
    assert "available: CPUExecutionProvider" in message and "onnxruntime-gpu" in message


@pytest.mark.parametrize("providers", [(), ("cpu", "CPUExecutionProvider")])
def test_empty_or_repeated_provider_lists_are_refused(providers: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        resolve_providers(providers)


# -- sidecar and graph checks ----------------------------------------------------------------------------------


def _edit_sidecar(path: Path, **artifact: object) -> None:
    data = json.loads(path.read_text())
    data["artifact"].update(artifact)
    path.write_text(json.dumps(data))


def test_missing_directory_names_the_export_command(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=f"does not exist. Create it with: {EXPORT_HINT}"):
        open_model("onnxruntime", tmp_path / "nowhere")


def test_missing_graph_lists_the_precisions_present(model_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"no fp16 encoder graph \(expected encoder.fp16.onnx; precisions present: "
                       r"fp32\).*sgjnd calibrate"):
        open_model("onnxruntime", model_dir, precision="fp16")
    with pytest.raises(SpecError, match=r"sgjnd calibrate .* --precision int8 --target ort-cpu --images PHOTOS"):
        open_model("onnxruntime", model_dir, precision="int8-ort")
    with pytest.raises(UsageError, match="unknown precision"):
        open_model("onnxruntime", model_dir, precision="fp8")


def test_missing_sidecar_is_refused(model_dir: Path) -> None:
    (model_dir / "head.onnx.json").unlink()
    with pytest.raises(SpecError, match=f"head.onnx has no spec sidecar.*{EXPORT_HINT}"):
        open_model("onnxruntime", model_dir)


def test_edited_sha256_is_refused_at_load(model_dir: Path) -> None:
    _edit_sidecar(model_dir / "encoder.onnx.json", sha256="0" * 64)
    open_model("onnxruntime", model_dir)  # reading sidecars is cheap; the hash is checked at load
    with pytest.raises(SpecError, match=rf"does not match its sidecar: sha256 .* records 000000000000.*{EXPORT_HINT}"):
        _load(model_dir)


def test_modified_graph_is_refused(model_dir: Path) -> None:
    with open(model_dir / "head.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(SpecError, match="does not match its sidecar"):
        _load(model_dir)


def test_graph_swapped_for_another_is_refused(model_dir: Path) -> None:
    # The head's bytes under the encoder's name, with a sidecar that vouches for them: the I/O check catches it.
    shutil.copyfile(model_dir / "head.onnx", model_dir / "encoder.onnx")
    head_sha = json.loads((model_dir / "head.onnx.json").read_text())["artifact"]["sha256"]
    _edit_sidecar(model_dir / "encoder.onnx.json", sha256=head_sha)
    with pytest.raises(SpecError, match=r"does not implement the encoder graph of its spec: inputs expected "
                       r"patches\['\?', 64, 64, 3\]:uint8, got f_ref\['\?', 128\]:float32, f_dis"):
        _load(model_dir)


def test_files_swapped_with_their_sidecars_are_refused(model_dir: Path) -> None:
    for suffix in (".onnx", ".onnx.json"):
        (model_dir / f"encoder{suffix}").rename(model_dir / "tmp")
        (model_dir / f"head{suffix}").rename(model_dir / f"encoder{suffix}")
        (model_dir / "tmp").rename(model_dir / f"head{suffix}")
    with pytest.raises(SpecError, match=r"describes 'head\.onnx', not 'encoder\.onnx'"):
        open_model("onnxruntime", model_dir)


def test_sidecar_of_another_graph_kind_is_refused(model_dir: Path) -> None:
    _edit_sidecar(model_dir / "head.onnx.json", graph="encoder")
    with pytest.raises(SpecError, match="describes the encoder graph, but head was expected"):
        _load(model_dir)


def test_graphs_from_different_checkpoints_are_refused(exports: tuple[Path, Path], model_dir: Path) -> None:
    for name in ("head.onnx", "head.onnx.json"):
        shutil.copyfile(exports[1] / name, model_dir / name)
    with pytest.raises(SpecError, match="come from different models or checkpoints"):
        open_model("onnxruntime", model_dir)


# -- optimised-graph cache -------------------------------------------------------------------------------------


def test_optimized_cache_is_written_reused_and_verified(exports: tuple[Path, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    feeds = {"patches": tiny_patches(2)}
    with open_model("onnxruntime", exports[0], optimized_cache=cache) as models:
        want = models.encoder.infer(feeds)["features"]
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 4 and sum(name.endswith(".ort.onnx.sha256") for name in files) == 2
    cached = next(cache.glob("encoder.*.ort.onnx"))
    stamp = cached.stat().st_mtime_ns
    with open_model("onnxruntime", exports[0], optimized_cache=cache) as models:
        options = models.encoder.session.get_session_options()  # type: ignore[attr-defined]
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # loaded pre-optimised
        np.testing.assert_allclose(models.encoder.infer(feeds)["features"], want, rtol=1e-5, atol=1e-6)
    assert cached.stat().st_mtime_ns == stamp
    # A cached graph whose bytes changed is not trusted: it is rebuilt from the verified artifact.
    with open(cached, "ab") as fh:
        fh.write(b"\0")
    with open_model("onnxruntime", exports[0], optimized_cache=cache) as models:
        options = models.encoder.session.get_session_options()  # type: ignore[attr-defined]
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        np.testing.assert_allclose(models.encoder.infer(feeds)["features"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("providers", "blockers"),
    [
        (["CPUExecutionProvider"], []),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], []),
        (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], ["TensorrtExecutionProvider"]),
        (["NvTensorRTRTXExecutionProvider", "CPUExecutionProvider"], ["NvTensorRTRTXExecutionProvider"]),
        (["OpenVINOExecutionProvider", "MIGraphXExecutionProvider"], ["OpenVINOExecutionProvider",
                                                                      "MIGraphXExecutionProvider"]),
        (["SomeFutureExecutionProvider", "CPUExecutionProvider"], ["SomeFutureExecutionProvider"]),  # unknown: unsafe
    ],
)
def test_compiling_providers_rule_out_the_optimized_cache(providers: list[str], blockers: list[str]) -> None:
    assert compiling_providers(providers) == blockers


@pytest.mark.filterwarnings("ignore:Specified provider")  # ORT's own warning for a provider this build lacks
def test_optimized_cache_is_skipped_and_explained_once_with_a_compiling_provider(
    exports: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sgjnd.runtime.backends.ort as ort_backend

    # OpenVINO stands for any compiling provider (TensorRT's needs a GPU): this ORT build lacks it, so the session
    # falls back to CPU, but the cache decision is made from the requested list, before ORT sees it.
    monkeypatch.setattr(ort_backend, "resolve_providers", lambda requested: ["OpenVINOExecutionProvider",
                                                                            "CPUExecutionProvider"])
    monkeypatch.setattr(ort_backend, "_CACHE_SKIP_EXPLAINED", set())
    cache = tmp_path / "cache"
    for _ in range(2):
        with caplog.at_level("WARNING", logger=ort_backend.__name__), \
                open_model("onnxruntime", exports[0], optimized_cache=cache) as models:
            assert models.encoder.infer({"patches": tiny_patches(1)})["features"].shape == (1, 128)
    assert not cache.exists() or not any(cache.iterdir())
    skipped = [r.getMessage() for r in caplog.records if "optimized_cache" in r.getMessage()]
    assert len(skipped) == 1  # once, not per graph or per session
    assert "OpenVINOExecutionProvider may compile nodes" in skipped[0]
    assert "cannot save a graph with compiled nodes" in skipped[0]
