"""A thin, checked wrapper over the CUDA runtime: device query, streams, pinned host and device buffers, copies.

Used by the TensorRT backend and builder. ``cuda-python`` (``cuda.bindings.runtime``, what NVIDIA's TensorRT samples
use since 10.14) is preferred; ``pycuda`` is accepted when cuda-python is not installed. Every CUDA call's status
is checked: a missing driver or GPU raises :class:`BackendUnavailable` with one clear sentence, any other failure
raises :class:`BackendError` naming the call and CUDA's error name. Nothing here is imported at package import;
the CUDA modules are imported by :func:`load_cuda`.

Buffers are owned: ``close()`` frees them (idempotent), so a backend frees everything in ``__exit__``.
"""

from __future__ import annotations

import abc
import ctypes
import importlib
import importlib.metadata
import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from sgjnd.errors import BackendError, BackendUnavailable, UsageError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'sgjnd[trt]' (or: pip install cuda-python)"
"""How to install the CUDA bindings, quoted in errors."""

# cudaError_t values that mean "no usable GPU here" rather than "this call failed".
_UNAVAILABLE_ERRORS = {
    3: "cudaErrorInitializationError",
    34: "cudaErrorStubLibrary",
    35: "cudaErrorInsufficientDriver",
    46: "cudaErrorDevicesUnavailable",
    100: "cudaErrorNoDevice",
    101: "cudaErrorInvalidDevice",
    803: "cudaErrorSystemDriverMismatch",
    804: "cudaErrorCompatNotSupportedOnDevice",
}

_HOST_TO_DEVICE = 1  # cudaMemcpyKind values, fixed by the CUDA ABI
_DEVICE_TO_HOST = 2
_STREAM_NON_BLOCKING = 1  # cudaStreamNonBlocking: no implicit sync with the legacy default stream


@dataclass(frozen=True)
class DeviceInfo:
    """One CUDA device.

    Attributes:
        index: CUDA device ordinal.
        name: the device name (``NVIDIA H100 80GB HBM3``).
        major: compute capability major.
        minor: compute capability minor.
        total_memory: global memory in bytes.
    """

    index: int
    name: str
    major: int
    minor: int
    total_memory: int

    @property
    def compute_capability(self) -> str:
        """``major.minor``, as recorded in engine sidecars."""
        return f"{self.major}.{self.minor}"


