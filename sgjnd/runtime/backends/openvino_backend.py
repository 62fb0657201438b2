"""OpenVINO backend: our ONNX graphs compiled for the CPU, with an explicit inference precision.

OpenVINO reads the same ``encoder[.PREC].onnx`` / ``head[.PREC].onnx`` files as ONNX Runtime, from the bytes whose
sha256 was checked against the sidecar, and compiles them for its CPU plugin. Precisions:

- ``fp32``: the FP32 graphs at inference precision f32.
- ``bf16``: the FP32 graphs at inference precision bf16. It is not a file in the model directory but a way of
  running the fp32 graphs, so ``precision="bf16"`` is shorthand for ``precision="fp32", inference_precision="bf16"``.
  Only on CPUs with AVX-512-BF16 or AMX (OpenVINO's ``OPTIMIZATION_CAPABILITIES`` lists ``BF16``); elsewhere it is
  refused, naming the flags the CPU lacks. Needs no calibration data, but is judged like any other precision:
  ``sgjnd calibrate DIR --precision bf16`` records its accuracy report, and it can miss the task bound where early
  high-resolution layers are sensitive (the demo checkpoint: worst 7 QF).
- ``int8-ort`` (U8S8 QDQ) and ``int8`` (S8S8 QDQ): OpenVINO turns each QuantizeLinear/DequantizeLinear pair into its
  own quantisation and runs the quantised convolutions and matrix products with integer kernels (VNNI/AMX), with u8
  activations for most of them in both flavours; the parts the graph keeps in float run at the inference precision
  (f32 unless asked otherwise). Both flavours measured within 3 % of each other on ``sgjnd_r50`` (AVX-512 VNNI,
  benchmarks/results/2026-12-07-openvino-cpu), so one calibration serves ONNX Runtime, TensorRT and OpenVINO;
  ``--backend auto`` prefers ``int8-ort``.
- ``fp16`` graphs are refused: the CPU plugin would only convert them back.

The inference precision is always set explicitly: on CPUs with AVX-512-BF16 or AMX, OpenVINO's own default is bf16,
so a graph left to the default would silently run in bf16. Never imports torch or onnxruntime.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sgjnd.errors import BackendError, BackendUnavailable, SpecError, UsageError
from sgjnd.runtime.backends.base import Backend, ModelBackends
from sgjnd.runtime.backends.ort import (
    load_checked_graph,
    max_batch_of,
    precision_of,
    read_graph_sidecars,
)
from sgjnd.runtime.backends.registry import graph_names
from sgjnd.runtime.modeldir import artifact_path
from sgjnd.spec import GraphSpec, ModelSpec

log = logging.getLogger(__name__)

InferencePrecision = Literal["fp32", "bf16"]

INFERENCE_PRECISIONS: dict[str, str] = {"fp32": "f32", "bf16": "bf16"}
"""Inference precisions this backend accepts -> OpenVINO's ``INFERENCE_PRECISION_HINT`` value."""

GRAPH_PRECISIONS: tuple[str, ...] = ("fp32", "int8-ort", "int8")
"""Model-directory precisions whose graphs this backend runs."""

OPENVINO_PRECISIONS: dict[str, tuple[str, InferencePrecision]] = {
    "fp32": ("fp32", "fp32"),
    "bf16": ("fp32", "bf16"),
    "int8-ort": ("int8-ort", "fp32"),
    "int8": ("int8", "fp32"),
}
"""What ``precision=`` may name -> (graphs of the model directory, default inference precision)."""

BF16_CPU_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")
"""Linux CPU flags of which one is needed for bf16 inference (AVX-512-BF16 or AMX-BF16)."""

DEVICE = "CPU"
"""The OpenVINO device every graph is compiled for."""

FP16_REFUSAL = (
    "the openvino backend does not run fp16 graphs: its CPU plugin converts them back to fp32. Use precision fp32, "
    "bf16 (the fp32 graphs at bf16, on AVX-512-BF16/AMX CPUs) or int8-ort"
)

_OV_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32", "u8": "uint8",
              "i8": "int8", "boolean": "bool"}


