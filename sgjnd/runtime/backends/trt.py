"""The TensorRT backend: runs one engine with ``execute_async_v3`` on its own CUDA stream.

Each instance owns one execution context, one stream, and pinned host plus device buffers sized once for the
engine profile's largest batch; every call reuses them and returns copies. Before deserialising, the engine's
sidecar is checked against this machine (TensorRT version, GPU compute capability and model) and a mismatch is
refused with the ``sgjnd build`` command that rebuilds it. An instance is not thread-safe: use one per thread.

Safety: an engine can carry plugins, and a version-compatible engine carries host code that TensorRT runs when it
loads; engines are only loaded when their sha256 matches the sidecar, and host code only with
``allow_host_code=True``.

This module imports numpy at the top; tensorrt and the CUDA bindings are imported when an engine is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sgjnd.engine_spec import (
    BUILD_PRECISIONS,
    TENSORRT,
    TENSORRT_RTX,
    BatchProfile,
    EngineRecord,
    Platform,
    TrtProduct,
    batch_shape,
    check_compatibility,
    trt_product,
)
from sgjnd.errors import BackendError, BackendUnavailable, SpecError, UsageError
from sgjnd.fileio import sha256_bytes
from sgjnd.runtime import cuda
from sgjnd.runtime.backends.base import Backend, ModelBackends, torch_installed
from sgjnd.runtime.backends.registry import graph_names
from sgjnd.runtime.modeldir import artifact_path, require_model_dir
from sgjnd.spec import GraphSpec, ModelSpec, Sidecar, read_sidecar

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)
trt_log = logging.getLogger("sgjnd.tensorrt")

TRT_INSTALL_HINT = TENSORRT.install
"""How to install TensorRT, quoted in errors."""

_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "UINT8": np.dtype(np.uint8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
}
_FLOATS = {np.dtype(np.float32), np.dtype(np.float16)}


# -- TensorRT availability, logging, dtypes --------------------------------------------------------------------------
def trt_module(product: TrtProduct = TENSORRT) -> Any:
    """The product's Python module (``tensorrt`` or ``tensorrt_rtx``), checked to be a working build.

    Both have the same API for everything we use, so callers write ``trt = trt_module(product)``; code that mypy
    should check against the TensorRT stubs binds ``trt`` under ``TYPE_CHECKING`` instead.

    Raises:
        BackendUnavailable: one line that says how to install the product.
    """
    where = "" if product.builds_without_gpu else " on a machine with an NVIDIA GPU"
    try:
        module = importlib.import_module(product.module)
    except ImportError as exc:
        raise BackendUnavailable(
            f"{product.title} is not installed ({exc}); install it{where}: {product.install}"
        ) from exc
    except OSError as exc:  # the wheel is there but its libraries cannot be loaded
        raise BackendUnavailable(f"{product.title} is installed but its libraries cannot be loaded ({exc})") from exc
    if not hasattr(module, "Builder"):
        raise BackendUnavailable(
            f"the importable `{product.module}` module is not a working {product.title} (no Builder: a stub or "
            f"namespace package); install it{where}: {product.install}"
        )
    return module


def require_tensorrt(product: TrtProduct = TENSORRT) -> str:
    """Check that a working build of ``product`` is importable and return its version.

    A stub or namespace package named ``tensorrt`` (what ``pip install tensorrt-stubs --no-deps`` leaves) imports
    but has no ``Builder``; it counts as missing.

    Raises:
        BackendUnavailable: one line that says how to install it.
    """
    return str(trt_module(product).__version__)


_LEVELS = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING}
"""TensorRT severity -> stdlib level; INFO and VERBOSE are chatty and go to DEBUG (-vv shows them)."""


class TrtLogCapture:
    """Keeps the errors TensorRT reports while it is attached to the process's logger (:func:`make_trt_logger`)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def record(self, level: int, message: str) -> None:
        """Keep ``message`` when ``level`` is an error (the logger forwards every message to stdlib logging once)."""
        if level >= logging.ERROR:
            self.errors.append(message)

    def summary(self, last: int = 5) -> str:
        """The last ``last`` errors TensorRT reported, as one clause (empty when none)."""
        if not self.errors:
            return ""
        return "; TensorRT said: " + " | ".join(self.errors[-last:])


