"""FP16 mixed-precision graphs: everything in FP16 except the parts that overflow there.

FP16 overflow in LayerNorm, Softmax and attention is the commonest TensorRT accuracy bug (NVIDIA/TensorRT #2564,
#4111), so these stay in FP32: every ``LayerNormalization`` and ``Softmax`` node and the attention's
activation-by-activation ``MatMul`` nodes (``Q·Kᵀ`` and ``attention·V``; a MatMul with a constant weight is a
projection and goes to FP16). Inputs and outputs stay FP32 (``keep_io_types``), so the runtime feeds the same arrays.

Engines, in order of preference:

- NVIDIA ModelOpt AutoCast (``modelopt.onnx.autocast.convert_to_mixed_precision``) when importable: it lives in its
  own environment (``nvidia-modelopt[onnx]`` pins onnxruntime-gpu and onnx~=1.21).
- ONNX Runtime's ``onnxruntime.transformers.float16.convert_float_to_float16`` (``keep_io_types=True``, the FP32 ops
  and nodes in its block lists). It is ONNX Runtime's maintained fork of onnxconverter-common's converter and ships
  with onnxruntime, so it needs no extra package. onnxconverter-common 1.16 itself produced graphs ONNX Runtime
  refuses on our export (a Cast feeding a blocked node is retyped to FP16), so it is not used.

Both are given a graph in which initializers shared by an FP32-kept node and an FP16 node are split first (see
:func:`_unshare_initializers`).
"""

from __future__ import annotations

import collections
import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgjnd.errors import CalibrationError, UsageError

log = logging.getLogger(__name__)

Engine = Literal["auto", "modelopt", "onnxruntime"]

FP32_OP_TYPES: tuple[str, ...] = ("LayerNormalization", "Softmax")
"""Op types kept in FP32 in every FP16 graph."""


@dataclass(frozen=True)
class Fp16Result:
    """One mixed-precision graph.

    Attributes:
        path: the file written.
        engine: which converter made it.
        fp32_op_types: op types kept in FP32.
        fp32_nodes: node names kept in FP32 on top of those op types (the attention MatMuls, requested nodes).
        fp16_share: fraction of the graph's compute nodes that run in FP16.
        op_dtypes: op type -> {"float16": n, "float32": m} over the nodes' output types.
    """

    path: Path
    engine: str
    fp32_op_types: tuple[str, ...]
    fp32_nodes: tuple[str, ...]
    fp16_share: float
    op_dtypes: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "engine": self.engine,
            "fp32_op_types": list(self.fp32_op_types),
            "fp32_nodes": list(self.fp32_nodes),
            "fp16_share": self.fp16_share,
        }


def modelopt_autocast_available() -> bool:
    """True when ModelOpt's AutoCast can be imported."""
    return importlib.util.find_spec("modelopt") is not None and importlib.util.find_spec("modelopt.onnx") is not None


def attention_matmuls(model: Any) -> list[str]:
    """Names of the MatMul nodes whose two inputs are both computed from the graph input (attention).

    A tensor is constant when it is an initializer, a Constant node's or a Shape node's output (shapes do not
    depend on pixel values) or computed from constants only (a weight sliced with a size read from a shape, as an
    exported ``nn.MultiheadAttention`` does); a MatMul with a constant input is a projection, the others multiply
    two activations, which is what attention does (scores ``Q·Kᵀ`` and ``attention·V``).
    """
    constants = {i.name for i in model.graph.initializer}
    for node in model.graph.node:  # nodes are topologically sorted
        if node.op_type in ("Constant", "Shape") or (node.input and all(i in constants or not i for i in node.input)):
            constants.update(node.output)
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


def fp16_from_onnx(
    src: Path,
    dst: Path,
    *,
    fp32_op_types: Sequence[str] = FP32_OP_TYPES,
    fp32_nodes: Sequence[str] = (),
    keep_attention_fp32: bool = True,
    engine: Engine = "auto",
) -> Fp16Result:
    """Convert an FP32 graph to mixed FP16/FP32 with FP32 inputs and outputs.

    Args:
        src: the FP32 graph.
        dst: where to write the mixed-precision graph (the caller renames it into place).
        fp32_op_types: op types kept in FP32.
        fp32_nodes: further node names kept in FP32.
        keep_attention_fp32: keep the attention's activation-by-activation MatMuls in FP32.
        engine: ``auto`` (ModelOpt AutoCast if installed, else ONNX Runtime's converter) or one of them by name.

    Returns:
        What was written and kept in FP32.

    Raises:
        CalibrationError: the converter is not installed or fails.
    """
    import onnx

    model = onnx.load(str(src))
    names = {n.name for n in model.graph.node}
    keep_nodes = [n for n in fp32_nodes if n in names]
    missing = [n for n in fp32_nodes if n not in names]
    if missing:
        log.warning("fp16: node(s) %s not in %s; ignored", missing, Path(src).name)
    if keep_attention_fp32:
        keep_nodes += [n for n in attention_matmuls(model) if n not in keep_nodes]
    chosen = _choose_engine(engine)
    if chosen == "modelopt":
        converted = _with_modelopt(src, list(fp32_op_types), keep_nodes)
    else:
        converted = _with_onnxruntime(model, list(fp32_op_types), keep_nodes)
    onnx.save(converted, str(dst))
    share, op_dtypes = _fp16_share(converted)
    return Fp16Result(Path(dst), chosen, tuple(fp32_op_types), tuple(keep_nodes), share, op_dtypes)


