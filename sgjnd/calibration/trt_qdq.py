"""TensorRT's rules for explicitly quantised (QDQ) ONNX graphs, checked on the graph before any builder sees it.

NVIDIA's builder (TensorRT 10/11 and TensorRT-RTX share its ONNX parser and QDQ optimiser) rejects a QDQ graph that
breaks these rules, often with one cryptic error at build time on the user's GPU machine. The rules, with their
sources:

1. Symmetric only: a zero point, when present, is a constant of int8 zeros the size of its scale (``NvInfer.h``,
   IQuantizeLayer/IDequantizeLayer; onnx-tensorrt ``QuantDequantLinearHelper``).
2. Types: int8 data and zero points; no uint8 zero points and no int32 (bias) DequantizeLinear.
3. Scales: build-time constants, finite and strictly positive, float, a scalar (per tensor) or 1-D of ``dim[axis]``.
4. Per-channel scales on constant weights only (activations per tensor), on the output-channel axis: Conv 0,
   ConvTranspose 1, MatMul weight ``[K, N]`` the last axis, Gemm 0 with ``transB=1`` else 1. The axis is written out:
   the parser reads a missing axis as 0, not ONNX's 1.
5. A quantised constant (an int8 initializer) feeds DequantizeLinear directly and nothing else
   ("Quantized constant ... is only allowed before DQ", ``qdqGraphOptimizer``).
6. ... and has rank >= 1: the parser reshapes a rank-0 Q/DQ input to ``[1]``, which puts a shuffle between the
   constant and its DQ and breaks rule 5 (the error our first TensorRT-RTX build of ``encoder.int8.onnx`` hit).
7. A QuantizeLinear output feeds DequantizeLinear only (int8 tensors have no other consumer in a QDQ graph).
8. Int8 weights lie in [-127, 127] (amax/127 scales; -128 breaks the symmetry the kernels assume).

Placement (TensorRT's "Q/DQ Layer-Placement Recommendations", and what ModelOpt's INT8 quantiser does) is decided
in :mod:`sgjnd.calibration.quantize`: an element-wise op with a constant operand (a bias Add, GELU's ``+ 1``) gets
no Q/DQ, since TensorRT folds it into the preceding kernel and quantising the constant only adds error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

_WEIGHT_AXIS_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
_FLOAT_SCALES = {"float32", "float16", "bfloat16"}
_FUSING_OPS = ("Conv", "Gemm", "MatMul")  # ops whose epilogue can absorb an Add


def constant_tensors(graph: Any) -> set[str]:
    """Names of the tensors of ``graph`` (an ``onnx.GraphProto``) that are build-time constants.

    Initializers, Constant outputs, and the outputs of nodes whose inputs are all constants (a Cast or Reshape of a
    constant), propagated in graph order.
    """
    constant = {i.name for i in graph.initializer}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (inputs and all(name in constant for name in inputs)):
            constant.update(o for o in node.output if o)
    return constant


def constant_operand_nodes(graph: Any, op_types: Iterable[str]) -> list[str]:
    """Nodes of ``op_types`` other than weighted ops (Conv, Gemm, MatMul) with a constant operand, in graph order.

    These stay in float: TensorRT fuses a bias or scalar Add into the preceding kernel's epilogue, and quantising
    the constant is pure error (ModelOpt skips "pointwise op with const input" for the same reason).
    """
    wanted = set(op_types) - set(_WEIGHT_AXIS_OPS)
    constant = constant_tensors(graph)
    return [
        node.name for node in graph.node
        if node.op_type in wanted and any(name in constant for name in node.input if name)
    ]


def tensorrt_qdq_problems(model: Any) -> list[str]:
    """Every way ``model`` (an ``onnx.ModelProto`` with Q/DQ nodes) breaks TensorRT's QDQ rules (module docstring).

    Returns:
        One sentence per problem, naming the node or tensor; empty when the graph keeps every rule.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def value(name: str) -> np.ndarray | None:
        if name in inits:
            return np.asarray(numpy_helper.to_array(inits[name]))
        node = consts.get(name)
        if node is not None:
            attr = next((a for a in node.attribute if a.name == "value"), None)
            return None if attr is None else np.asarray(numpy_helper.to_array(attr.t))
        return None

    problems: list[str] = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        where = f"{node.op_type} {node.name!r}"
        scale = value(node.input[1]) if len(node.input) > 1 else None
        if scale is None:
            problems.append(f"{where}: scale {node.input[1] if len(node.input) > 1 else '(none)'} is not a constant")
            continue
        if str(scale.dtype) not in _FLOAT_SCALES:
            problems.append(f"{where}: scale is {scale.dtype}, expected float32/float16")
        if scale.ndim > 1 or scale.size == 0:
            problems.append(f"{where}: scale has shape {list(scale.shape)}, expected a scalar or a 1-D vector")
        elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            problems.append(f"{where}: scale must be finite and > 0, got min {float(np.min(scale)):.3g}")
        zero = value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and zero is None:
            problems.append(f"{where}: zero point {node.input[2]} is not a constant")
        elif zero is not None:
            if zero.dtype != np.int8:
                problems.append(f"{where}: zero point is {zero.dtype}, TensorRT needs int8")
            if np.any(zero != 0):
                problems.append(f"{where}: zero point is not 0 (TensorRT quantisation is symmetric)")
            if zero.size != scale.size:
                problems.append(f"{where}: zero point has {zero.size} values for {scale.size} scales")
        per_channel = scale.ndim == 1 and scale.size > 1
        axis_attr = next((a.i for a in node.attribute if a.name == "axis"), None)
        if node.op_type == "QuantizeLinear":
            bad = [c.op_type for c in consumers.get(node.output[0], []) if c.op_type != "DequantizeLinear"]
            if bad or node.output[0] in graph_outputs:
                feeds = bad or ["a graph output"]
                problems.append(f"{where}: its int8 output feeds {feeds}, not only DequantizeLinear")
            if per_channel:
                problems.append(f"{where}: activations must be quantised per tensor, got {scale.size} scales")
            continue
        data = value(node.input[0])
        if data is None:
            if per_channel:
                problems.append(f"{where}: activations must be quantised per tensor, got {scale.size} scales")
            continue
        # A quantised constant (pre-quantised weight, or a constant quantised like an activation).
        if data.dtype == np.int32:
            problems.append(f"{where}: int32 (bias) dequantisation; TensorRT takes float biases")
            continue
        if data.dtype != np.int8:
            problems.append(f"{where}: quantised constant is {data.dtype}, expected int8")
        if data.ndim == 0:
            problems.append(
                f"{where}: quantised constant {node.input[0]} is a scalar (rank 0); TensorRT reshapes it before the "
                "DequantizeLinear, which it then rejects ('Quantized constant ... is only allowed before DQ')"
            )
        others = [c.op_type for c in consumers.get(node.input[0], []) if c.op_type != "DequantizeLinear"]
        if others:
            problems.append(f"{where}: quantised constant {node.input[0]} also feeds {others}")
        if data.dtype == np.int8 and data.size and int(data.min()) == -128:
            problems.append(f"{where}: int8 constant {node.input[0]} holds -128; symmetric weights lie in [-127, 127]")
        if per_channel:
            problems += _weight_axis_problems(node, data, scale, axis_attr, consumers.get(node.output[0], []))
    return problems