class CudaApi(abc.ABC):
    """The CUDA operations the TensorRT code needs, with every status checked. Pointers and streams are ints."""

    name: str = ""

    @abc.abstractmethod
    def device_count(self) -> int:
        """Number of visible CUDA devices; raises BackendUnavailable when there is no driver or GPU."""

    @abc.abstractmethod
    def device_info(self, index: int) -> DeviceInfo:
        """Name, compute capability and memory of device ``index``."""

    @abc.abstractmethod
    def set_device(self, index: int) -> None:
        """Make device ``index`` current for the calling thread; cheap and idempotent (called before each run)."""

    @abc.abstractmethod
    def malloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory; returns the pointer."""

    @abc.abstractmethod
    def free(self, ptr: int) -> None:
        """Free device memory from :meth:`malloc`."""

    @abc.abstractmethod
    def malloc_host(self, nbytes: int) -> np.ndarray:
        """Allocate ``nbytes`` of pinned (page-locked) host memory as a uint8 array."""

    @abc.abstractmethod
    def free_host(self, array: np.ndarray) -> None:
        """Free pinned memory from :meth:`malloc_host`."""

    @abc.abstractmethod
    def stream_create(self) -> int:
        """Create a non-blocking stream; returns its handle."""

    @abc.abstractmethod
    def stream_destroy(self, stream: int) -> None:
        """Destroy a stream from :meth:`stream_create`."""

    @abc.abstractmethod
    def stream_synchronize(self, stream: int) -> None:
        """Wait for all work queued on ``stream``."""

    @abc.abstractmethod
    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        """Queue a copy of the contiguous host array ``src`` to device pointer ``dst`` on ``stream``."""

    @abc.abstractmethod
    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        """Queue a copy from device pointer ``src`` into the contiguous host array ``dst`` on ``stream``."""

    @abc.abstractmethod
    def memcpy_htod(self, dst: int, src: np.ndarray) -> None:
        """Copy the contiguous host array ``src`` to device pointer ``dst`` and wait."""

    def tensor_device(self, index: int) -> str:
        """The torch device whose memory this API's device pointers address (``cuda:<index>``)."""
        return f"cuda:{index}"

    @abc.abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the CUDA runtime, driver and binding package, for logs and sidecars."""


def _contiguous(array: np.ndarray, what: str) -> np.ndarray:
    if not array.flags.c_contiguous:
        raise BackendError(f"{what} needs a C-contiguous host array, got strides {array.strides}")
    return array


def _decode_name(raw: Any) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes | bytearray) else str(raw)
    return text.split("\x00", 1)[0].strip()


def _cuda_version_text(value: int) -> str:
    return f"{value // 1000}.{(value % 1000) // 10}" if value > 0 else "none"


# -- cuda-python ---------------------------------------------------------------------------------------------------
class CudaPythonApi(CudaApi):
    """:class:`CudaApi` over ``cuda.bindings.runtime`` (cuda-python >= 12.6) or ``cuda.cudart`` (older).

    Args:
        cudart: the CUDA runtime binding module (injected by tests).
        package_version: the cuda-python version, for messages.
    """

    name = "cuda-python"

    def __init__(self, cudart: ModuleType | Any, package_version: str = "unknown") -> None:
        self._rt = cudart
        self._package_version = package_version

    # every binding returns (status, *values); status 0 is cudaSuccess
    def _call(self, fn_name: str, *args: Any) -> tuple[Any, ...]:
        fn = getattr(self._rt, fn_name)
        try:
            result = fn(*args)
        except Exception as exc:  # the bindings raise when the driver library itself cannot be loaded
            raise BackendUnavailable(
                f"CUDA call {fn_name} could not run ({type(exc).__name__}: {exc}); is the NVIDIA driver installed?"
            ) from exc
        if not isinstance(result, tuple) or not result:
            raise BackendError(f"CUDA call {fn_name} returned {result!r}, expected a (status, ...) tuple")
        status = int(result[0])
        if status != 0:
            raise self._error(fn_name, status)
        return result[1:]

    def _error_text(self, status: int) -> str:
        try:
            name_result = self._rt.cudaGetErrorName(self._rt.cudaError_t(status))
            text_result = self._rt.cudaGetErrorString(self._rt.cudaError_t(status))
            name, text = _decode_name(name_result[1]), _decode_name(text_result[1])
        except Exception:  # an unknown code must not hide the original failure
            name, text = _UNAVAILABLE_ERRORS.get(status, f"cudaError {status}"), "no description"
        return f"{name} ({text})"

    def _error(self, fn_name: str, status: int) -> BackendError | BackendUnavailable:
        if status in _UNAVAILABLE_ERRORS:
            return BackendUnavailable(self._unavailable_text(fn_name, status))
        return BackendError(f"CUDA call {fn_name} failed: {self._error_text(status)}")

    def _unavailable_text(self, fn_name: str, status: int) -> str:
        driver = self._driver_version()
        runtime = self._runtime_version()
        if driver == 0:
            cause = "no NVIDIA driver is installed or loadable"
        elif status == 35 and runtime > driver:
            cause = (
                f"the NVIDIA driver supports CUDA {_cuda_version_text(driver)} but cuda-python {self._package_version}"
                f" needs CUDA {_cuda_version_text(runtime)}: update the driver, or install the cuda-python matching it"
                f" (pip install 'cuda-python=={driver // 1000}.*')"
            )
        else:
            cause = self._error_text(status)
        return f"no usable NVIDIA GPU: {fn_name} reports {_UNAVAILABLE_ERRORS[status]}; {cause}"

    def _driver_version(self) -> int:
        try:
            status, value = self._rt.cudaDriverGetVersion()
            return int(value) if int(status) == 0 else 0
        except Exception:
            return 0

    def _runtime_version(self) -> int:
        try:
            status, value = self._rt.cudaRuntimeGetVersion()
            return int(value) if int(status) == 0 else 0
        except Exception:
            return 0

    def device_count(self) -> int:
        (count,) = self._call("cudaGetDeviceCount")
        return int(count)

    def device_info(self, index: int) -> DeviceInfo:
        (props,) = self._call("cudaGetDeviceProperties", int(index))
        return DeviceInfo(
            index=int(index),
            name=_decode_name(props.name),
            major=int(props.major),
            minor=int(props.minor),
            total_memory=int(props.totalGlobalMem),
        )

    def set_device(self, index: int) -> None:
        self._call("cudaSetDevice", int(index))

    def malloc(self, nbytes: int) -> int:
        (ptr,) = self._call("cudaMalloc", int(nbytes))
        return int(ptr)

    def free(self, ptr: int) -> None:
        self._call("cudaFree", int(ptr))

    def malloc_host(self, nbytes: int) -> np.ndarray:
        (ptr,) = self._call("cudaMallocHost", int(nbytes))
        buffer = (ctypes.c_uint8 * int(nbytes)).from_address(int(ptr))
        return np.frombuffer(memoryview(buffer).cast("B"), dtype=np.uint8)

    def free_host(self, array: np.ndarray) -> None:
        self._call("cudaFreeHost", int(array.ctypes.data))

    def stream_create(self) -> int:
        (stream,) = self._call("cudaStreamCreateWithFlags", _STREAM_NON_BLOCKING)
        return int(stream)

    def stream_destroy(self, stream: int) -> None:
        self._call("cudaStreamDestroy", int(stream))

    def stream_synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", int(stream))

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        src = _contiguous(src, "memcpy_htod_async")
        kind = self._rt.cudaMemcpyKind(_HOST_TO_DEVICE)
        self._call("cudaMemcpyAsync", int(dst), int(src.ctypes.data), int(src.nbytes), kind, int(stream))

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        dst = _contiguous(dst, "memcpy_dtoh_async")
        kind = self._rt.cudaMemcpyKind(_DEVICE_TO_HOST)
        self._call("cudaMemcpyAsync", int(dst.ctypes.data), int(src), int(dst.nbytes), kind, int(stream))

    def memcpy_htod(self, dst: int, src: np.ndarray) -> None:
        src = _contiguous(src, "memcpy_htod")
        kind = self._rt.cudaMemcpyKind(_HOST_TO_DEVICE)
        self._call("cudaMemcpy", int(dst), int(src.ctypes.data), int(src.nbytes), kind)

    def versions(self) -> dict[str, str]:
        return {
            "cuda_runtime": _cuda_version_text(self._runtime_version()),
            "cuda_driver": _cuda_version_text(self._driver_version()),
            "cuda-python": self._package_version,
        }


# -- pycuda --------------------------------------------------------------------------------------------------------
class PyCudaApi(CudaApi):
    """:class:`CudaApi` over pycuda, for machines that have pycuda but not cuda-python.

    pycuda binds a context to a thread: this class retains the device's primary context (the one TensorRT uses)
    and pushes it on :meth:`set_device`; use a backend from the thread that loaded it.

    Args:
        driver: the ``pycuda.driver`` module (injected by tests).
    """

    name = "pycuda"

    def __init__(self, driver: ModuleType | Any, package_version: str = "unknown") -> None:
        self._drv = driver
        self._package_version = package_version
        self._context: Any = None
        self._pushed: set[int] = set()  # threads on whose context stack our context is
        self._streams: dict[int, Any] = {}
        self._allocations: dict[int, Any] = {}
        try:
            driver.init()
        except Exception as exc:
            raise BackendUnavailable(f"no usable NVIDIA GPU: pycuda cannot initialise CUDA ({exc})") from exc

    def _run(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            raise BackendError(f"CUDA call {what} failed (pycuda): {type(exc).__name__}: {exc}") from exc

    def device_count(self) -> int:
        try:
            return int(self._drv.Device.count())
        except Exception as exc:
            raise BackendUnavailable(f"no usable NVIDIA GPU: pycuda reports {exc}") from exc

    def device_info(self, index: int) -> DeviceInfo:
        device = self._run("Device", self._drv.Device, int(index))
        major, minor = self._run("compute_capability", device.compute_capability)
        return DeviceInfo(int(index), _decode_name(device.name()), int(major), int(minor), int(device.total_memory()))

    def set_device(self, index: int) -> None:
        if self._context is None:
            device = self._run("Device", self._drv.Device, int(index))
            self._context = self._run("retain_primary_context", device.retain_primary_context)
        thread = threading.get_ident()
        if thread not in self._pushed:
            self._run("Context.push", self._context.push)
            self._pushed.add(thread)

    def malloc(self, nbytes: int) -> int:
        allocation = self._run("mem_alloc", self._drv.mem_alloc, int(nbytes))
        ptr = int(allocation)
        self._allocations[ptr] = allocation
        return ptr

    def free(self, ptr: int) -> None:
        allocation = self._allocations.pop(int(ptr), None)
        if allocation is not None:
            self._run("DeviceAllocation.free", allocation.free)

    def malloc_host(self, nbytes: int) -> np.ndarray:
        array: np.ndarray = self._run("pagelocked_empty", self._drv.pagelocked_empty, (int(nbytes),), np.uint8)
        return array

    def free_host(self, array: np.ndarray) -> None:
        base = getattr(array, "base", None)
        if base is not None and hasattr(base, "free"):
            self._run("HostAllocation.free", base.free)

    def stream_create(self) -> int:
        stream = self._run("Stream", self._drv.Stream)
        handle = int(stream.handle)
        self._streams[handle] = stream
        return handle

    def stream_destroy(self, stream: int) -> None:
        self._streams.pop(int(stream), None)  # pycuda destroys the stream with its object

    def stream_synchronize(self, stream: int) -> None:
        self._run("Stream.synchronize", self._streams[int(stream)].synchronize)

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        src = _contiguous(src, "memcpy_htod_async")
        self._run("memcpy_htod_async", self._drv.memcpy_htod_async, int(dst), src, self._streams[int(stream)])

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        dst = _contiguous(dst, "memcpy_dtoh_async")
        self._run("memcpy_dtoh_async", self._drv.memcpy_dtoh_async, dst, int(src), self._streams[int(stream)])

    def memcpy_htod(self, dst: int, src: np.ndarray) -> None:
        self._run("memcpy_htod", self._drv.memcpy_htod, int(dst), _contiguous(src, "memcpy_htod"))

    def release(self) -> None:
        """Pop the context that :meth:`set_device` pushed on the calling thread."""
        thread = threading.get_ident()
        if self._context is not None and thread in self._pushed:
            self._pushed.discard(thread)
            self._run("Context.pop", self._drv.Context.pop)

    def versions(self) -> dict[str, str]:
        try:
            driver = _cuda_version_text(int(self._drv.get_driver_version()))
        except Exception:
            driver = "unknown"
        return {"cuda_driver": driver, "pycuda": self._package_version}


# -- selection -----------------------------------------------------------------------------------------------------
ALLOCATORS: tuple[str, ...] = ("auto", "cuda-python", "pycuda")
"""Values of the ``allocator`` option: ``auto`` prefers cuda-python and falls back to pycuda."""


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _import_cudart() -> ModuleType:
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return importlib.import_module("cuda.cudart")  # cuda-python < 12.6 spelled it this way


def load_cuda(allocator: str = "auto") -> CudaApi:
    """The CUDA API to use: cuda-python, or pycuda when cuda-python is missing (``auto``).

    Raises:
        BackendUnavailable: neither package is installed (with the pip command), or the chosen one is missing.
        UsageError: ``allocator`` is not one of :data:`ALLOCATORS`.
    """
    if allocator not in ALLOCATORS:
        raise UsageError(f"allocator must be one of {', '.join(ALLOCATORS)}, got {allocator!r}")
    problems: list[str] = []
    if allocator in ("auto", "cuda-python"):
        try:
            return CudaPythonApi(_import_cudart(), _package_version("cuda-python"))
        except ImportError as exc:
            problems.append(f"cuda-python: {exc}")
    if allocator in ("auto", "pycuda"):
        try:
            driver = importlib.import_module("pycuda.driver")
        except ImportError as exc:
            problems.append(f"pycuda: {exc}")
        else:
            return PyCudaApi(driver, _package_version("pycuda"))
    raise BackendUnavailable(f"no CUDA Python bindings are installed ({'; '.join(problems)}). Install: {INSTALL_HINT}")


def require_device(api: CudaApi, index: int = 0) -> DeviceInfo:
    """Check that device ``index`` exists, make it current and describe it.

    Raises:
        BackendUnavailable: no driver, no GPU, or fewer devices than ``index + 1`` (with the count).
    """
    count = api.device_count()
    if count < 1:
        raise BackendUnavailable("no usable NVIDIA GPU: CUDA reports 0 devices (check CUDA_VISIBLE_DEVICES)")
    if not 0 <= index < count:
        raise BackendUnavailable(f"CUDA device {index} does not exist: this machine has {count} (0..{count - 1})")
    api.set_device(index)
    return api.device_info(index)


# -- owned buffers ---------------------------------------------------------------------------------------------------
class DeviceBuffer:
    """Device memory of a fixed size, freed by :meth:`close`.

    Args:
        api: the CUDA API that allocates it.
        nbytes: size in bytes (at least 1).
    """

    def __init__(self, api: CudaApi, nbytes: int) -> None:
        self._api = api
        self.nbytes = max(int(nbytes), 1)
        self.ptr: int = api.malloc(self.nbytes)

    def close(self) -> None:
        """Free the memory; safe to call twice."""
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self._api.free(ptr)


class PinnedBuffer:
    """Page-locked host memory of a fixed size, viewed as typed arrays, freed by :meth:`close`.

    Args:
        api: the CUDA API that allocates it.
        nbytes: size in bytes (at least 1).
    """

    def __init__(self, api: CudaApi, nbytes: int) -> None:
        self._api = api
        self.nbytes = max(int(nbytes), 1)
        self._raw: np.ndarray | None = api.malloc_host(self.nbytes)

    def view(self, dtype: np.dtype[Any] | type, shape: tuple[int, ...]) -> np.ndarray:
        """The first ``prod(shape)`` elements as an array of ``dtype`` and ``shape`` (no copy).

        Raises:
            BackendError: the buffer is closed or too small.
        """
        if self._raw is None:
            raise BackendError("pinned buffer used after close()")
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dt.itemsize > self.nbytes:
            raise BackendError(f"pinned buffer of {self.nbytes} bytes cannot hold {shape} {dt}")
        return self._raw[: count * dt.itemsize].view(dt).reshape(shape)

    def close(self) -> None:
        """Free the memory; safe to call twice. Views taken earlier must not be used afterwards."""
        if self._raw is not None:
            raw, self._raw = self._raw, None
            self._api.free_host(raw)


class Stream:
    """A CUDA stream, destroyed by :meth:`close`."""

    def __init__(self, api: CudaApi) -> None:
        self._api = api
        self.handle: int = api.stream_create()
        self._open = True

    def synchronize(self) -> None:
        """Wait for all work queued on the stream."""
        self._api.stream_synchronize(self.handle)

    def close(self) -> None:
        """Destroy the stream; safe to call twice."""
        if self._open:
            self._open = False
            self._api.stream_destroy(self.handle)