def bf16_refusal(cpu_flags: Sequence[str], capabilities: Sequence[str] | None, cpu_model: str = "this CPU") -> str:
    """Why bf16 inference cannot run here, or '' when it can.

    Args:
        cpu_flags: the CPU's instruction-set flags (``/proc/cpuinfo`` names).
        capabilities: OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU device; None when not known (then the flags
            decide alone).
        cpu_model: the CPU's name, for the message.

    Returns:
        '' when a bf16 flag is present (and OpenVINO, when asked, lists ``BF16``); otherwise a sentence naming what is
        missing and what to use instead.
    """
    flags = set(cpu_flags)
    has_flag = bool(flags & set(BF16_CPU_FLAGS))
    has_capability = capabilities is None or "BF16" in capabilities
    if has_flag and has_capability:
        return ""
    if not has_flag:
        lacking = f"it lacks {' and '.join(BF16_CPU_FLAGS)} (AVX-512-BF16, AMX)"
    else:
        lacking = f"OpenVINO's CPU capabilities are {', '.join(capabilities or []) or 'none'}, without BF16"
    return (f"bf16 inference needs a CPU with AVX-512-BF16 or AMX; {cpu_model}: {lacking}. Run precision fp32, or "
            "int8-ort (calibrated INT8) for speed, on this CPU")


def resolve_precision(precision: str, inference_precision: str | None) -> tuple[str, InferencePrecision]:
    """(graph precision, inference precision) for a ``precision`` and optional ``inference_precision``.

    Raises:
        UsageError: an unknown or refused precision, or ``precision="bf16"`` with another inference precision.
    """
    if precision == "fp16":
        raise UsageError(FP16_REFUSAL)
    if precision not in OPENVINO_PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} for the openvino backend: expected one of "
                         f"{', '.join(OPENVINO_PRECISIONS)}")
    graphs, default = OPENVINO_PRECISIONS[precision]
    if inference_precision is None:
        return graphs, default
    if inference_precision not in INFERENCE_PRECISIONS:
        raise UsageError(f"inference_precision must be one of {', '.join(INFERENCE_PRECISIONS)} or None, got "
                         f"{inference_precision!r}")
    if precision == "bf16" and inference_precision != "bf16":
        raise UsageError(f"precision bf16 means the fp32 graphs at inference precision bf16, but "
                         f"inference_precision={inference_precision!r} was also given: pass one of them")
    chosen: InferencePrecision = "bf16" if inference_precision == "bf16" else "fp32"
    return graphs, chosen


