"""The TensorRT backend without a GPU.

The CUDA wrapper is tested against the real cuda-python bindings on this GPU-less machine (the no-driver path), a
fake runtime module (status codes), and the real bindings' signatures (the calls we make exist with these
arities). The backend itself runs end to end on a fake ``tensorrt`` module and a fake CUDA API whose "device"
memory is host memory: buffer sizing, profile checks, addresses, copies in and out, slicing to the batch, freeing,
and the sidecar refusals. What only a GPU can show is in tests/gpu.
"""

from __future__ import annotations

import ctypes
import inspect
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sgjnd.cli import main
from sgjnd.engine_spec import BatchProfile, BuildConfig, EngineRecord
from sgjnd.errors import BackendError, BackendUnavailable, SpecError, UsageError
from sgjnd.fileio import sha256_bytes
from sgjnd.runtime import cuda
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.backends.trt import TrtBackend, numpy_dtype
from sgjnd.spec import ArtifactInfo, ModelSpec, Sidecar, sidecar_path, write_sidecar

SPEC = ModelSpec(name="sgjnd_tiny", patch_size=8, feature_dim=4)
GPU = cuda.DeviceInfo(0, "Fake GPU", 8, 6, 1 << 30)


# -- the real cuda-python on a machine without a driver ---------------------------------------------------------------
def real_cudart() -> Any:
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed: pip install cuda-python")
    import cuda.bindings.runtime as cudart

    return cudart


def test_no_driver_gives_one_clear_backend_unavailable() -> None:
    cudart = real_cudart()
    status, count = cudart.cudaGetDeviceCount()
    if int(status) == 0 and count > 0:
        pytest.skip("this machine has a GPU; the no-driver path cannot be shown here")
    api = cuda.load_cuda()
    assert isinstance(api, cuda.CudaPythonApi)
    with pytest.raises(BackendUnavailable) as info:
        cuda.require_device(api)
    text = str(info.value)
    assert "\n" not in text and text.startswith("no usable NVIDIA GPU")
    assert "cudaGetDeviceCount" in text


CALLS = {  # binding -> number of positional parameters we pass
    "cudaGetDeviceCount": 0,
    "cudaGetDeviceProperties": 1,
    "cudaSetDevice": 1,
    "cudaMalloc": 1,
    "cudaFree": 1,
    "cudaMallocHost": 1,
    "cudaFreeHost": 1,
    "cudaStreamCreateWithFlags": 1,
    "cudaStreamDestroy": 1,
    "cudaStreamSynchronize": 1,
    "cudaMemcpyAsync": 5,
    "cudaMemcpy": 4,
    "cudaGetErrorName": 1,
    "cudaGetErrorString": 1,
    "cudaDriverGetVersion": 0,
    "cudaRuntimeGetVersion": 0,
}


@pytest.mark.parametrize(("name", "arity"), sorted(CALLS.items()))
def test_the_bindings_we_call_exist_with_these_arities(name: str, arity: int) -> None:
    """cuda-bindings ships no type stubs, so this contract test stands in for mypy on the CUDA calls."""
    cudart = real_cudart()
    assert len(inspect.signature(getattr(cudart, name)).parameters) == arity
    assert int(cudart.cudaMemcpyKind.cudaMemcpyHostToDevice) == 1
    assert int(cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost) == 2
    assert int(cudart.cudaStreamNonBlocking) == 1


class FakeCudart:
    """A cuda.bindings.runtime stand-in that returns chosen statuses."""

    class cudaError_t(int):
        pass

    class cudaMemcpyKind(int):
        pass

    def __init__(self, status: int = 0, driver: int = 12040, runtime: int = 12090) -> None:
        self.status, self.driver, self.runtime = status, driver, runtime

    def cudaGetErrorName(self, err: int) -> tuple[int, bytes]:
        return 0, {2: b"cudaErrorMemoryAllocation", 35: b"cudaErrorInsufficientDriver"}.get(int(err), b"cudaErrorX")

    def cudaGetErrorString(self, err: int) -> tuple[int, bytes]:
        return 0, b"described"

    def cudaDriverGetVersion(self) -> tuple[int, int]:
        return 0, self.driver

    def cudaRuntimeGetVersion(self) -> tuple[int, int]:
        return 0, self.runtime

    def cudaGetDeviceCount(self) -> tuple[int, int]:
        return self.status, 1

    def cudaMalloc(self, size: int) -> tuple[int, int | None]:
        return self.status, None if self.status else 1234