class _LoggerHub:
    """The one ``ILogger`` a process gives one TensorRT library: logs each message once to ``sgjnd.tensorrt`` and
    hands it to the live captures.

    TensorRT keeps the first logger passed to a builder, runtime or refitter for the life of the process and ignores
    later ones ("The logger passed into createInferBuilder differs from one already registered"), so a logger per
    build would send the second build's errors to the first build's capture. Captures are held weakly: one dies
    with the build or backend that made it. Messages of builds that run at the same time reach both captures.
    """

    def __init__(self, module: Any) -> None:
        self.captures: weakref.WeakSet[TrtLogCapture] = weakref.WeakSet()
        self.lock = threading.Lock()
        hub = self

        class _Logger(module.ILogger):
            def __init__(self) -> None:
                module.ILogger.__init__(self)  # pybind trampolines must call the base __init__ explicitly

            def log(self, severity: Any, msg: str) -> None:
                level = _LEVELS.get(str(getattr(severity, "name", severity)), logging.DEBUG)
                if trt_log.isEnabledFor(level):  # once, however many captures listen
                    trt_log.log(level, "%s", msg)
                with hub.lock:
                    captures = list(hub.captures)
                for capture in captures:
                    capture.record(level, str(msg))

        self.logger = _Logger()


_HUBS: dict[str, _LoggerHub] = {}
_HUBS_LOCK = threading.Lock()


def make_trt_logger(capture: TrtLogCapture, product: TrtProduct = TENSORRT) -> trt.ILogger:
    """The process's ``ILogger`` for ``product``, with ``capture`` attached for as long as it lives."""
    module = trt_module(product)
    with _HUBS_LOCK:
        hub = _HUBS.get(product.module)
        if hub is None or not isinstance(hub.logger, module.ILogger):  # a test may swap the module
            hub = _HUBS[product.module] = _LoggerHub(module)
    with hub.lock:
        hub.captures.add(capture)
    logger: trt.ILogger = hub.logger
    return logger


def numpy_dtype(trt_dtype: Any) -> np.dtype[Any]:
    """The numpy dtype of a ``tensorrt.DataType``.

    Raises:
        BackendError: the type has no numpy equivalent (BF16, FP8, INT4, ...).
    """
    name = str(getattr(trt_dtype, "name", trt_dtype)).rsplit(".", 1)[-1]
    if name not in _NUMPY_DTYPES:
        raise BackendError(
            f"engine tensor type {name} has no numpy equivalent; expected one of {sorted(_NUMPY_DTYPES)}"
        )
    return _NUMPY_DTYPES[name]


def dims_tuple(dims: trt.Dims) -> tuple[int, ...]:
    """A ``tensorrt.Dims`` as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _torch_dtype(torch: Any, dtype: np.dtype[Any]) -> Any:
    """The torch dtype of a numpy dtype (``torch.float16`` for ``float16``, ...)."""
    return getattr(torch, np.dtype(dtype).name)


# -- engine I/O against the spec -------------------------------------------------------------------------------------
def check_engine_io(
    engine: trt.ICudaEngine, graph: GraphSpec, profile: BatchProfile, product: TrtProduct = TENSORRT
) -> dict[str, np.dtype[Any]]:
    """Check an engine's tensors against the graph spec and the recorded profile; return each tensor's dtype.

    Engine dtypes may differ from the spec only between float32 and float16 (the backend converts).

    Raises:
        SpecError: names, modes, static dimensions, dtypes or profile shapes disagree.
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = trt_module(product)

    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    expected = {t.name: "input" for t in graph.inputs} | {t.name: "output" for t in graph.outputs}
    if sorted(names) != sorted(expected):
        raise SpecError(f"engine tensors {sorted(names)} do not match graph {graph.name}'s {sorted(expected)}")
    dtypes: dict[str, np.dtype[Any]] = {}
    for spec in (*graph.inputs, *graph.outputs):
        mode = engine.get_tensor_mode(spec.name)
        want_mode = trt.TensorIOMode.INPUT if expected[spec.name] == "input" else trt.TensorIOMode.OUTPUT
        if mode != want_mode:
            raise SpecError(f"engine tensor {spec.name!r} is {mode}, but the spec says it is an {expected[spec.name]}")
        dtype = numpy_dtype(engine.get_tensor_dtype(spec.name))
        spec_dtype = np.dtype(spec.dtype)
        if dtype != spec_dtype and not {dtype, spec_dtype} <= _FLOATS:
            raise SpecError(f"engine tensor {spec.name!r} is {dtype}, but the spec says {spec_dtype}")
        dtypes[spec.name] = dtype
        shape = dims_tuple(engine.get_tensor_shape(spec.name))
        want = batch_shape(spec, -1)
        if len(shape) != len(want) or any(w != -1 and s != w for s, w in zip(shape, want, strict=True)):
            raise SpecError(f"engine tensor {spec.name!r} has shape {shape}, but the spec says {spec.shape}")
    for spec in graph.inputs:
        got = tuple(dims_tuple(d) for d in engine.get_tensor_profile_shape(spec.name, 0))
        want_profile = (batch_shape(spec, profile.min), batch_shape(spec, profile.opt), batch_shape(spec, profile.max))
        if got != want_profile:
            raise SpecError(f"engine profile for {spec.name!r} is {got}, but the sidecar records {want_profile}")
    return dtypes