def _choose_engine(engine: Engine) -> str:
    if engine not in ("auto", "modelopt", "onnxruntime"):
        raise UsageError(f"fp16 engine must be auto, modelopt or onnxruntime, got {engine!r}")
    if engine in ("auto", "modelopt") and modelopt_autocast_available():
        return "modelopt"
    if engine == "modelopt":
        raise CalibrationError(
            "ModelOpt AutoCast is not installed. It pins onnxruntime-gpu and onnx~=1.21, so install it in its own "
            "environment: pip install 'nvidia-modelopt[onnx]' (or use the onnxruntime engine)"
        )
    if importlib.util.find_spec("onnxruntime") is None:
        raise CalibrationError("FP16 conversion needs onnxruntime (or NVIDIA ModelOpt): pip install 'sgjnd[ort]'")
    return "onnxruntime"


def _with_modelopt(src: Path, op_types: list[str], nodes: list[str]) -> Any:
    from modelopt.onnx.autocast import convert_to_mixed_precision

    try:
        return convert_to_mixed_precision(
            onnx_path=str(src),
            low_precision_type="fp16",
            nodes_to_exclude=nodes or None,
            op_types_to_exclude=op_types or None,
            keep_io_types=True,
        )
    except Exception as exc:  # ModelOpt raises assorted types
        raise CalibrationError(f"ModelOpt AutoCast failed on {Path(src).name}: {type(exc).__name__}: {exc}") from exc


def _unshare_initializers(model: Any, fp32_op_types: list[str], fp32_nodes: list[str]) -> int:
    """Give FP32-kept nodes their own copy of initializers they share with FP16 nodes; returns the copies made.

    Exporters and optimisers merge equal initializers (a LayerNorm's zero bias and a Conv's zero bias become one
    tensor); the converter then keeps the shared tensor in FP32 for the blocked node and the FP16 node gets a
    float input, which ONNX Runtime refuses ("bound to different types").
    """
    keep = set(fp32_nodes)
    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, list[Any]] = collections.defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            if name in inits:
                users[name].append(node)
    copies = 0
    for name, nodes in users.items():
        blocked = [n for n in nodes if n.op_type in fp32_op_types or n.name in keep]
        if not blocked or len(blocked) == len(nodes):
            continue
        for k, node in enumerate(blocked):
            clone = type(inits[name])()
            clone.CopyFrom(inits[name])
            clone.name = f"{name}__fp32_{k}"
            model.graph.initializer.append(clone)
            node.input[:] = [clone.name if i == name else i for i in node.input]
            copies += 1
    return copies


def _with_onnxruntime(model: Any, op_types: list[str], nodes: list[str]) -> Any:
    from onnxruntime.transformers import float16

    _unshare_initializers(model, op_types, nodes)
    try:
        return float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *op_types],
            node_block_list=nodes,
        )
    except Exception as exc:
        raise CalibrationError(f"ONNX Runtime's float16 converter could not convert the graph: "
                               f"{type(exc).__name__}: {exc}") from exc


_COMPUTE = ("Conv", "MatMul", "Gemm", "Add", "Mul", "Div", "Relu", "Softmax", "LayerNormalization", "ReduceMean",
            "Erf", "Sigmoid", "Softplus", "MaxPool", "Sub", "Sqrt", "Pow")


def node_output_dtypes(model: Any) -> dict[str, str]:
    """Node name -> element type of its first output (``float16``, ``float32``, ...), from ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    out = {}
    for node in inferred.graph.node:
        elem = types.get(node.output[0]) if node.output else None
        out[node.name] = str(onnx.helper.tensor_dtype_to_np_dtype(elem)) if elem else "?"
    return out


def _fp16_share(model: Any) -> tuple[float, dict[str, dict[str, int]]]:
    dtypes = node_output_dtypes(model)
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for node in model.graph.node:
        if node.op_type in _COMPUTE:
            counts[node.op_type][dtypes.get(node.name, "?")] += 1
    fp16 = sum(c["float16"] for c in counts.values())
    total = sum(sum(c.values()) for c in counts.values())
    return (round(fp16 / total, 4) if total else 0.0), {k: dict(v) for k, v in sorted(counts.items())}