def test_a_failed_call_names_the_call_and_the_cuda_error() -> None:
    with pytest.raises(BackendError, match=r"cudaMalloc failed: cudaErrorMemoryAllocation \(described\)"):
        cuda.CudaPythonApi(FakeCudart(status=2)).malloc(16)
    assert cuda.CudaPythonApi(FakeCudart()).malloc(16) == 1234


def test_an_old_driver_is_named_with_the_matching_cuda_python() -> None:
    with pytest.raises(BackendUnavailable) as info:
        cuda.CudaPythonApi(FakeCudart(status=35, driver=12040, runtime=13000), "13.0.0").device_count()
    text = str(info.value)
    assert "CUDA 12.4" in text and "CUDA 13.0" in text and "pip install 'cuda-python==12.*'" in text


def test_no_driver_at_all_is_named() -> None:
    with pytest.raises(BackendUnavailable, match="no NVIDIA driver is installed"):
        cuda.CudaPythonApi(FakeCudart(status=35, driver=0)).device_count()


def test_a_binding_that_raises_becomes_backend_unavailable() -> None:
    class Raising(FakeCudart):
        def cudaGetDeviceCount(self) -> tuple[int, int]:
            raise RuntimeError('"cuda" is an NVIDIA driver library and can only be found via system search')

    with pytest.raises(BackendUnavailable, match="is the NVIDIA driver installed"):
        cuda.CudaPythonApi(Raising()).device_count()


def test_allocator_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="allocator"):
        cuda.load_cuda("cupy")
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'sgjnd\[trt\]'"):
        cuda.load_cuda("pycuda")


def test_require_device_checks_the_ordinal() -> None:
    api = FakeCudaApi()
    assert cuda.require_device(api, 0) == GPU
    with pytest.raises(BackendUnavailable, match="device 3 does not exist"):
        cuda.require_device(api, 3)


# -- a fake CUDA whose device memory is host memory ------------------------------------------------------------------
class FakeCudaApi(cuda.CudaApi):
    name = "fake"

    def tensor_device(self, index: int) -> str:
        return "cpu"  # its "device memory" is host memory: torch CPU tensors address it

    def __init__(self) -> None:
        self.device: dict[int, np.ndarray] = {}
        self.host: dict[int, np.ndarray] = {}
        self.streams: set[int] = set()
        self._next_stream = 100

    def device_count(self) -> int:
        return 1

    def device_info(self, index: int) -> cuda.DeviceInfo:
        return GPU

    def set_device(self, index: int) -> None:
        pass

    def malloc(self, nbytes: int) -> int:
        array = np.zeros(nbytes, np.uint8)
        self.device[array.ctypes.data] = array
        return int(array.ctypes.data)

    def free(self, ptr: int) -> None:
        del self.device[ptr]

    def malloc_host(self, nbytes: int) -> np.ndarray:
        array = np.zeros(nbytes, np.uint8)
        self.host[array.ctypes.data] = array
        return array

    def free_host(self, array: np.ndarray) -> None:
        del self.host[array.ctypes.data]

    def stream_create(self) -> int:
        self._next_stream += 1
        self.streams.add(self._next_stream)
        return self._next_stream

    def stream_destroy(self, stream: int) -> None:
        self.streams.remove(stream)

    def stream_synchronize(self, stream: int) -> None:
        assert stream in self.streams

    def _device(self, ptr: int, nbytes: int) -> None:
        for base, array in self.device.items():
            if base <= ptr and ptr + nbytes <= base + array.nbytes:
                return
        raise AssertionError(f"copy of {nbytes} bytes at {ptr} is outside every device allocation")

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        assert src.flags.c_contiguous and stream in self.streams
        self._device(dst, src.nbytes)
        ctypes.memmove(dst, src.ctypes.data, src.nbytes)

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        assert dst.flags.c_contiguous and stream in self.streams
        self._device(src, dst.nbytes)
        ctypes.memmove(dst.ctypes.data, src, dst.nbytes)

    def memcpy_htod(self, dst: int, src: np.ndarray) -> None:
        ctypes.memmove(dst, src.ctypes.data, src.nbytes)

    def versions(self) -> dict[str, str]:
        return {"cuda_runtime": "12.9"}

    @property
    def live(self) -> int:
        return len(self.device) + len(self.host) + len(self.streams)