def deserialize_engine(
    data: bytes,
    logger: trt.ILogger,
    capture: TrtLogCapture,
    *,
    host_code: bool = False,
    source: str = "engine",
    product: TrtProduct = TENSORRT,
) -> tuple[trt.Runtime, trt.ICudaEngine]:
    """Deserialise engine bytes; the runtime is returned too because it must outlive the engine.

    The caller keeps ``logger`` alive as long as the runtime (TensorRT calls it until the runtime is destroyed).

    Raises:
        SpecError: TensorRT-RTX judges the engine invalid on this machine (``Runtime.get_engine_validity``).
        BackendError: TensorRT could not deserialise the engine (its errors are quoted).
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = trt_module(product)

    runtime = trt.Runtime(logger)
    if runtime is None:
        raise BackendError(f"TensorRT could not create a runtime for {source}{capture.summary()}")
    if product is TENSORRT_RTX:
        check_engine_validity(runtime, data, source)
    if host_code:
        log.warning("allowing host code from the version-compatible engine %s (its sha256 matches its sidecar)", source)
        runtime.engine_host_code_allowed = True
    try:
        engine = runtime.deserialize_cuda_engine(data)
    except Exception as exc:
        raise BackendError(f"TensorRT could not deserialise {source}: {exc}{capture.summary()}") from exc
    if engine is None:
        raise BackendError(f"TensorRT could not deserialise {source}{capture.summary()}")
    return runtime, engine


def check_engine_validity(runtime: Any, data: bytes, source: str) -> None:
    """TensorRT-RTX's own verdict on an engine, before deserialising it (``Runtime.get_engine_validity``).

    ``SUBOPTIMAL`` (it will run, but was not built for this GPU or driver) is logged; ``INVALID`` is refused with
    TensorRT-RTX's diagnostics.

    Raises:
        SpecError: the engine cannot run here.
    """
    validity, diagnostics = runtime.get_engine_validity(data)
    name = str(getattr(validity, "name", validity)).rsplit(".", 1)[-1]
    causes = _validity_diagnostics(diagnostics)
    if name == "INVALID":
        raise SpecError(f"TensorRT-RTX says {source} cannot run here ({causes or 'no diagnostics given'})")
    if name != "VALID":
        log.warning("TensorRT-RTX says %s is %s here (%s)", source, name.lower(), causes or "no diagnostics given")


def _validity_diagnostics(flags: Any) -> str:
    """The names of the ``EngineInvalidityDiagnostics`` bits set in ``flags``."""
    try:
        import tensorrt_rtx as rtx  # only called for TensorRT-RTX engines

        members = dict(rtx.EngineInvalidityDiagnostics.__members__)
    except (ImportError, AttributeError):
        return str(flags)
    value = int(flags)
    return ", ".join(name.lower() for name, bit in members.items() if value & int(bit)) or (str(value) if value else "")


def running_platform(device: cuda.DeviceInfo, product: TrtProduct = TENSORRT) -> Platform:
    """This machine's TensorRT (or TensorRT-RTX) version and GPU (the product must be importable)."""
    return Platform(str(trt_module(product).__version__), device.name, device.compute_capability, product.name)


