"""INT8 post-training quantisation of the ONNX graphs into explicit QDQ graphs, one flavour per target.

Two flavours come from one calibration (DESIGN §4, "calibrate once and emit the QDQ flavour each target wants"):

- ``tensorrt`` (``encoder.int8.onnx``): symmetric int8 everywhere: every zero point is 0, weights per channel on the
  output-channel axis (0 for Conv ``[K, C, R, S]``; the output axis of a Gemm/MatMul weight), activations per
  tensor. This is what TensorRT's ``IQuantizeLayer`` accepts ("zeroPt must only contain zero-valued
  coefficients") and what a ``STRONGLY_TYPED`` build on TensorRT 10 and 11 takes.
- ``ort-cpu`` (``encoder.int8-ort.onnx``): uint8 asymmetric activations and symmetric int8 per-channel weights
  (U8S8), the combination ONNX Runtime's x86 CPU kernels are fastest with. Int8 activations gave no gain there.

The engine is ONNX Runtime's ``quantize_static`` (``QuantFormat.QDQ``). We drive its calibrator ourselves, for two
reasons: the patches go through it in small chunks (the histogram calibrators otherwise keep every intermediate
tensor of every batch in memory: gigabytes for ResNet-50), and the entropy method gets a real histogram
(``quantize_static`` passes no bin count, and with its defaults of 128 bins and 128 quantised bins the KL search
has a single candidate, so "entropy" silently equals min-max). The ranges are saved with ONNX Runtime's own
``save_tensors_data`` and handed back to ``quantize_static`` through ``calibration_cache_path``, once per flavour.

NVIDIA ModelOpt (``nvidia-modelopt[onnx]``) can replace this engine for the TensorRT flavour when it is installed
in a separate environment (it pins ``onnxruntime-gpu`` and ``onnx~=1.21``): see :func:`modelopt_available`.
"""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import importlib.util
import io
import logging
import tempfile
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from sgjnd.calibration.fp16 import attention_matmuls
from sgjnd.calibration.trt_qdq import (
    constant_operand_nodes,
    drop_input_qdq,
    fusible_add_inputs,
    tensorrt_qdq_problems,
)
from sgjnd.errors import CalibrationError, UsageError
from sgjnd.progress import Progress

log = logging.getLogger(__name__)

Flavour = Literal["tensorrt", "ort-cpu"]
Method = Literal["entropy", "minmax", "percentile"]
ReduceRange = Literal["auto", "on", "off"]

FLAVOURS: tuple[Flavour, ...] = ("tensorrt", "ort-cpu")
"""QDQ flavours, by target."""

FLAVOUR_PRECISION: dict[Flavour, str] = {"tensorrt": "int8", "ort-cpu": "int8-ort"}
"""The model-directory precision (file-name infix) of each flavour."""

METHODS: tuple[Method, ...] = ("entropy", "minmax", "percentile")
"""Calibration methods."""

DEFAULT_OP_TYPES: tuple[str, ...] = ("Conv", "Gemm", "MatMul", "Add", "MaxPool")
"""Op types quantised by default: the compute ops, the residual Add (TensorRT wants a Q/DQ pair on the residual
branch, else "the Add will have to perform in FP16/FP32"), and MaxPool (keeps the stem in int8).
LayerNormalization, Softmax, GELU (Erf), the attention's Mul/Div scaling and the pooling stay in float: quantising
them costs accuracy and buys nothing."""

ORT_CPU_FLOAT_OP_TYPES: tuple[str, ...] = ("Add",)
"""Op types the ``ort-cpu`` flavour leaves in float: on a Xeon with VNNI, ResNet-50's quantised residual Adds
(QLinearAdd) cost more than they saved: INT8 went from 1.72x to 1.96x ORT FP32 at 2 threads and from 1.24x to 1.62x
at 8 with them in float (no change on AVX2; benchmarks/results/2026-11-26-h200-host-vnni). TensorRT keeps them."""