def test_pinned_buffer_views_and_close() -> None:
    api = FakeCudaApi()
    buffer = cuda.PinnedBuffer(api, 64)
    view = buffer.view(np.float32, (4, 4))
    view[:] = 1.0
    assert buffer.view(np.float32, (16,)).sum() == 16
    with pytest.raises(BackendError, match="cannot hold"):
        buffer.view(np.float32, (5, 4))
    buffer.close()
    buffer.close()
    with pytest.raises(BackendError, match="after close"):
        buffer.view(np.float32, (1,))
    assert api.live == 0


# -- a fake tensorrt module --------------------------------------------------------------------------------------------
class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class Dims(tuple):  # type: ignore[type-arg]
    def __new__(cls, shape: Any = ()) -> Dims:
        return super().__new__(cls, (int(d) for d in shape))


def float_view(ptr: int, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    return np.frombuffer((ctypes.c_float * count).from_address(ptr), dtype=np.float32).reshape(shape)


class FakeContext:
    """Computes features = mean(patch) + column index; q = mean(f_ref - f_dis); w = 1 + mean(f_ref)."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name: str, dims: Dims) -> bool:
        lo, _, hi = self.engine.profile[name]
        if not lo[0] <= dims[0] <= hi[0] or tuple(dims[1:]) != lo[1:]:
            return False
        self.shapes[name] = tuple(dims)
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        n = next(iter(self.shapes.values()))[0]
        return Dims((n, SPEC.feature_dim) if name == "features" else (n,))

    def execute_async_v3(self, stream: int) -> bool:
        n = next(iter(self.shapes.values()))[0]
        f = SPEC.feature_dim
        if self.engine.graph == "encoder":
            x = float_view(self.addresses["patches"], (n, 3, SPEC.patch_size, SPEC.patch_size))
            out = float_view(self.addresses["features"], (n, f))
            out[:] = x.mean(axis=(1, 2, 3))[:, None] + np.arange(f, dtype=np.float32)
        else:
            ref = float_view(self.addresses["f_ref"], (n, f))
            dis = float_view(self.addresses["f_dis"], (n, f))
            float_view(self.addresses["q"], (n,))[:] = (ref - dis).mean(axis=1)
            float_view(self.addresses["w"], (n,))[:] = 1.0 + ref.mean(axis=1)
        self.engine.runs += 1
        return True


class FakeEngine:
    def __init__(self, graph: str, profile: BatchProfile) -> None:
        self.graph = graph
        g = SPEC.graph(graph)  # type: ignore[arg-type]
        self.tensors = [(t, "INPUT") for t in g.inputs] + [(t, "OUTPUT") for t in g.outputs]
        self.profile = {
            t.name: tuple(
                tuple(b if d == "batch" else d for d in t.shape) for b in (profile.min, profile.opt, profile.max)
            )
            for t in g.inputs
        }
        self.runs = 0
        self.num_io_tensors = len(self.tensors)

    def get_tensor_name(self, i: int) -> str:
        return self.tensors[i][0].name

    def _tensor(self, name: str) -> tuple[Any, str]:
        return next(t for t in self.tensors if t[0].name == name)

    def get_tensor_mode(self, name: str) -> Named:
        return FAKE_TRT.TensorIOMode.INPUT if self._tensor(name)[1] == "INPUT" else FAKE_TRT.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> Named:
        return Named("FLOAT")

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(-1 if d == "batch" else d for d in self._tensor(name)[0].shape)

    def get_tensor_profile_shape(self, name: str, index: int) -> list[Dims]:
        return [Dims(s) for s in self.profile[name]]

    def create_execution_context(self) -> FakeContext:
        self.context = FakeContext(self)
        return self.context

    def create_engine_inspector(self) -> FakeInspector:
        return FakeInspector()


class FakeInspector:
    execution_context: FakeContext | None = None

    def get_engine_information(self, fmt: Named) -> str:
        assert fmt.name == "JSON"
        known = self.execution_context is not None and self.execution_context.shapes  # shapes set: formats known
        fmt_text = "Row major linear FP32 format" if known else "N/A due to dynamic shapes"
        layer = {"Name": "conv", "LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": fmt_text}],
                 "Outputs": [{"Format/Datatype": fmt_text}]}
        return json.dumps({"Layers": [layer], "Bindings": ["patches", "features"]})


class FakeRuntime:
    def __init__(self, logger: Any) -> None:
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
        graph, profile = data.decode().split(":")
        engine = FakeEngine(graph, BatchProfile.parse(profile))
        ENGINES.append(engine)
        return engine


class FakeILogger:
    class Severity:
        pass

    def __init__(self) -> None:
        pass


def make_fake_trt(version: str = "10.13.0.35") -> types.ModuleType:
    module = types.ModuleType("tensorrt")
    module.__version__ = version  # type: ignore[attr-defined]
    module.Builder = object  # type: ignore[attr-defined]
    module.ILogger = FakeILogger  # type: ignore[attr-defined]
    module.Runtime = FakeRuntime  # type: ignore[attr-defined]
    module.Dims = Dims  # type: ignore[attr-defined]
    module.TensorIOMode = types.SimpleNamespace(INPUT=Named("INPUT"), OUTPUT=Named("OUTPUT"))  # type: ignore[attr-defined]
    module.LayerInformationFormat = types.SimpleNamespace(JSON=Named("JSON"))  # type: ignore[attr-defined]
    return module


FAKE_TRT = make_fake_trt()
ENGINES: list[FakeEngine] = []


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCudaApi]:
    api = FakeCudaApi()
    ENGINES.clear()
    monkeypatch.setitem(sys.modules, "tensorrt", FAKE_TRT)
    monkeypatch.setattr(cuda, "load_cuda", lambda allocator="auto": api)
    yield api


def write_engines(
    model_dir: Path, *, precision: str = "fp32", build: BuildConfig | None = None, trt_version: str = "10.13.0.35",
    gpu_name: str = GPU.name,
) -> None:
    build = build or BuildConfig(precision=precision, batch=BatchProfile(1, 4, 8))
    for graph in ("encoder", "head"):
        name = f"{graph}.engine" if precision == "fp32" else f"{graph}.{precision}.engine"
        data = f"{graph}:{build.batch}".encode()
        (model_dir / name).write_bytes(data)
        record = EngineRecord(trt_version, gpu_name, GPU.compute_capability, build)
        info = ArtifactInfo(kind="engine", file=name, sha256=sha256_bytes(data), graph=graph, precision=precision,
                            weights="UNTRAINED", details=record.to_details())
        write_sidecar(model_dir / name, Sidecar(SPEC, info))


def patches(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_open_model_runs_both_graphs(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    write_engines(tmp_path)
    model = open_model("tensorrt", tmp_path)
    assert model.model == SPEC and model.weights == "UNTRAINED"
    assert fake_gpu.live == 0  # construction touches no device
    with model:
        assert model.encoder.max_batch_size == 8 and model.encoder.preferred_batch_size == 4
        assert model.encoder.description == "tensorrt fp32 on Fake GPU (cc 8.6)"
        for n in (1, 3, 8):
            x = patches(n, seed=n)
            features = model.encoder.infer({"patches": x})["features"]
            expected = x.mean(axis=(1, 2, 3))[:, None] + np.arange(4, dtype=np.float32)
            np.testing.assert_allclose(features, expected, rtol=1e-6)
        ref, dis = features, features[::-1].copy()
        out = model.head.infer({"f_ref": ref, "f_dis": dis})
        np.testing.assert_allclose(out["q"], (ref - dis).mean(axis=1), rtol=1e-6)
        np.testing.assert_allclose(out["w"], 1.0 + ref.mean(axis=1), rtol=1e-6)
        assert out["q"].shape == (8,) and out["q"].dtype == np.float32
        # a pinned and a device buffer per tensor (2 + 4), one stream per graph
        assert len(fake_gpu.device) == 6 and len(fake_gpu.host) == 6 and len(fake_gpu.streams) == 2
    assert fake_gpu.live == 0


def test_outputs_are_copies_not_views_of_reused_buffers(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    write_engines(tmp_path)
    with open_model("tensorrt", tmp_path) as model:
        first = model.encoder.infer({"patches": patches(2, seed=1)})["features"]
        kept = first.copy()
        model.encoder.infer({"patches": patches(2, seed=2)})
        np.testing.assert_array_equal(first, kept)
        first[:] = 0
        second = model.encoder.infer({"patches": patches(2, seed=1)})["features"]
        np.testing.assert_array_equal(second, kept)


def test_batches_beyond_the_profile_are_refused(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    write_engines(tmp_path)
    with open_model("tensorrt", tmp_path) as model, pytest.raises(UsageError, match="maximum batch 8"):
        model.encoder.infer({"patches": patches(9)})


def test_buffers_are_allocated_once(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    write_engines(tmp_path)
    with open_model("tensorrt", tmp_path) as model:
        before = set(fake_gpu.device)
        for n in (1, 8, 2):
            model.encoder.infer({"patches": patches(n)})
        assert set(fake_gpu.device) == before
        # sized for the profile max (8): patches, features | f_ref, f_dis, q, w
        assert sorted(a.nbytes for a in fake_gpu.device.values()) == [32, 32, 128, 128, 128, 8 * 3 * 8 * 8 * 4]


def test_another_tensorrt_version_is_refused_with_the_rebuild_command(
    fake_gpu: FakeCudaApi, tmp_path: Path
) -> None:
    build = BuildConfig(precision="fp16", batch=BatchProfile(1, 4, 8), opt_level=5, hardware_compatibility=None)
    write_engines(tmp_path, precision="fp16", build=build, trt_version="10.12.0.36")
    model = open_model("tensorrt", tmp_path, precision="fp16")
    with pytest.raises(SpecError) as info:
        model.__enter__()
    text = str(info.value)
    assert "built with TensorRT 10.12.0.36" in text and "10.13.0.35" in text
    assert f"Rebuild it with: sgjnd build {tmp_path} --precision fp16 --batch 1,4,8 --workspace 4 --opt-level 5" in text
    assert fake_gpu.live == 0  # nothing leaked by the failed load


def test_another_gpu_model_is_refused_unless_allowed(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    write_engines(tmp_path, gpu_name="Other GPU")
    with pytest.raises(SpecError, match="built on Other GPU"):
        open_model("tensorrt", tmp_path).__enter__()
    with open_model("tensorrt", tmp_path, allow_other_gpu_model=True) as model:
        assert model.encoder.infer({"patches": patches(1)})["features"].shape == (1, 4)


def test_a_changed_engine_file_is_refused(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    write_engines(tmp_path)
    (tmp_path / "head.engine").write_bytes(b"head:1,4,8 tampered")
    with pytest.raises(SpecError, match="does not match the sha256"):
        open_model("tensorrt", tmp_path).__enter__()
    assert fake_gpu.live == 0


def test_a_version_compatible_engine_needs_allow_host_code(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    write_engines(tmp_path, build=BuildConfig(batch=BatchProfile(1, 4, 8), version_compatible=True))
    with pytest.raises(UsageError, match="allow_host_code=True") as info:
        open_model("tensorrt", tmp_path).__enter__()
    assert "--version-compatible" not in str(info.value)
    with open_model("tensorrt", tmp_path, allow_host_code=True) as model:
        model.encoder.infer({"patches": patches(1)})


def test_a_profile_that_disagrees_with_the_sidecar_is_refused(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    write_engines(tmp_path)
    data = b"encoder:1,4,16"  # the engine says max 16, the sidecar 8
    (tmp_path / "encoder.engine").write_bytes(data)
    path = sidecar_path(tmp_path / "encoder.engine")
    path.write_text(path.read_text().replace(sha256_bytes(b"encoder:1,4,8"), sha256_bytes(data)))
    with pytest.raises(SpecError, match="engine profile for 'patches'"):
        open_model("tensorrt", tmp_path).__enter__()


def test_missing_engines_name_the_build_command(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=f"sgjnd build {tmp_path} --precision int8"):
        open_model("tensorrt", tmp_path, precision="int8")
    with pytest.raises(UsageError, match="int8-ort"):
        open_model("tensorrt", tmp_path, precision="int8-ort")


def test_unknown_options_are_refused(fake_gpu: FakeCudaApi, tmp_path: Path) -> None:
    write_engines(tmp_path)
    with pytest.raises(UsageError, match="providers"):
        open_model("tensorrt", tmp_path, providers=("cuda",))
    assert isinstance(open_model("tensorrt", tmp_path, threads=None).encoder, TrtBackend)


def test_numpy_dtypes_of_tensorrt_types() -> None:
    assert numpy_dtype(Named("HALF")) == np.float16
    assert numpy_dtype("DataType.FLOAT") == np.float32
    with pytest.raises(BackendError, match="no numpy equivalent"):
        numpy_dtype(Named("FP8"))


def test_predict_without_tensorrt_prints_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_engines(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'sgjnd\[trt\]'"):
        open_model("tensorrt", tmp_path).__enter__()
    assert main(["inspect", str(tmp_path / "encoder.engine"), "--no-layers"]) == 0


def test_inspect_reports_layers_at_concrete_shapes(
    fake_gpu: FakeCudaApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_engines(tmp_path)
    assert main(["inspect", str(tmp_path / "encoder.engine"), "--raw"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layers"]["precision_counts"] == {"fp32": 1}
    assert report["inspector"]["Bindings"] == ["patches", "features"]
    assert report["sidecar"]["artifact"]["file"] == "encoder.engine"
    assert fake_gpu.live == 0


def test_inspect_warns_where_inference_refuses_another_gpu_model(
    fake_gpu: FakeCudaApi, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Same compute capability, other GPU model: the backend refuses unless allow_other_gpu_model; inspect is
    # read-only, so it loads the engine, reports its layers and warns with the backend's own words.
    write_engines(tmp_path, gpu_name="Other GPU")
    engine = tmp_path / "encoder.engine"
    with pytest.raises(SpecError, match="allow_other_gpu_model=True"):
        open_model("tensorrt", tmp_path).__enter__()
    with caplog.at_level("WARNING"):
        assert main(["inspect", str(engine)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layers"]["precision_counts"] == {"fp32": 1}
    assert any("built on Other GPU" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert fake_gpu.live == 0
    # The API offers the backend's strict behaviour too.
    from sgjnd.commands.inspect import inspect_artifact

    with pytest.raises(SpecError, match="built on Other GPU"):
        inspect_artifact(engine, allow_other_gpu_model=False)


def test_trt_modules_import_no_heavy_library() -> None:
    import subprocess

    code = (
        "import sys, sgjnd.runtime.backends.trt, sgjnd.runtime.backends.ort_trt, sgjnd.export.trt, "
        "sgjnd.commands.build, sgjnd.commands.inspect\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} | {m for m in sys.modules if 'cuda' in m})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    heavy = {"tensorrt", "torch", "onnx", "onnxruntime", "pycuda", "cuda", "cuda.bindings", "cuda.bindings.runtime"}
    assert not heavy & loaded, heavy & loaded