def _weight_axis_problems(node: Any, data: np.ndarray, scale: np.ndarray, axis_attr: int | None,
                          users: list[Any]) -> list[str]:
    """Rule 4: a per-channel weight is quantised on its consumer's output-channel axis, written out explicitly."""
    where = f"DequantizeLinear {node.name!r}"
    if axis_attr is None:
        return [f"{where}: per-channel scales without an explicit axis (TensorRT reads it as 0, ONNX as 1)"]
    axis = axis_attr % data.ndim if data.ndim else axis_attr
    problems = []
    if data.ndim and data.shape[axis] != scale.size:
        problems.append(f"{where}: {scale.size} scales for axis {axis} of size {data.shape[axis]}")
    for user in users:
        slot = list(user.input).index(node.output[0])
        if user.op_type not in _WEIGHT_AXIS_OPS or slot != 1:
            problems.append(f"{where}: per-channel scales feed input {slot} of {user.op_type} {user.name!r}, "
                            "not a weight")
            continue
        want = _output_channel_axis(user, data.ndim)
        if axis != want:
            problems.append(f"{where}: weight of {user.op_type} {user.name!r} quantised on axis {axis}, expected the "
                            f"output-channel axis {want}")
    return problems


def _output_channel_axis(node: Any, rank: int) -> int:
    """The output-channel axis of a weight of ``node``: Conv 0, ConvTranspose 1, MatMul last, Gemm by transB."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return rank - 1  # MatMul: [..., K, N]


# -- placement: residual Adds ------------------------------------------------------------------------------------
def fusible_add_inputs(graph: Any) -> dict[str, str]:
    """For each residual Add (two activation inputs), the input TensorRT fuses into its producer's epilogue.

    TensorRT fuses ``Conv -> Add`` when the conv's output is not quantised; the other input (the skip connection)
    carries the Q/DQ. Which input is the fusible one follows ModelOpt's rule: the branch produced directly by a
    weighted op (Conv, Gemm, MatMul); when both are, the one with more weighted ops back to their common ancestor
    (in a ResNet downsample block, the main branch's ``conv3`` rather than the one-conv shortcut).

    Returns:
        Add node name -> name of the input tensor that should carry no Q/DQ.
    """
    producer = {o: n for n in graph.node for o in n.output if o}
    constant = constant_tensors(graph)
    result: dict[str, str] = {}
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type != "Add" or len(inputs) != 2 or any(i in constant for i in inputs):
            continue
        weighted = [i for i in inputs if i in producer and producer[i].op_type in _FUSING_OPS]
        if len(weighted) == 1:
            result[node.name] = weighted[0]
        elif len(weighted) == 2:
            depth = [_weighted_depths(i, producer) for i in inputs]
            common = set(depth[0]) & set(depth[1])
            if common:
                meet = min(common, key=lambda t: depth[0][t] + depth[1][t])
                a, b = depth[0][meet], depth[1][meet]
                if a != b:
                    result[node.name] = inputs[0] if a > b else inputs[1]
    return result


def _weighted_depths(tensor: str, producer: dict[str, Any], limit: int = 64) -> dict[str, int]:
    """Ancestor tensor -> fewest weighted ops on a path from it to ``tensor`` (breadth first, ``limit`` nodes deep)."""
    depths = {tensor: 0}
    frontier = [tensor]
    for _ in range(limit):
        following: list[str] = []
        for name in frontier:
            node = producer.get(name)
            if node is None:
                continue
            step = depths[name] + (1 if node.op_type in _WEIGHT_AXIS_OPS else 0)
            for parent in node.input:
                if parent and parent in producer and step < depths.get(parent, 1 << 30):
                    depths[parent] = step
                    following.append(parent)
        if not following:
            break
        frontier = following
    return depths


def drop_input_qdq(model: Any, add_inputs: dict[str, str]) -> int:
    """Rewire each named Add input from its DequantizeLinear back to the float tensor; drop Q/DQ left unused.

    Args:
        model: an ``onnx.ModelProto`` with Q/DQ nodes, changed in place.
        add_inputs: Add node name -> float tensor name (from :func:`fusible_add_inputs` on the FP32 graph).

    Returns:
        The number of Add inputs rewired.
    """
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    rewired = 0
    for node in graph.node:
        want = add_inputs.get(node.name)
        if want is None:
            continue
        for slot, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] == want:
                node.input[slot] = want
                rewired += 1
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    dropped: set[str] = set()
    changed = True
    while changed:  # a DQ nobody reads goes, then the Q only it read
        changed = False
        for node in list(graph.node):
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.output[0] not in used:
                graph.node.remove(node)
                dropped.update(node.input[1:])
                used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
                changed = True
    for tensor in [t for t in graph.initializer if t.name in dropped and t.name not in used]:
        graph.initializer.remove(tensor)  # their scales and zero points
    return rewired