INTEGER_OPS: tuple[str, ...] = (
    "QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QGemm",
    "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool",
    "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QAttention", "NhwcQLinearConv",
)
"""Operators of ONNX Runtime's optimised graph that compute on integers."""

_WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

_GLOB_CHARS = frozenset("*?[")

FLOAT_COMPUTE_OPS: tuple[str, ...] = (
    "Conv", "FusedConv", "NhwcFusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm",
)
"""Float compute operators; those left in an INT8 graph's optimised form run in FP32."""


class DataReader(Protocol):
    """What ONNX Runtime's calibrator reads: ``get_next()`` returns a feed dict, then None."""

    def get_next(self) -> dict[str, np.ndarray] | None: ...


@dataclass(frozen=True)
class QuantizeConfig:
    """How a graph is calibrated and quantised.

    Attributes:
        method: calibration method of the activation ranges.
        op_types: op types that are calibrated and, unless excluded, quantised.
        exclude_op_types: op types left in float (removed from ``op_types``).
        exclude_nodes: node names left in float; an entry with ``*``, ``?`` or ``[...]`` is a shell-style pattern
            (``/backbone/_blocks.[0-5]/*``).
        quantize_attention: also quantise the attention's activation × activation MatMuls (QKᵀ and the
            probabilities × V). Off by default: per-tensor int8 logits distort the softmax (on the demo model its
            output fell to 1.5-6 dB SQNR), and these MatMuls are a few percent of the encoder's work.
        reduce_range: ONNX Runtime CPU flavour only: 7-bit weights, which avoids the int16 saturation of the U8S8
            kernels (``vpmaddubsw``) on x86 CPUs without VNNI. ``auto`` turns it on when this CPU lacks VNNI.
        num_bins: histogram bins of the entropy and percentile methods.
        percentile: the percentile kept by the percentile method.
        chunk: patches per calibrator pass (bounds the memory of the intermediate tensors).
    """

    method: Method = "entropy"
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    exclude_op_types: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()
    quantize_attention: bool = False
    reduce_range: ReduceRange = "auto"
    num_bins: int = 2048
    percentile: float = 99.999
    chunk: int = 8

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"calibration method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.num_bins < 256:
            raise UsageError(f"num_bins must be at least 256 (the entropy search needs room), got {self.num_bins}")
        if not 50.0 < self.percentile <= 100.0:
            raise UsageError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.chunk < 1:
            raise UsageError(f"chunk must be at least 1, got {self.chunk}")
        if self.reduce_range not in ("auto", "on", "off"):
            raise UsageError(f"reduce_range must be auto, on or off, got {self.reduce_range!r}")
        quantised = [t for t in self.op_types if t not in self.exclude_op_types]
        if not quantised:
            raise UsageError(
                f"excluding op types {list(self.exclude_op_types)} leaves nothing to quantise out of "
                f"{list(self.op_types)}; use --precision fp16 or exclude fewer types"
            )

    @property
    def quantized_op_types(self) -> list[str]:
        """``op_types`` less ``exclude_op_types``."""
        return [t for t in self.op_types if t not in self.exclude_op_types]

    def reduce_range_for(self, flavour: Flavour) -> bool:
        """Whether ``flavour``'s weights are quantised to 7 bits (only ever for ``ort-cpu``)."""
        if flavour != "ort-cpu" or self.reduce_range == "off":
            return False
        if self.reduce_range == "on":
            return True
        from sgjnd.runtime.cpu import cpu_info

        return not cpu_info()["vnni"]

    def range_settings(self) -> dict[str, Any]:
        """The settings that determine the calibrated ranges (the cache key's ``settings``).

        Exclusions are not among them: ranges are computed for all of ``op_types``, so trying other exclusions
        reuses the cached ranges.
        """
        settings: dict[str, Any] = {"method": self.method, "op_types": sorted(self.op_types)}
        if self.method != "minmax":
            settings["num_bins"] = self.num_bins
        if self.method == "percentile":
            settings["percentile"] = self.percentile
        return settings


