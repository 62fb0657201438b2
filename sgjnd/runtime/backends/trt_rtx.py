"""The TensorRT-RTX backend: the TensorRT backend's I/O on NVIDIA's TensorRT-RTX (RTX workstations, edge boxes).

TensorRT-RTX builds portable engines ahead of time, with no GPU (``sgjnd build DIR --runtime tensorrt-rtx``), and
compiles their kernels for the GPU the first time they run. Everything about buffers, streams, shapes and the
sidecar check is :class:`~sgjnd.runtime.backends.trt.TrtBackend`'s; this class adds what TensorRT-RTX has on top:

- ``Runtime.get_engine_validity`` before deserialising (done by the shared loader for this product), so an engine
  for another compute capability, driver or release is refused with TensorRT-RTX's own diagnostics;
- its **runtime cache**: the kernels compiled just in time are kept in a file and reloaded, so the second start of a
  service skips the compilation. TensorRT-RTX validates the file against its version, the GPU and the driver and
  ignores a stale one.

Engines are ``encoder[.PREC].rtx.engine`` beside the ONNX graphs. TensorRT-RTX does not support compute capability
9.0 (H100, H200) or 10.x: those GPUs need full TensorRT.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sgjnd.engine_spec import TENSORRT_RTX, TrtProduct
from sgjnd.errors import UsageError
from sgjnd.fileio import write_atomic
from sgjnd.runtime.backends.trt import TrtBackend

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

RUNTIME_CACHE_SUFFIX = ".runtime-cache"
"""Appended to the engine file name for its runtime cache (``encoder.fp16.rtx.engine.runtime-cache``)."""


def user_cache_dir() -> Path:
    """Where runtime caches go when the engine's folder is read-only: ``$XDG_CACHE_HOME/sgjnd/tensorrt-rtx``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sgjnd" / "tensorrt-rtx"


def runtime_cache_path(engine: Path, setting: str | os.PathLike[str] | None, engine_sha256: str) -> Path | None:
    """The runtime cache file for ``engine`` under the ``runtime_cache`` option.

    Args:
        engine: the engine file.
        setting: ``"auto"`` (beside the engine when its folder is writable, else in :func:`user_cache_dir` under the
            engine's hash), ``"off"`` or None (no cache), or a file path.
        engine_sha256: the engine's hash, naming the file in the user cache.

    Raises:
        UsageError: the path names a directory.
    """
    if setting is None or str(setting) == "off":
        return None
    if str(setting) != "auto":
        path = Path(setting)
        if path.is_dir():
            raise UsageError(f"runtime_cache must be a file path, 'auto' or 'off', got the directory {path}")
        return path
    if os.access(engine.parent, os.W_OK):
        return engine.with_name(engine.name + RUNTIME_CACHE_SUFFIX)
    return user_cache_dir() / f"{engine_sha256[:16]}-{engine.name}{RUNTIME_CACHE_SUFFIX}"


class RtxBackend(TrtBackend):
    """One engine on TensorRT-RTX.

    Args:
        artifact: the ``.rtx.engine`` file; its sidecar is read when the backend is loaded.
        model: the model spec (from the sidecar).
        graph: the graph this engine runs.
        device: CUDA device ordinal.
        allocator: ``auto`` (cuda-python, else pycuda), ``cuda-python`` or ``pycuda``.
        runtime_cache: ``auto`` (default: beside the engine, or in the user cache when that folder is read-only),
            ``off``, or a file path.
        threads: accepted for a uniform CLI and ignored.
    """

    name = "tensorrt-rtx"
    product: ClassVar[TrtProduct] = TENSORRT_RTX
    OPTIONS: Mapping[str, object] = {
        "device": 0,
        "allocator": "auto",
        "runtime_cache": "auto",
        "allow_other_gpu_model": False,  # accepted for a uniform interface: RTX engines are portable anyway
        "threads": None,
    }
    """Options the constructor accepts, with their defaults."""

    def __init__(self, artifact: Path, model: Any, graph: Any, **options: Any) -> None:
        super().__init__(artifact, model, graph, **options)
        self._runtime_cache_setting = options.get("runtime_cache", "auto")
        self._runtime_cache: Any = None
        self._runtime_cache_path: Path | None = None

    def _create_context(self, engine: trt.ICudaEngine) -> trt.IExecutionContext | None:
        """A context whose runtime config carries the runtime cache, loaded from its file when there is one."""
        rtx: Any = engine  # the runtime-config API is TensorRT-RTX's (and TensorRT 11's), not in the 10.13 stubs
        path = runtime_cache_path(self.artifact, self._runtime_cache_setting, self._engine_sha256)
        if path is None:
            context: trt.IExecutionContext | None = engine.create_execution_context()
            return context
        config = rtx.create_runtime_config()
        cache = config.create_runtime_cache()
        if path.is_file():
            if cache.deserialize(path.read_bytes()):
                log.info("loaded the TensorRT-RTX runtime cache %s", path)
            else:  # another GPU, driver or release: TensorRT-RTX rejects it and the kernels are compiled again
                log.warning("TensorRT-RTX rejected the runtime cache %s (made on another GPU, driver or release); "
                            "it will be replaced", path)
        if not config.set_runtime_cache(cache):
            log.warning("TensorRT-RTX refused a runtime cache for %s; running without one", self.artifact.name)
            context = engine.create_execution_context()
            return context
        self._runtime_cache, self._runtime_cache_path = cache, path
        context = rtx.create_execution_context(config)
        return context

    def _before_release(self) -> None:
        """Save the runtime cache (atomically) so the next start skips the JIT compilation."""
        cache, path = self._runtime_cache, self._runtime_cache_path
        self._runtime_cache = self._runtime_cache_path = None
        if cache is None or path is None:
            return
        try:
            data = bytes(memoryview(cache.serialize()))
            write_atomic(path, data)
            log.info("saved the TensorRT-RTX runtime cache %s (%d bytes)", path, len(data))
        except Exception as exc:  # a lost cache costs a recompilation, never a failed shutdown
            log.warning("could not save the TensorRT-RTX runtime cache %s: %s", path, exc)