class OpenVinoBackend(Backend):
    """One ONNX graph on OpenVINO's CPU plugin.

    Construction checks and stores the options; ``with backend:`` checks the file against its sidecar, reads the
    verified bytes, compiles them for the CPU and checks the compiled inputs and outputs against the spec.

    Args:
        artifact: the ``.onnx`` file; its sidecar ``<file>.json`` must be beside it.
        model: the model spec the graph must implement.
        graph: which graph of the model the file holds.
        inference_precision: ``fp32`` or ``bf16`` (AVX-512-BF16/AMX CPUs only), set as OpenVINO's
            ``INFERENCE_PRECISION_HINT``; for an INT8 graph it is the precision of what the graph keeps in float.
        threads: ``INFERENCE_NUM_THREADS``; None leaves the choice to OpenVINO (every core).
        static_batch: compile for exactly this batch (smaller batches are padded, larger ones refused); None keeps
            the graph's dynamic batch.
        cache_dir: OpenVINO's ``CACHE_DIR``: compiled models are kept there and reused by later loads with the same
            graph, properties and OpenVINO version, which skips most of the compile time; keep it as private as the
            model directory (a cached blob is loaded instead of the verified graph). None keeps nothing.
        max_batch: the largest batch to accept; None reads the sidecar's ``details.max_batch`` at load.
    """

    name = "openvino"

    def __init__(
        self,
        artifact: Path,
        model: ModelSpec,
        graph: GraphSpec,
        *,
        inference_precision: InferencePrecision = "fp32",
        threads: int | None = None,
        static_batch: int | None = None,
        cache_dir: Path | None = None,
        max_batch: int | None = None,
    ) -> None:
        super().__init__(artifact, model, graph, inference_precision=inference_precision, threads=threads,
                         static_batch=static_batch, cache_dir=cache_dir)
        if inference_precision not in INFERENCE_PRECISIONS:
            raise UsageError(f"inference_precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got "
                             f"{inference_precision!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise UsageError(f"threads must be a positive integer or None (OpenVINO's choice), got {threads!r}")
        if static_batch is not None and (
            isinstance(static_batch, bool) or not isinstance(static_batch, int) or static_batch < 1
        ):
            raise UsageError(f"static_batch must be a positive integer or None (dynamic batch), got {static_batch!r}")
        if cache_dir is not None and Path(cache_dir).is_file():
            raise UsageError(f"cache_dir must be a directory (created when missing) or None, got the file {cache_dir}")
        self.inference_precision: InferencePrecision = inference_precision
        self.threads = threads
        self.static_batch = static_batch
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._max_batch = max_batch
        self._compiled: Any = None
        self._request: Any = None

    # -- properties ------------------------------------------------------------------------------------------
    @property
    def max_batch_size(self) -> int | None:
        """``static_batch`` when set, else the sidecar's ``max_batch`` unless given explicitly; None: unbounded."""
        if self.static_batch is not None:
            return self.static_batch if self._max_batch is None else min(self.static_batch, self._max_batch)
        return self._max_batch

    @property
    def preferred_batch_size(self) -> int:
        """``static_batch`` when set (a smaller batch is padded to it), else the base's default for the graph."""
        if self.static_batch is not None:
            return self.max_batch_size or self.static_batch
        return super().preferred_batch_size

    @property
    def description(self) -> str:
        """``openvino CPU int8-ort``, ``openvino CPU bf16 (fp32 graphs)``; ``static batch N`` when set."""
        graphs = precision_of(self.artifact)
        text = graphs
        if self.inference_precision == "bf16":
            text = "bf16 (fp32 graphs)" if graphs == "fp32" else f"{graphs} + bf16"
        batch = f", static batch {self.static_batch}" if self.static_batch else ""
        return f"openvino {DEVICE} {text}{batch}"

    @property
    def compiled_model(self) -> Any:
        """The ``openvino.CompiledModel`` while loaded (for inspection: properties, runtime precisions)."""
        if self._compiled is None:
            raise BackendError(f"openvino backend for {self.graph.name} is not loaded: use it in a `with` block")
        return self._compiled

    @classmethod
    def open_model(
        cls,
        model_dir: Path,
        *,
        precision: str = "fp32",
        inference_precision: InferencePrecision | None = None,
        threads: int | None = None,
        **options: Any,
    ) -> ModelBackends:
        """Both graphs of a model directory on OpenVINO; see :func:`open_model`."""
        return open_model(model_dir, precision=precision, inference_precision=inference_precision, threads=threads,
                          **options)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        ov = require_openvino()
        sidecar, data, precision, hint = load_checked_graph(self.artifact, self.model, self.graph.name)
        if "fp16" in (sidecar.artifact.precision, precision):
            raise UsageError(f"{self.artifact.name} is an fp16 graph, and {FP16_REFUSAL}")
        if self._max_batch is None:
            self._max_batch = max_batch_of(sidecar)
        if self.static_batch is not None and self._max_batch is not None and self.static_batch > self._max_batch:
            raise UsageError(f"static_batch {self.static_batch} exceeds {self.artifact.name}'s maximum batch "
                             f"{self._max_batch} (its sidecar's max_batch); use a batch up to it or export again "
                             "with a larger --max-batch")
        core = ov.Core()
        if self.inference_precision == "bf16":
            _require_bf16(core)
        properties = self._properties()
        try:
            network = core.read_model(data)
            if self.static_batch is not None:
                network.reshape({t.name: [self.static_batch, *t.shape[1:]] for t in self.graph.inputs})
            compiled = core.compile_model(network, DEVICE, properties)
        except Exception as exc:  # OpenVINO raises RuntimeError/its own types for unreadable or unsupported graphs
            raise BackendError(
                f"OpenVINO {ov.__version__} could not compile {self.artifact} for {DEVICE}: {type(exc).__name__}: "
                f"{exc}"
            ) from exc
        check_compiled_io(compiled, self.graph, self.artifact, hint, static_batch=self.static_batch)
        got = compiled.get_property("INFERENCE_PRECISION_HINT")
        got_name = got.get_type_name() if hasattr(got, "get_type_name") else str(got)
        if got_name != INFERENCE_PRECISIONS[self.inference_precision]:
            raise BackendError(f"OpenVINO compiled {self.artifact.name} at inference precision {got_name}, not the "
                               f"{self.inference_precision} asked for; report it with the output of `sgjnd info`")
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        log.debug("loaded %s on OpenVINO %s with %s", self.artifact, ov.__version__, properties)

    def _unload(self) -> None:
        self._request = None
        self._compiled = None

    def _properties(self) -> dict[str, Any]:
        """The compile properties: explicit inference precision, latency mode, threads and cache directory."""
        properties: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISIONS[self.inference_precision],
            # One synchronous request at a time: one stream with every thread, as the other backends run.
            "PERFORMANCE_HINT": "LATENCY",
        }
        if self.threads is not None:
            properties["INFERENCE_NUM_THREADS"] = self.threads
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            properties["CACHE_DIR"] = str(self.cache_dir)
        return properties

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = int(next(iter(feeds.values())).shape[0])
        inputs = {name: np.ascontiguousarray(value) for name, value in feeds.items()}
        if self.static_batch is not None and batch < self.static_batch:
            inputs = {name: _pad(value, self.static_batch) for name, value in inputs.items()}
        try:
            results = self._request.infer(inputs)
        except Exception as exc:  # OpenVINO's error types are not a stable hierarchy
            raise BackendError(f"OpenVINO failed on {self.artifact.name}: {type(exc).__name__}: {exc}") from exc
        outputs: dict[str, np.ndarray] = {}
        for spec in self.graph.outputs:
            value = np.asarray(results[spec.name])
            outputs[spec.name] = np.array(value[:batch], copy=True)
        return outputs


def openvino_installed() -> bool:
    """Whether the openvino package can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except ValueError:  # sys.modules holds None for it: imports of it are blocked
        return False


def require_openvino() -> Any:
    """The ``openvino`` module, imported now.

    Raises:
        BackendUnavailable: it is not installed; the message names the pip extra.
    """
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailable(
            f"the openvino backend needs the openvino package ({exc}). Install it with: pip install 'sgjnd[openvino]'"
        ) from exc
    return openvino


def _pad(array: np.ndarray, batch: int) -> np.ndarray:
    """``array`` padded with zeros along the first axis to ``batch`` rows."""
    padded = np.zeros((batch, *array.shape[1:]), dtype=array.dtype)
    padded[: len(array)] = array
    return padded


def _require_bf16(core: Any) -> None:
    """Refuse bf16 inference on a CPU without AVX-512-BF16/AMX, naming the flags it lacks."""
    from sgjnd.runtime.cpu import cpu_info

    cpu = cpu_info()
    capabilities = [str(c) for c in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")]
    reason = bf16_refusal(cpu["flags"], capabilities, cpu["model"])
    if reason:
        raise BackendUnavailable(reason)


def check_compiled_io(
    compiled: Any, graph: GraphSpec, artifact: Path, hint: str, *, static_batch: int | None = None
) -> None:
    """Refuse a compiled model whose inputs or outputs differ from ``graph`` in name, order, dtype or fixed dims.

    Args:
        compiled: an ``openvino.CompiledModel``.
        graph: the graph spec it must implement.
        artifact: the file it was compiled from (for the message).
        hint: the command that regenerates the artifact.
        static_batch: the batch the model was reshaped to, which then stands in for the spec's dynamic batch.

    Raises:
        SpecError: naming both signatures and the command that regenerates the artifact.
    """
    checks = (("inputs", graph.inputs, compiled.inputs), ("outputs", graph.outputs, compiled.outputs))
    for role, specs, ports in checks:
        got = [(_port_name(p, [t.name for t in specs]), _port_dims(p), _port_dtype(p)) for p in ports]
        want = [(t.name, _spec_dims(t.shape, static_batch), t.dtype) for t in specs]
        if got != want:
            raise SpecError(
                f"{artifact} does not implement the {graph.name} graph of its spec: {role} expected "
                f"{_describe(want)}, got {_describe(got)}. Regenerate it with: {hint}"
            )


def _spec_dims(shape: Sequence[int | str], static_batch: int | None) -> tuple[int | str, ...]:
    """A spec shape as the compiled model should show it: fixed ints, "?" for dynamic ones, the batch when static."""
    dims: list[int | str] = [d if isinstance(d, int) else "?" for d in shape]
    if static_batch is not None and dims and dims[0] == "?":
        dims[0] = static_batch
    return tuple(dims)


def _port_name(port: Any, wanted: Sequence[str]) -> str:
    """The port's name among ``wanted`` (OpenVINO ports may carry several), else its first name."""
    names = set(port.get_names())
    for name in wanted:
        if name in names:
            return name
    return str(port.get_any_name())


def _port_dims(port: Any) -> tuple[int | str, ...]:
    return tuple(d.get_length() if d.is_static else "?" for d in port.get_partial_shape())


def _port_dtype(port: Any) -> str:
    name = port.get_element_type().get_type_name()
    return _OV_DTYPES.get(name, name)


def _describe(tensors: Sequence[tuple[str, tuple[int | str, ...], str]]) -> str:
    return ", ".join(f"{name}{list(shape)}:{dtype}" for name, shape, dtype in tensors) or "none"


def open_model(
    model_dir: Path,
    *,
    precision: str = "fp32",
    inference_precision: InferencePrecision | None = None,
    threads: int | None = None,
    **options: Any,
) -> ModelBackends:
    """Both graphs of the model in ``model_dir`` on OpenVINO's CPU plugin (use the result in ``with``).

    Args:
        model_dir: a directory written by ``sgjnd export`` (and ``sgjnd calibrate`` for INT8).
        precision: fp32 (``encoder.onnx``), int8-ort or int8 (``encoder.<p>.onnx``), or bf16: the fp32 graphs at
            inference precision bf16.
        inference_precision: ``fp32`` or ``bf16`` for what runs in float; None: bf16 for precision bf16, else fp32.
        threads: ``INFERENCE_NUM_THREADS`` per compiled graph; None leaves the choice to OpenVINO.
        options: further :class:`OpenVinoBackend` options (static_batch, cache_dir).

    Raises:
        UsageError: unknown or refused precision (fp16), or conflicting precisions, or a bad option.
        SpecError: the directory, a graph or a sidecar is missing, or the sidecars disagree; the message names the
            command that regenerates them.
    """
    model_dir = Path(model_dir)
    graphs, inference = resolve_precision(precision, inference_precision)
    if not openvino_installed():
        require_openvino()  # raises, naming the pip extra, before any file is read
    sidecars = read_graph_sidecars(model_dir, graphs)
    model = sidecars["encoder"].model
    backends = {
        graph: OpenVinoBackend(
            artifact_path(model_dir, graph, graphs),
            model,
            model.graph(graph),
            inference_precision=inference,
            threads=threads,
            max_batch=max_batch_of(sidecars[graph]),
            **options,
        )
        for graph in graph_names()
    }
    weights = sidecars["encoder"].artifact.weights
    return ModelBackends(model=model, encoder=backends["encoder"], head=backends["head"], weights=weights)


__all__ = [
    "BF16_CPU_FLAGS",
    "FP16_REFUSAL",
    "GRAPH_PRECISIONS",
    "INFERENCE_PRECISIONS",
    "OPENVINO_PRECISIONS",
    "OpenVinoBackend",
    "bf16_refusal",
    "check_compiled_io",
    "open_model",
    "openvino_installed",
    "require_openvino",
    "resolve_precision",
]