@dataclass(frozen=True)
class QdqSummary:
    """What a QDQ graph contains (read back from the file).

    Attributes:
        quantize_nodes: number of QuantizeLinear nodes.
        dequantize_nodes: number of DequantizeLinear nodes.
        activation_dtypes: element types of the activation zero points (``int8``, ``uint8``), including constant
            inputs quantised like activations (the bias of an Add).
        weight_dtypes: element types of the weight zero points (input 1 of Conv, Gemm, MatMul).
        bias_dtypes: element types of quantised biases (int32), empty when biases stay float.
        nonzero_zero_points: names of zero-point initialisers with a non-zero value.
        per_channel_axes: consumer node name -> (its op type, the axis of its per-channel weight scales).
        quantized_nodes: names of float nodes that read a DequantizeLinear output.
        float_nodes: names of compute nodes (Conv, Gemm, MatMul) left unquantised.
    """

    quantize_nodes: int
    dequantize_nodes: int
    activation_dtypes: tuple[str, ...]
    weight_dtypes: tuple[str, ...]
    bias_dtypes: tuple[str, ...]
    nonzero_zero_points: tuple[str, ...]
    per_channel_axes: dict[str, tuple[str, int]]
    quantized_nodes: tuple[str, ...]
    float_nodes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (counts and lists, per-channel axes as a histogram)."""
        return {
            "quantize_nodes": self.quantize_nodes,
            "dequantize_nodes": self.dequantize_nodes,
            "activation_dtypes": list(self.activation_dtypes),
            "weight_dtypes": list(self.weight_dtypes),
            "bias_dtypes": list(self.bias_dtypes),
            "nonzero_zero_points": len(self.nonzero_zero_points),
            "per_channel_weights": dict(
                collections.Counter(f"{op} axis {a}" for op, a in self.per_channel_axes.values())
            ),
            "quantized_nodes": len(self.quantized_nodes),
            "float_compute_nodes": list(self.float_nodes),
        }


@dataclass(frozen=True)
class QuantizeResult:
    """One quantised graph.

    Attributes:
        path: the file written.
        flavour: tensorrt or ort-cpu.
        summary: what the graph holds.
        excluded_nodes: node names left in float on request (those that exist in the graph, patterns expanded).
        excluded_op_types: op types left in float: on request, and the flavour's (``ORT_CPU_FLOAT_OP_TYPES``).
        float_attention: the attention's activation × activation MatMuls left in float (``quantize_attention``).
        reduce_range: whether the weights were quantised to 7 bits.
        float_compute: compute nodes (Conv, Gemm, MatMul) left in float on purpose: the excluded ones, the
            attention and those of excluded op types; any other float compute node in the optimised graph is one
            ONNX Runtime failed to fuse into an integer kernel.
        notes: what else was done (pre-processing fallbacks, unknown node names ignored, ...).
    """

    path: Path
    flavour: Flavour
    summary: QdqSummary
    excluded_nodes: tuple[str, ...] = ()
    excluded_op_types: tuple[str, ...] = ()
    float_attention: tuple[str, ...] = ()
    reduce_range: bool = False
    float_compute: int = 0
    notes: tuple[str, ...] = field(default=())


def modelopt_available() -> bool:
    """True when NVIDIA ModelOpt's ONNX quantiser can be imported (it lives in its own environment)."""
    return importlib.util.find_spec("modelopt") is not None and importlib.util.find_spec("modelopt.onnx") is not None


# -- pre-processing ----------------------------------------------------------------------------------------------


def preprocess_for_quantization(src: Path, dst: Path) -> list[str]:
    """Run ONNX Runtime's ``quant_pre_process`` (ONNX shape inference and ORT's basic optimisations).

    Symbolic shape inference is skipped: it fails on the encoder (DESIGN §4). If pre-processing fails anyway, the
    graph is copied unchanged and the returned notes say so.

    Returns:
        Notes on what was done.
    """
    from onnxruntime.quantization import quant_pre_process

    try:
        with _quiet():
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return ["quant_pre_process (ONNX shape inference + ORT basic optimisations; symbolic shape inference skipped)"]
    except Exception as exc:  # ORT and ONNX raise a variety of types here
        log.warning("quant_pre_process failed on %s (%s: %s); quantising the graph as exported",
                    src.name, type(exc).__name__, exc)
        dst.write_bytes(Path(src).read_bytes())
        return [f"quant_pre_process failed ({type(exc).__name__}); the exported graph was quantised as is"]