def engine_record(sidecar: Sidecar, source: str) -> EngineRecord:
    """The engine facts of an engine sidecar.

    Raises:
        SpecError: the sidecar is not an engine sidecar written by ``sgjnd build``.
    """
    if sidecar.artifact.kind != "engine":
        raise SpecError(f"{source} is described as a {sidecar.artifact.kind!r} artifact, not an engine")
    return EngineRecord.from_details(sidecar.artifact.details, source=f"sidecar of {source}")


def rebuild_command(engine: Path, record: EngineRecord) -> str:
    """The ``sgjnd build`` line that rebuilds ``engine`` (and its sibling graph) with the recorded options."""
    return record.build.command(engine.parent)


@dataclasses.dataclass
class LoadedEngine:
    """A deserialised engine with its sidecar facts. ``runtime`` and ``logger`` must outlive ``engine``:
    call :meth:`release` (engine first) rather than relying on the order Python frees things in."""

    sidecar: Sidecar
    record: EngineRecord
    engine: trt.ICudaEngine
    runtime: trt.Runtime
    logger: trt.ILogger

    def release(self) -> None:
        """Destroy the engine, then the runtime, then the logger; the object is unusable afterwards."""
        del self.engine
        del self.runtime
        del self.logger


def load_checked_engine(
    path: Path,
    device: cuda.DeviceInfo,
    capture: TrtLogCapture,
    *,
    allow_host_code: bool = False,
    allow_other_gpu_model: bool = False,
    product: TrtProduct | None = None,
) -> LoadedEngine:
    """Check an engine's sidecar against this machine, verify its hash, then deserialise it.

    ``product`` is the library that loads it (None: the one the sidecar names); an engine of the other product is
    refused by name, before TensorRT sees it.

    Raises:
        SpecError: the sidecar is missing or does not match the file, or the engine was built for another TensorRT
            or GPU (with the ``sgjnd build`` command that rebuilds it).
        UsageError: the engine is version-compatible (carries host code) and ``allow_host_code`` is False.
        BackendError: TensorRT could not deserialise it.
    """
    sidecar = read_sidecar(path, verify_hash=False)
    record = engine_record(sidecar, str(path))
    command = rebuild_command(path, record)
    product = product or trt_product(record.product)
    verdict = check_compatibility(
        record, running_platform(device, product), allow_other_gpu_model=allow_other_gpu_model
    )
    for warning in verdict.warnings:
        log.warning("%s: %s", path.name, warning)
    if not verdict.ok:
        problems = "; ".join(verdict.problems)
        raise SpecError(f"{path} cannot run here: {problems}. Rebuild it with: {command}")
    if record.build.version_compatible and not allow_host_code:
        plain = dataclasses.replace(record.build, version_compatible=False).command(path.parent)
        raise UsageError(
            f"{path} is a version-compatible engine: TensorRT runs host code embedded in it when it loads. Load it "
            f"only from a source you trust, with allow_host_code=True, or rebuild it without it: {plain}"
        )
    data = path.read_bytes()
    if sha256_bytes(data) != sidecar.artifact.sha256:
        raise SpecError(f"{path} does not match the sha256 in its sidecar (changed or truncated). Rebuild: {command}")
    logger = make_trt_logger(capture, product)
    runtime, engine = deserialize_engine(
        data, logger, capture, host_code=record.build.version_compatible, source=str(path), product=product
    )
    return LoadedEngine(sidecar, record, engine, runtime, logger)


