"""The runner contract and the backend base every inference library implements (Polygraphy's runner lifecycle).

:class:`Runner` is what the predictor, compare, the benchmarks and the job/serve wrappers depend on: ``infer`` plus
its batch-size limits and a description. :class:`Backend` is the base of the runners that load an artifact: it
runs one graph (``encoder`` or ``head``) of one model; construction only stores arguments: no file is read, no
library is imported and no device is touched until ``__enter__``. ``infer`` checks the feeds against the graph
spec, then calls the backend's ``_infer``. Wrappers (one-at-a-time locks, the service's micro-batcher) implement
:class:`Runner` by composition around an entered backend. :class:`ModelBackends` holds the two runners of a model.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from sgjnd.errors import BackendError, UsageError
from sgjnd.spec import GraphSpec, ModelSpec

PREFERRED_BATCH: dict[str, int] = {"encoder": 16, "head": 256}
"""Default batch sizes on dynamic-shape backends. Encoder: 16 patches keep a CPU's matmul kernels busy without a
large memory peak at s = 224. Head: a few small matmuls per pair, where the per-call overhead dominates."""


@runtime_checkable
class Runner(Protocol):
    """Runs one graph: what every caller of inference needs, whatever runs it (a backend or a wrapper of one)."""

    @property
    def max_batch_size(self) -> int | None:
        """Largest batch ``infer`` accepts; None when unbounded."""

    @property
    def preferred_batch_size(self) -> int:
        """The batch size callers should fill (bounded by ``max_batch_size``)."""

    @property
    def description(self) -> str:
        """A short human-readable label (backend, device, precision)."""

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` (name -> array) and return its outputs by name."""


@runtime_checkable
class DeviceRunner(Protocol):
    """A runner that also runs on torch tensors that already live where it computes (DESIGN.md §3: on a GPU, the
    encoder's features stay on the device and feed the head directly; only S(QF), q and w come back).

    ``tensor_device`` is the torch device (``"cuda:0"``, or ``"cpu"`` for CPU runners that can read torch tensors in
    place) or None when this runner cannot take tensors now (not loaded, no torch, a provider that cannot). Work is
    enqueued in stream order: outputs may be used by later torch work on the caller's current stream without a host
    synchronisation; each backend states the synchronisations it does make.
    """

    @property
    def tensor_device(self) -> str | None:
        """Where ``infer_device`` takes and returns tensors; None when it cannot."""

    def infer_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run the graph on torch tensors on ``tensor_device``; outputs are torch tensors there."""


def torch_installed() -> bool:
    """Whether torch can be imported here, without importing it (device tensors are torch tensors)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a blocked or broken installation
        return False


def tensor_device_of(runner: Runner) -> str | None:
    """The device where ``runner`` runs on tensors (:class:`DeviceRunner`), or None."""
    return runner.tensor_device if isinstance(runner, DeviceRunner) else None


@dataclass
class ModelBackends:
    """The two graphs of one model as runners, plus the model spec they share.

    Entering it enters each runner that is a context manager (a :class:`Backend` loads its artifact); wrappers made
    from an already entered model are plain runners and are not entered again.
    """

    model: ModelSpec
    encoder: Runner
    head: Runner
    weights: str = ""

    def __enter__(self) -> ModelBackends:
        _enter(self.encoder)
        try:
            _enter(self.head)
        except BaseException:
            _exit(self.encoder)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            _exit(self.head)
        finally:
            _exit(self.encoder)


def _enter(runner: Runner) -> None:
    if isinstance(runner, AbstractContextManager):
        runner.__enter__()


def _exit(runner: Runner) -> None:
    if isinstance(runner, AbstractContextManager):
        runner.__exit__(None, None, None)