@contextlib.contextmanager
def _quiet() -> Any:
    """Send ONNX Runtime quantisation's ``print`` chatter to the debug log, keeping stdout for our report."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    text = buffer.getvalue().strip()
    if text:
        log.debug("onnxruntime.quantization: %s", text)


# -- calibration -------------------------------------------------------------------------------------------------


def _ort_method(method: Method) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}[method]


def calibrate_ranges(
    model: Path,
    readers: Iterable[DataReader],
    out: Path,
    config: QuantizeConfig,
    *,
    label: str = "calibrating",
    progress: bool = True,
) -> Path:
    """Compute activation ranges of ``model`` and save them as an ONNX Runtime calibration cache (JSON).

    Args:
        model: the (pre-processed) FP32 graph.
        readers: the data, as small readers (:func:`sgjnd.calibration.reader.encoder_chunks`, ``head_chunks``);
            each is passed to the calibrator on its own, so only one chunk's intermediate tensors are in memory at a
            time. Read once; a sized collection shows its length in the progress line.
        out: where to write the ranges.
        config: method, op types, histogram settings.
        label: progress label.
        progress: show a progress line.

    Returns:
        ``out``.

    Raises:
        CalibrationError: the data is empty or ONNX Runtime's calibrator fails.
    """
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    options: dict[str, Any] = {"symmetric": False}
    if config.method != "minmax":
        # The entropy search tries thresholds from num_quantized_bins/2 to num_bins/2 bins either side of zero.
        options.update(num_bins=config.num_bins, num_quantized_bins=128, percentile=config.percentile)
    with tempfile.TemporaryDirectory(prefix="sgjnd-calib-") as tmp:
        try:
            with _quiet():
                calibrator = create_calibrator(
                    Path(model),
                    list(config.op_types),
                    augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                    calibrate_method=_ort_method(config.method),
                    extra_options=options,
                )
        except Exception as exc:
            raise CalibrationError(
                f"ONNX Runtime could not prepare {Path(model).name} for calibration: {type(exc).__name__}: {exc}"
            ) from exc
        total = len(readers) if isinstance(readers, Sized) else 0
        bar = Progress(total, label, enabled=progress and bool(total))
        chunks = 0
        try:
            for reader in readers:
                with _quiet():
                    calibrator.collect_data(reader)
                chunks += 1
                bar.step()
            if chunks == 0:
                raise CalibrationError("the calibration data is empty: no batch reached the calibrator")
            with _quiet():
                ranges = _compute_ranges(calibrator, config)
        except CalibrationError:
            raise
        except Exception as exc:
            raise CalibrationError(
                f"ONNX Runtime's {config.method} calibrator failed on {Path(model).name}: {type(exc).__name__}: {exc}"
            ) from exc
        save_tensors_data(ranges, out)
    return out


def _compute_ranges(calibrator: Any, config: QuantizeConfig) -> Any:
    """The calibrator's ranges; for entropy, our vectorised KL search on its histograms (sgjnd.calibration.entropy)."""
    if config.method != "entropy":
        return calibrator.compute_data()
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData

    from sgjnd.calibration.entropy import entropy_ranges

    histograms = getattr(getattr(calibrator, "collector", None), "histogram_dict", None)
    if not histograms:
        raise CalibrationError("the entropy calibrator collected no histogram (no calibrated tensor was seen)")
    return TensorsData(CalibrationMethod.Entropy, entropy_ranges(histograms))


# -- quantisation ------------------------------------------------------------------------------------------------