# -- the backend ----------------------------------------------------------------------------------------------------
class TrtBackend(Backend):
    """One engine on TensorRT.

    Args:
        artifact: the ``.engine`` file; its sidecar is read when the backend is loaded.
        model: the model spec (from the sidecar).
        graph: the graph this engine runs.
        device: CUDA device ordinal.
        allocator: ``auto`` (cuda-python, else pycuda), ``cuda-python`` or ``pycuda``.
        allow_host_code: allow a version-compatible engine's embedded host code to run on load.
        allow_other_gpu_model: load an engine built on another GPU model of the same compute capability (warns).
        threads: accepted for a uniform CLI and ignored (TensorRT runs on the GPU).
    """

    name = "tensorrt"
    product: ClassVar[TrtProduct] = TENSORRT
    """The library that loads and runs the engines."""
    OPTIONS: Mapping[str, object] = {
        "device": 0,
        "allocator": "auto",
        "allow_host_code": False,
        "allow_other_gpu_model": False,
        "threads": None,
    }
    """Options the constructor accepts, with their defaults."""

    def __init__(self, artifact: Path, model: ModelSpec, graph: GraphSpec, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise UsageError(
                f"unknown {self.name} backend options {unknown}: expected some of {sorted(self.OPTIONS)}"
            )
        super().__init__(artifact, model, graph, **options)
        self._device = int(options.get("device", 0))
        self._allocator = str(options.get("allocator", "auto"))
        self._allow_host_code = bool(options.get("allow_host_code", False))
        self._allow_other_gpu_model = bool(options.get("allow_other_gpu_model", False))
        self._record: EngineRecord | None = None
        self._engine_sha256 = ""
        self._device_info: cuda.DeviceInfo | None = None
        self._api: cuda.CudaApi | None = None
        self._logger: trt.ILogger | None = None
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: cuda.Stream | None = None
        self._host: dict[str, np.ndarray] = {}
        self._dtypes: dict[str, np.dtype[Any]] = {}
        self._tensor_device: str | None = None
        self._device_buffers: dict[str, cuda.DeviceBuffer] = {}
        self._pinned: list[cuda.PinnedBuffer] = []
        self._capture = TrtLogCapture()

    @classmethod
    def open_model(cls, location: Path, *, precision: str = "fp32", **options: Any) -> ModelBackends:
        """Both engines of a model directory at ``precision`` (not loaded yet: use in a ``with`` block).

        Raises:
            UsageError: the precision has no TensorRT engines, or an option is unknown.
            SpecError: the directory, an engine or a sidecar is missing, or the two engines disagree.
        """
        if precision not in BUILD_PRECISIONS:
            raise UsageError(
                f"{cls.name} engines exist for precisions {', '.join(BUILD_PRECISIONS)}, not {precision!r}"
            )
        model_dir = require_model_dir(Path(location), rebuild_hint=f"sgjnd export CHECKPOINT -o {location}")
        runtime = "" if cls.product is TENSORRT else f" --runtime {cls.product.name}"
        hint = f"sgjnd build {model_dir}{runtime} --precision {precision}"
        sidecars: dict[str, Sidecar] = {}
        backends: dict[str, TrtBackend] = {}
        for graph in graph_names():
            path = artifact_path(model_dir, graph, precision, cls.product.engine_ext)
            if not path.is_file():
                raise SpecError(f"{path} does not exist. Build the engines with: {hint}")
            sidecar = read_sidecar(path, rebuild_hint=hint, verify_hash=False)  # hashed once, in _load
            engine_record(sidecar, str(path))
            if sidecar.artifact.graph != graph:
                raise SpecError(f"{path}'s sidecar describes graph {sidecar.artifact.graph!r}, not {graph!r}. {hint}")
            sidecars[graph] = sidecar
            backends[graph] = cls(path, sidecar.model, sidecar.model.graph(graph), **options)
        if sidecars["encoder"].model != sidecars["head"].model:
            raise SpecError(f"the encoder and head engines in {model_dir} come from different models. Rebuild: {hint}")
        encoder = sidecars["encoder"]
        return ModelBackends(
            model=encoder.model, encoder=backends["encoder"], head=backends["head"], weights=encoder.artifact.weights
        )

    # -- facts --------------------------------------------------------------------------------------------------
    def _engine_record(self) -> EngineRecord:
        if self._record is None:
            self._record = engine_record(read_sidecar(self.artifact, verify_hash=False), str(self.artifact))
        return self._record

    @property
    def max_batch_size(self) -> int | None:
        """The profile's max batch (buffers are sized for it)."""
        return self._engine_record().profile.max

    @property
    def preferred_batch_size(self) -> int:
        """The profile's opt batch (kernels are tuned for it)."""
        return self._engine_record().profile.opt

    @property
    def description(self) -> str:
        """``tensorrt fp16 on NVIDIA H100 (cc 9.0)``."""
        record = self._engine_record()
        if self._device_info is not None:
            gpu, cc = self._device_info.name, self._device_info.compute_capability
        else:
            gpu = record.gpu_name or "any GPU"
            cc = record.compute_capability or ",".join(record.target_compute_capabilities)
        return f"{self.name} {record.build.precision} on {gpu} (cc {cc})"

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            self._load_steps()
        except BaseException:
            self._unload()
            raise

    def _load_steps(self) -> None:
        require_tensorrt(self.product)
        self._api = cuda.load_cuda(self._allocator)
        self._device_info = cuda.require_device(self._api, self._device)
        loaded = load_checked_engine(
            self.artifact,
            self._device_info,
            self._capture,
            allow_host_code=self._allow_host_code,
            allow_other_gpu_model=self._allow_other_gpu_model,
            product=self.product,
        )
        self._record, self._engine = loaded.record, loaded.engine
        self._runtime, self._logger = loaded.runtime, loaded.logger
        self._engine_sha256 = loaded.sidecar.artifact.sha256
        dtypes = self._dtypes = check_engine_io(self._engine, self.graph, loaded.record.profile, self.product)
        self._context = self._create_context(self._engine)
        if self._context is None:
            raise BackendError(
                f"TensorRT could not create an execution context for {self.artifact}"
                f" (out of GPU memory?){self._capture.summary()}"
            )
        self._stream = cuda.Stream(self._api)
        self._allocate(dtypes, loaded.record.profile.max)
        self._tensor_device = self._api.tensor_device(self._device) if torch_installed() else None

    def _create_context(self, engine: trt.ICudaEngine) -> trt.IExecutionContext | None:
        """The execution context (TensorRT-RTX's adds its runtime cache)."""
        return engine.create_execution_context()

    def _allocate(self, dtypes: Mapping[str, np.dtype[Any]], max_batch: int) -> None:
        """Pinned host and device buffers for ``max_batch``, allocated once; device addresses set once."""
        if self._api is None or self._context is None:
            raise BackendError("internal error: buffers allocated before the CUDA API and context")
        for spec in (*self.graph.inputs, *self.graph.outputs):
            shape = batch_shape(spec, max_batch)
            dtype = dtypes[spec.name]
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            pinned = cuda.PinnedBuffer(self._api, nbytes)
            self._pinned.append(pinned)
            self._host[spec.name] = pinned.view(dtype, shape)
            device = self._device_buffers[spec.name] = cuda.DeviceBuffer(self._api, nbytes)
            if not self._context.set_tensor_address(spec.name, device.ptr):
                raise BackendError(f"TensorRT refused the device address of {spec.name!r}{self._capture.summary()}")

    def _unload(self) -> None:
        # Free in reverse order of creation; the context and engine go before the memory they use.
        self._before_release()
        self._context = None
        self._engine = None
        self._runtime = None
        self._logger = None
        errors: list[BaseException] = []
        for closer in [*(b.close for b in self._device_buffers.values()), *(p.close for p in self._pinned)]:
            try:
                closer()
            except Exception as exc:  # keep freeing the rest
                errors.append(exc)
        self._device_buffers.clear()
        self._pinned.clear()
        self._host.clear()
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception as exc:
                errors.append(exc)
            self._stream = None
        if isinstance(self._api, cuda.PyCudaApi):
            self._api.release()
        self._api = None
        self._tensor_device = None
        if errors:
            log.warning("freeing CUDA resources of %s failed: %s", self.artifact.name, errors[0])

    # -- inference ------------------------------------------------------------------------------------------------
    def _before_release(self) -> None:
        """Hook: runs before the context and engine are released (TensorRT-RTX saves its runtime cache)."""

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        context, stream, api = self._ready()
        n = int(next(iter(feeds.values())).shape[0])
        for spec in (*self.graph.inputs, *self.graph.outputs):  # infer_device may have pointed them elsewhere
            self._set_address(spec.name, self._device_buffers[spec.name].ptr)
        self._set_shapes(n)
        for spec in self.graph.inputs:
            host = self._host[spec.name][:n]
            np.copyto(host, feeds[spec.name], casting="same_kind")  # float32 -> float16 where the engine wants it
            api.memcpy_htod_async(self._device_buffers[spec.name].ptr, host, stream.handle)
        if not context.execute_async_v3(stream.handle):
            raise BackendError(f"TensorRT execution of {self.artifact.name} failed{self._capture.summary()}")
        for spec in self.graph.outputs:
            api.memcpy_dtoh_async(self._host[spec.name][:n], self._device_buffers[spec.name].ptr, stream.handle)
        stream.synchronize()
        # Copies: the pinned buffers are overwritten by the next call.
        return {s.name: self._host[s.name][:n].astype(np.dtype(s.dtype), copy=True) for s in self.graph.outputs}

    def _ready(self) -> tuple[trt.IExecutionContext, cuda.Stream, cuda.CudaApi]:
        """The loaded context, stream and CUDA API, with this thread on the engine's device."""
        context, stream, api = self._context, self._stream, self._api
        if context is None or stream is None or api is None:
            raise BackendError(f"{self.artifact} is not loaded")
        api.set_device(self._device)  # this thread may not be the one that loaded the engine
        return context, stream, api

    def _set_shapes(self, n: int) -> None:
        """Set every input's shape for a batch of ``n`` and check the output shapes the engine infers from them."""
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = trt_module(self.product)
        context = self._context
        if context is None:
            raise BackendError(f"{self.artifact} is not loaded")
        for spec in self.graph.inputs:
            shape = batch_shape(spec, n)
            if not context.set_input_shape(spec.name, trt.Dims(list(shape))):
                raise BackendError(
                    f"TensorRT rejected input {spec.name!r} of shape {shape}: the engine profile is "
                    f"{self._engine_record().profile}{self._capture.summary()}"
                )
        for spec in self.graph.outputs:
            got = dims_tuple(context.get_tensor_shape(spec.name))
            if got != batch_shape(spec, n):
                raise BackendError(f"engine output {spec.name!r} has shape {got}, expected {batch_shape(spec, n)}")

    def _set_address(self, name: str, ptr: int) -> None:
        if self._context is None or not self._context.set_tensor_address(name, ptr):
            raise BackendError(f"TensorRT refused the device address of {name!r}{self._capture.summary()}")

    # -- device-resident inference --------------------------------------------------------------------------------
    @property
    def tensor_device(self) -> str | None:
        """The engine's GPU as a torch device (``cuda:N``) once loaded, where torch is installed; else None. Decided
        once, when loading: it is read on every ``infer_device`` call."""
        return self._tensor_device

    def _infer_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """The engine on torch tensors: their memory is bound directly (no copies; FP16 engine I/O is converted on
        the device), outputs are new tensors on the device.

        Synchronisation: none on the host. The engine runs on this backend's own stream, which first waits (a
        device-side event) for the caller's current torch stream, so it reads finished inputs; the caller's stream
        then waits for ours, so later torch work sees finished outputs; the tensors are marked as used on our stream
        so that torch's allocator does not reuse their memory early. Where the "device" is host memory (a test
        double of CUDA) the stream is synchronised instead.
        """
        import torch

        context, stream, _ = self._ready()
        n = int(next(iter(feeds.values())).shape[0])
        device = next(iter(feeds.values())).device
        bound: list[torch.Tensor] = []
        for spec in self.graph.inputs:
            tensor = feeds[spec.name].to(_torch_dtype(torch, self._dtypes[spec.name])).contiguous()
            bound.append(tensor)
            self._set_address(spec.name, tensor.data_ptr())
        self._set_shapes(n)
        outputs: dict[str, torch.Tensor] = {}
        for spec in self.graph.outputs:
            out = outputs[spec.name] = torch.empty(batch_shape(spec, n), device=device,
                                                   dtype=_torch_dtype(torch, self._dtypes[spec.name]))
            bound.append(out)
            self._set_address(spec.name, out.data_ptr())
        ours = None
        if device.type == "cuda":
            # torch >= 2.7 wraps a foreign stream with get_stream_from_external (ExternalStream is its older name)
            wrap = getattr(torch.cuda, "get_stream_from_external", None)
            ours = wrap(stream.handle, device) if wrap else torch.cuda.ExternalStream(stream.handle, device=device)
            ours.wait_stream(torch.cuda.current_stream(device))
        if not context.execute_async_v3(stream.handle):
            raise BackendError(f"TensorRT execution of {self.artifact.name} failed{self._capture.summary()}")
        if ours is not None:
            for tensor in bound:
                tensor.record_stream(ours)
            torch.cuda.current_stream(device).wait_stream(ours)
        else:
            stream.synchronize()
        return {name: out.float() for name, out in outputs.items()}  # float16 engine outputs, as infer() gives