class Backend(abc.ABC):
    """One graph on one inference library.

    Args:
        artifact: the file to load (checkpoint, ONNX graph or engine).
        model: the model spec read from the artifact's sidecar.
        graph: which graph of the model this backend runs.
        options: backend-specific options (providers, threads, device, ...).
    """

    name: ClassVar[str]

    def __init__(self, artifact: Path, model: ModelSpec, graph: GraphSpec, **options: Any) -> None:
        self.artifact = Path(artifact)
        self.model = model
        self.graph = graph
        self.options = options
        self._active = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> Backend:
        self._load()
        self._active = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._active = False
        self._unload()

    @property
    def max_batch_size(self) -> int | None:
        """Largest batch the loaded artifact accepts; None when unbounded."""
        return None

    @property
    def preferred_batch_size(self) -> int:
        """The batch size callers should fill: :data:`PREFERRED_BATCH` for the graph, bounded by ``max_batch_size``."""
        preferred = PREFERRED_BATCH[self.graph.name]
        limit = self.max_batch_size
        return min(preferred, limit) if limit else preferred

    @property
    def description(self) -> str:
        """A short human-readable label (backend, device, precision)."""
        return self.name

    # -- inference -------------------------------------------------------------------------------------------
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` (name -> array) and return outputs by name.

        Raises:
            UsageError: a feed is missing, extra, or of the wrong dtype or shape.
            BackendError: the backend is not active (use it in a ``with`` block) or inference failed.
        """
        if not self._active:
            raise BackendError(f"{self.name} backend for {self.graph.name} is not loaded: use it in a `with` block")
        check_feeds(self.graph, feeds, self.max_batch_size)
        outputs = self._infer(feeds)
        missing = [t.name for t in self.graph.outputs if t.name not in outputs]
        if missing:
            raise BackendError(f"{self.name} backend returned no {missing} for graph {self.graph.name}")
        return outputs

    @abc.abstractmethod
    def _load(self) -> None:
        """Load the artifact and allocate resources."""

    @abc.abstractmethod
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run inference on checked feeds."""

    def _unload(self) -> None:  # noqa: B027 - optional hook: most backends free everything by dropping references
        """Free what ``_load`` allocated."""

    # -- device-resident inference (DeviceRunner) ------------------------------------------------------------
    @property
    def tensor_device(self) -> str | None:
        """Where :meth:`infer_device` takes and returns torch tensors; None (the default) when it cannot."""
        return None

    def infer_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run the graph on torch tensors already on :attr:`tensor_device`; outputs stay there.

        Raises:
            UsageError: a feed is missing, extra, not a tensor on the device, or of the wrong dtype or shape.
            BackendError: the backend is not active or cannot run on tensors, or inference failed.
        """
        if not self._active:
            raise BackendError(f"{self.name} backend for {self.graph.name} is not loaded: use it in a `with` block")
        device = self.tensor_device
        if device is None:
            raise BackendError(f"{self.description} cannot run on device tensors: use infer() with numpy arrays")
        check_tensor_feeds(self.graph, feeds, device, self.max_batch_size)
        outputs = self._infer_device(feeds)
        missing = [t.name for t in self.graph.outputs if t.name not in outputs]
        if missing:
            raise BackendError(f"{self.name} backend returned no {missing} for graph {self.graph.name}")
        return outputs

    def _infer_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run inference on checked tensor feeds (backends with a :attr:`tensor_device` implement it)."""
        raise BackendError(f"{self.description} cannot run on device tensors")


def check_tensor_feeds(graph: GraphSpec, feeds: Mapping[str, Any], device: str, max_batch: int | None = None) -> int:
    """:func:`check_feeds` for torch tensors: each must also be on ``device`` (no hidden copies between devices).

    Raises:
        UsageError: naming the tensor, what was expected and what came.
    """
    shapes: dict[str, np.ndarray] = {}
    for name, tensor in feeds.items():
        if not all(hasattr(tensor, a) for a in ("device", "dtype", "shape", "data_ptr")):
            raise UsageError(f"input {name!r} must be a torch tensor on {device}, got {type(tensor).__name__}")
        if str(tensor.device) != str(device) and not (str(device) == "cuda" and tensor.device.type == "cuda"):
            raise UsageError(f"input {name!r} must be on {device}, got a tensor on {tensor.device}")
        # A zero-strided stand-in with the tensor's dtype and shape, so the one check of dtypes and shapes applies.
        try:
            dtype = np.dtype(str(tensor.dtype).removeprefix("torch."))
        except TypeError:
            dtype = np.dtype(np.void)  # bfloat16 and other torch-only types: refused below as the wrong dtype
        shapes[name] = np.lib.stride_tricks.as_strided(np.zeros(1, dtype), tuple(tensor.shape), (0,) * tensor.dim())
    return check_feeds(graph, shapes, max_batch)


def check_feeds(graph: GraphSpec, feeds: Mapping[str, np.ndarray], max_batch: int | None = None) -> int:
    """Check ``feeds`` against ``graph``'s inputs and return the batch size.

    Raises:
        UsageError: naming the tensor, what was expected and what came.
    """
    expected = {t.name for t in graph.inputs}
    if set(feeds) != expected:
        raise UsageError(f"graph {graph.name} expects inputs {sorted(expected)}, got {sorted(feeds)}")
    batch: int | None = None
    for spec in graph.inputs:
        array = feeds[spec.name]
        if not isinstance(array, np.ndarray):
            raise UsageError(f"input {spec.name!r} must be a numpy array, got {type(array).__name__}")
        if array.dtype != np.dtype(spec.dtype):
            raise UsageError(f"input {spec.name!r} must be {spec.dtype}, got {array.dtype}")
        if array.ndim != len(spec.shape):
            raise UsageError(f"input {spec.name!r} must have shape {spec.shape}, got {array.shape}")
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
            if isinstance(want, int) and want != got:
                raise UsageError(f"input {spec.name!r} must have shape {spec.shape}, got {array.shape} (axis {axis})")
        n = int(array.shape[0])
        if batch is not None and n != batch:
            raise UsageError(f"all inputs of {graph.name} must share the batch size: got {batch} and {n}")
        batch = n
    if batch is None or batch < 1:
        raise UsageError(f"graph {graph.name} needs a batch of at least 1, got {batch}")
    if max_batch is not None and batch > max_batch:
        raise UsageError(f"batch {batch} exceeds the artifact's maximum batch {max_batch}; split the input")
    return batch