def flavour_options(flavour: Flavour, *, reduce_range: bool = False) -> dict[str, Any]:
    """``quantize_static`` arguments of a flavour (types, per-channel, symmetry; 7-bit weights for ort-cpu on
    request)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    if flavour == "tensorrt":
        return {
            "quant_format": QuantFormat.QDQ,
            "activation_type": QuantType.QInt8,
            "weight_type": QuantType.QInt8,
            "per_channel": True,
            # Biases stay float: TensorRT adds them in the int8 kernel's epilogue and has no int32 dequantise.
            # Outputs of weighted ops get no Q/DQ (TensorRT's placement advice, as ModelOpt does): the next op's
            # input Q/DQ sets the output precision, and a Q/DQ between a MatMul and its bias Add would quantise
            # the pre-bias sum and keep TensorRT from fusing the bias. ONNX Runtime's CPU kernels need them.
            "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                              "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                              "OpTypesToExcludeOutputQuantization": list(_WEIGHTED_OPS)},
        }
    if flavour == "ort-cpu":
        return {
            "quant_format": QuantFormat.QDQ,
            "activation_type": QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "per_channel": True,
            "reduce_range": reduce_range,
            "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True,
                              "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}},
        }
    raise UsageError(f"unknown INT8 flavour {flavour!r}: expected one of {', '.join(FLAVOURS)}")


def int8_from_onnx(
    src: Path,
    dst: Path,
    ranges: Path,
    flavour: Flavour,
    config: QuantizeConfig,
) -> QuantizeResult:
    """Quantise ``src`` (pre-processed FP32) to a QDQ graph ``dst`` of ``flavour`` with calibrated ``ranges``.

    Args:
        src: the FP32 graph the ranges were calibrated on.
        dst: the QDQ graph to write (the caller renames it into place).
        ranges: the calibration cache from :func:`calibrate_ranges`.
        flavour: ``tensorrt`` (symmetric S8S8) or ``ort-cpu`` (U8S8).
        config: op types and exclusions (the method must be the one the ranges were made with).

    Returns:
        What was written and excluded.

    Raises:
        CalibrationError: ONNX Runtime fails to quantise, or the result breaks the flavour's rules.
    """
    import onnx
    from onnxruntime.quantization import quantize_static

    model = onnx.load(str(src), load_external_data=False)
    names = [n.name for n in model.graph.node]
    present, unknown = match_node_names(names, config.exclude_nodes)
    notes: list[str] = []
    if unknown:
        notes.append(f"exclude-nodes matched no node for {len(unknown)} entr(y/ies): {', '.join(unknown[:5])}")
        log.warning("exclude-nodes: %s match nothing in %s (node names look like %s)", unknown, src.name,
                    ", ".join(sorted(names)[:3]))
    attention = () if config.quantize_attention else tuple(attention_matmuls(model))
    if attention:
        notes.append(f"{len(attention)} attention MatMul(s) (activation × activation) kept in float")
    op_types = config.quantized_op_types
    # Element-wise ops with a constant operand (bias Adds, GELU's + 1) stay float in every flavour: TensorRT folds
    # them into the preceding kernel and rejects a quantised scalar constant; ONNX Runtime gains nothing either.
    constant_operand = tuple(n for n in constant_operand_nodes(model.graph, op_types) if n not in present)
    if constant_operand:
        notes.append(f"{len(constant_operand)} element-wise node(s) with a constant operand (biases, scalars) kept "
                     "in float")
    float_op_types = list(config.exclude_op_types)
    if flavour == "ort-cpu":
        flavour_float = [t for t in ORT_CPU_FLOAT_OP_TYPES if t in op_types]
        op_types = [t for t in op_types if t not in flavour_float]
        float_op_types += [t for t in flavour_float if t not in float_op_types]
        if flavour_float:
            notes.append(f"{', '.join(flavour_float)} kept in float: faster on ONNX Runtime's CPU provider")
    reduce_range = config.reduce_range_for(flavour)
    if reduce_range:
        notes.append("7-bit weights (reduce_range): no U8S8 saturation on CPUs without VNNI")
    options = flavour_options(flavour, reduce_range=reduce_range)
    try:
        with _quiet():
            quantize_static(
                str(src),
                str(dst),
                calibration_data_reader=None,
                op_types_to_quantize=op_types,
                nodes_to_exclude=[*present, *(n for n in attention if n not in present), *constant_operand],
                calibrate_method=_ort_method(config.method),
                calibration_cache_path=str(ranges),
                **options,
            )
    except Exception as exc:
        raise CalibrationError(
            f"ONNX Runtime could not quantise {Path(src).name} ({flavour} flavour): {type(exc).__name__}: {exc}"
        ) from exc
    trt_problems: list[str] = []
    if flavour == "tensorrt":  # one load serves the placement pass and the rule check
        qdq = onnx.load(str(dst))
        rewired = drop_input_qdq(qdq, fusible_add_inputs(model.graph)) if "Add" in op_types else 0
        if rewired:
            onnx.save(qdq, str(dst))
            notes.append(f"{rewired} residual Add input(s) from a Conv/GEMM left unquantised, so TensorRT fuses the "
                         "Add into that kernel (the skip connection keeps its Q/DQ)")
        trt_problems = tensorrt_qdq_problems(qdq)
    summary = summarize_qdq(dst)
    problems = check_flavour(summary, flavour) + trt_problems
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise CalibrationError(f"the {flavour} QDQ graph breaks its rules ({len(problems)} problem(s)): {shown}")
    kept = set(present) | set(attention)
    float_compute = sum(1 for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
                        and (n.name in kept or n.op_type not in op_types))
    return QuantizeResult(dst, flavour, summary, present, tuple(float_op_types), attention, reduce_range,
                          float_compute, tuple(notes))


def match_node_names(names: Sequence[str], entries: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """Expand ``entries`` (exact node names or shell-style patterns) against ``names``.

    Returns:
        The matched names in graph order, and the entries that matched nothing.
    """
    patterns = [e for e in entries if _GLOB_CHARS & set(e)]
    exact = set(entries) - set(patterns)
    matched = tuple(n for n in names if n in exact or any(fnmatch.fnmatchcase(n, p) for p in patterns))
    known = set(names)
    unknown = [e for e in entries
               if (e not in known if e in exact else not any(fnmatch.fnmatchcase(n, e) for n in names))]
    return matched, unknown


# -- reading a QDQ graph back ------------------------------------------------------------------------------------


def summarize_qdq(path: Path) -> QdqSummary:
    """Read a QDQ graph and summarise its Q/DQ nodes, zero points and per-channel axes."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    q_nodes = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    dq_nodes = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    act_types: set[str] = set()
    weight_types: set[str] = set()
    bias_types: set[str] = set()
    nonzero: list[str] = []
    axes: dict[str, tuple[str, int]] = {}
    dq_outputs: set[str] = set()

    def value(name: str) -> np.ndarray | None:
        if name in inits:
            return np.asarray(numpy_helper.to_array(inits[name]))
        if name in consts:
            attr = next((a for a in consts[name].attribute if a.name == "value"), None)
            return None if attr is None else np.asarray(numpy_helper.to_array(attr.t))
        return None

    # Which DequantizeLinear outputs are weights: input 1 of a Conv, Gemm or MatMul.
    weight_of = {n.input[1]: n for n in graph.node if n.op_type in _WEIGHTED_OPS and len(n.input) > 1}
    for node in [*q_nodes, *dq_nodes]:
        zp = value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is not None and np.any(zp != 0):
            nonzero.append(node.input[2])
        if node.op_type != "DequantizeLinear":
            continue
        dq_outputs.add(node.output[0])
        dtype = str(zp.dtype) if zp is not None else _elem_dtype(inits.get(node.input[0]))
        consumer = weight_of.get(node.output[0])
        if consumer is not None and node.input[0] in inits:
            weight_types.add(dtype)
            scale = value(node.input[1])
            if scale is not None and scale.size > 1:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                axes[consumer.name] = (consumer.op_type, int(axis))
        elif node.input[0] in inits and dtype == "int32":
            bias_types.add(dtype)  # an int32 bias (ORT CPU flavour): scale = input scale × weight scale
        else:
            act_types.add(dtype)  # activations, and constant inputs quantised like them (an Add's bias)
    quantized = tuple(
        n.name for n in graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_outputs for i in n.input)
    )
    float_nodes = tuple(
        n.name for n in graph.node
        if n.op_type in ("Conv", "Gemm", "MatMul") and not any(i in dq_outputs for i in n.input)
    )
    return QdqSummary(
        quantize_nodes=len(q_nodes),
        dequantize_nodes=len(dq_nodes),
        activation_dtypes=tuple(sorted(act_types)),
        weight_dtypes=tuple(sorted(weight_types)),
        bias_dtypes=tuple(sorted(bias_types)),
        nonzero_zero_points=tuple(sorted(set(nonzero))),
        per_channel_axes=axes,
        quantized_nodes=quantized,
        float_nodes=float_nodes,
    )


def _elem_dtype(tensor: Any) -> str:
    if tensor is None:
        return "?"
    import onnx

    return str(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))


def check_flavour(summary: QdqSummary, flavour: Flavour) -> list[str]:
    """The ways ``summary`` breaks the rules of ``flavour`` (empty when it keeps them)."""
    problems = []
    if summary.quantize_nodes == 0:
        problems.append("no QuantizeLinear node was inserted (nothing was quantised)")
    if flavour == "tensorrt":
        if summary.nonzero_zero_points:
            problems.append(f"{len(summary.nonzero_zero_points)} non-zero zero point(s); TensorRT needs all zeros")
        if set(summary.activation_dtypes) - {"int8"}:
            problems.append(f"activations are {list(summary.activation_dtypes)}, expected int8")
        if summary.bias_dtypes:
            problems.append("biases are quantised to int32; TensorRT expects float biases")
    else:
        if set(summary.activation_dtypes) - {"uint8"}:
            problems.append(f"activations are {list(summary.activation_dtypes)}, expected uint8")
    if set(summary.weight_dtypes) - {"int8"}:
        problems.append(f"weights are {list(summary.weight_dtypes)}, expected int8")
    return problems


def integer_kernels(path: Path, *, threads: int | None = None) -> dict[str, Any]:
    """Which kernels ONNX Runtime's CPU provider runs a QDQ graph with, from its optimised graph.

    ONNX Runtime fuses DequantizeLinear → op → QuantizeLinear groups into integer operators (QLinearConv,
    QLinearMatMul, MatMulIntegerToFloat, ...) when its CPU kernels support the types; what is left as Conv or MatMul
    runs in FP32 between dequantise and quantise.

    Returns:
        ``{"integer_ops": {op: count}, "float_compute_ops": {op: count}, "integer_share": fraction}``.
    """
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="sgjnd-opt-") as tmp:
        optimised = Path(tmp) / "optimised.onnx"
        options = ort.SessionOptions()
        # EXTENDED holds the QDQ fusions; ALL would add a CPU-specific layout pass (and a warning) on top.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(optimised)
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or 1
        ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(str(optimised)).graph.node)
    integer = {op: ops[op] for op in INTEGER_OPS if ops.get(op)}
    floating = {op: ops[op] for op in FLOAT_COMPUTE_OPS if ops.get(op)}
    n_int, n_float = sum(integer.values()), sum(floating.values())
    return {
        "integer_ops": integer,
        "float_compute_ops": floating,
        "integer_share": round(n_int / (n_int + n_float), 4) if n_int + n_float else 0.0,
    }


def split_names(values: Sequence[str] | None) -> tuple[str, ...]:
    """Flatten comma-separated names (``["a,b", "c"]`` -> ``("a", "b", "c")``), dropping blanks and repeats."""
    out: list[str] = []
    for value in values or ():
        for name in str(value).split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return tuple(out)
