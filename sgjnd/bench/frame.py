"""The physical frame of a benchmark: what the device can do, and how much work one patch is.

- :func:`matmul_peak` measures single-precision matrix multiplication (sgemm) with numpy or torch on large square
  matrices: the practical ceiling for convolution and attention kernels on this machine.
- :func:`engine_peak` measures the CPU's int8 (u8×s8, VNNI/AMX), bf16 (AVX-512-BF16/AMX) and fp32 matrix products
  through OpenVINO's CPU plugin (oneDNN), the library that runs our INT8 and BF16 graphs on them. Like the sgemm
  figures these are measured GEMM throughputs, not hardware ceilings: a network's convolutions can exceed them (on an
  AMD EPYC, torch's and numpy's BLAS reached only about half of what OpenVINO's FP32 kernels did).
- :func:`count_macs_torch` and :func:`count_macs_onnx` count the multiply-accumulates of one patch through the
  encoder: convolutions, fully connected layers and attention (projections, QKᵀ and attention·V). Elementwise work,
  normalisation, softmax and pooling are not counted (they are a few per cent and memory-bound). One MAC is two
  FLOP. ResNet-50 at 224 px is about 4.1 GMAC; ``sgjnd_r50``'s encoder adds the stage projections and the three
  cross-scale attention layers.

Achieved FLOP/s = 2 · MACs per patch · patches per second; dividing by the measured peak says how close a backend
runs to the hardware, which decides whether faster kernels or fewer encoder passes are the way to go faster.

numpy is imported at the top; torch and onnx only inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sgjnd.errors import UsageError

if TYPE_CHECKING:
    import torch

MatmulLibrary = Literal["numpy", "torch", "openvino"]
EnginePrecision = Literal["int8", "bf16", "fp32"]

RESNET50_GMAC_224 = 4.1
"""Published multiply-accumulates of ResNet-50 at 224x224, in GMAC (about 8.2 GFLOP), for orientation."""


@dataclass(frozen=True)
class PeakResult:
    """One sgemm measurement.

    Attributes:
        library: numpy (its BLAS) or torch.
        size: side n of the square float32 matrices; one product is 2·n³ FLOP.
        threads: threads the library used (None when it cannot tell).
        seconds: the fastest timed product.
        gflops: 2·n³ / seconds / 1e9.
        repeats: timed products (the fastest counts: a peak, not a typical value).
        note: how ``threads`` was found.
        dtype: the arithmetic: ``float32`` (sgemm), ``int8`` (u8×s8 with int32 sums) or ``bf16``; one multiply-add
            counts as two operations whatever the type (GOP/s for int8).
    """

    library: MatmulLibrary
    size: int
    threads: int | None
    seconds: float
    gflops: float
    repeats: int
    note: str = ""
    dtype: str = "float32"


def matmul_peak(
    library: MatmulLibrary = "numpy", *, size: int = 2048, repeats: int = 3, seed: int = 0, threads: int | None = None
) -> PeakResult:
    """Measure float32 matrix-multiplication throughput with ``library`` on ``size`` x ``size`` matrices.

    One untimed product warms up the BLAS (thread pool, page faults); then ``repeats`` products are timed and the
    fastest counts.

    Args:
        library: ``numpy`` or ``torch``.
        size: matrix side; large enough that the product is compute-bound (>= 1024).
        repeats: timed products.
        seed: seed of the random matrices.
        threads: threads to use, so that the peak matches the backends' setting; None keeps the library's own.
            torch's setting is restored afterwards; numpy's needs threadpoolctl (else its default is used and the
            note says so).

    Raises:
        UsageError: unknown library, size < 64 or repeats < 1.
        ImportError: torch was asked for but is not installed.
    """
    if library not in ("numpy", "torch"):
        raise UsageError(f"matmul library must be 'numpy' or 'torch', got {library!r}")
    if size < 64 or repeats < 1:
        raise UsageError(f"need size >= 64 and repeats >= 1, got size={size} repeats={repeats}")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    with contextlib.ExitStack() as stack:
        if library == "torch":
            import torch

            ta, tb = torch.from_numpy(a), torch.from_numpy(b)

            def product() -> object:
                return torch.mm(ta, tb)

            if threads is not None:
                previous = torch.get_num_threads()
                torch.set_num_threads(threads)
                stack.callback(torch.set_num_threads, previous)
            used: int | None = int(torch.get_num_threads())
            note = "torch.get_num_threads()"
        else:

            def product() -> object:
                return a @ b

            refused = _limit_blas_threads(stack, threads) if threads is not None else ""
            used, how = numpy_blas_threads()
            note = refused or how
        product()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - start)
    gflops = 2.0 * size**3 / best / 1e9
    return PeakResult(library, size, used, best, gflops, repeats, note)


def engine_peak(
    precision: EnginePrecision, *, size: int = 2048, repeats: int = 3, seed: int = 0, threads: int | None = None
) -> PeakResult:
    """Measure int8, bf16 or fp32 matrix-multiplication throughput on ``size`` x ``size`` matrices through OpenVINO.

    One MatMul of an activation by a constant weight, compiled by OpenVINO's CPU plugin: for ``int8`` both operands
    pass through FakeQuantize (u8 activations, s8 weights), which OpenVINO's low-precision transformations turn into
    an integer product (VNNI or AMX); for ``bf16`` the inference precision is bf16 (AVX-512-BF16 or AMX); for
    ``fp32`` it is f32. The precision the compiled MatMul runs at is read back and checked, so a silent fallback to
    float cannot pass for an engine peak. One untimed call warms up, then ``repeats`` are timed and the fastest
    counts. The int8 figure includes quantising the activations and dequantising the result on every call (O(n²)
    beside the O(n³) product).

    Args:
        precision: ``int8``, ``bf16`` or ``fp32``.
        size: matrix side (>= 64).
        repeats: timed products.
        seed: seed of the random matrices.
        threads: ``INFERENCE_NUM_THREADS``; None leaves OpenVINO's default.

    Raises:
        UsageError: unknown precision, size < 64 or repeats < 1; or OpenVINO compiled the MatMul at another precision
            (the CPU lacks the engine).
        ImportError: openvino is not installed.
    """
    if precision not in ("int8", "bf16", "fp32"):
        raise UsageError(f"engine precision must be 'int8', 'bf16' or 'fp32', got {precision!r}")
    if size < 64 or repeats < 1:
        raise UsageError(f"need size >= 64 and repeats >= 1, got size={size} repeats={repeats}")
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((size, size), dtype=np.float32)
    source = ops.parameter([size, size], np.float32, name="a")

    def const(value: float) -> Any:
        return ops.constant(np.float32(value))

    want: tuple[str, ...]
    if precision == "int8":
        activations = ops.fake_quantize(source, const(0), const(8), const(0), const(8), 256)  # u8
        weights = ops.fake_quantize(ops.constant(weight), const(-4), const(4), const(-4), const(4), 255)  # s8
        product = ops.matmul(activations, weights, False, False)
        hint, want = "f32", ("u8", "i8")
    else:
        product = ops.matmul(source, ops.constant(weight), False, False)
        hint = "bf16" if precision == "bf16" else "f32"
        want = (hint,)
    properties: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        properties["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(ov.Model([product], [source], f"{precision}-gemm"), "CPU", properties)
    ran = {str(op.get_rt_info()["runtimePrecision"].astype(str)) for op in compiled.get_runtime_model().get_ops()
           if str(op.get_rt_info()["layerType"].astype(str)) in ("MatMul", "FullyConnected")}
    if not ran & set(want):
        raise UsageError(f"OpenVINO ran the {precision} product at {', '.join(sorted(ran)) or 'an unknown precision'}, "
                         f"not {'/'.join(want)}: this CPU has no {precision} matrix engine OpenVINO uses")
    request = compiled.create_infer_request()
    a = np.abs(rng.standard_normal((size, size), dtype=np.float32))
    request.infer({"a": a})
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer({"a": a})
        best = min(best, time.perf_counter() - start)
    used = int(compiled.get_property("INFERENCE_NUM_THREADS")) or threads
    note = f"OpenVINO {ov.__version__.split('-')[0]} CPU, MatMul ran at {'/'.join(sorted(ran))}"
    dtype = "float32" if precision == "fp32" else precision
    return PeakResult("openvino", size, used, best, 2.0 * size**3 / best / 1e9, repeats, note, dtype)


def _limit_blas_threads(stack: contextlib.ExitStack, threads: int) -> str:
    """Limit numpy's BLAS to ``threads`` until ``stack`` closes; '' when limited, else why not."""
    if importlib.util.find_spec("threadpoolctl") is None:
        return f"BLAS default: {threads} thread(s) were asked for, but threadpoolctl is not installed to set them"
    threadpoolctl = importlib.import_module("threadpoolctl")  # optional and untyped: looked up dynamically
    stack.enter_context(threadpoolctl.threadpool_limits(limits=threads, user_api="blas"))
    return ""


def numpy_blas_threads() -> tuple[int | None, str]:
    """Threads numpy's BLAS uses, and how that was found (threadpoolctl, an environment variable, or a guess)."""
    if importlib.util.find_spec("threadpoolctl") is not None:
        threadpoolctl = importlib.import_module("threadpoolctl")  # optional and untyped: looked up dynamically
        for pool in threadpoolctl.threadpool_info():
            if pool.get("user_api") == "blas":
                return int(pool["num_threads"]), f"threadpoolctl ({pool.get('internal_api')})"
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value), f"${var}"
    return os.cpu_count(), "assumed: the BLAS default, one per logical CPU (no threadpoolctl, no $*_NUM_THREADS)"


# -- MAC counting -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass of one sample.

    Attributes:
        total: all counted MACs.
        by_kind: MACs per kind of operation (``conv``, ``linear``, ``attention``).
        source: how they were counted (``torch hooks`` or ``onnx graph``).
        uncounted: operations whose shapes could not be resolved (their MACs are missing from ``total``).
    """

    total: int
    by_kind: dict[str, int] = field(default_factory=dict)
    source: str = ""
    uncounted: tuple[str, ...] = ()

    @property
    def gmac(self) -> float:
        """``total`` in GMAC."""
        return self.total / 1e9

    @property
    def gflop(self) -> float:
        """FLOP in GFLOP (two per MAC)."""
        return 2.0 * self.total / 1e9


def count_macs_torch(module: torch.nn.Module, example: torch.Tensor) -> MacCount:
    """Count the MACs of ``module(example)`` per sample with forward hooks.

    Counted: ``nn.Conv2d`` (output elements · input channels per group · kernel area), ``nn.Linear`` (output
    elements · input features) and attention, ``nn.MultiheadAttention`` or the model's
    :class:`~sgjnd.model.sgjnd_net.CrossAttention` (query, key, value and output projections count as ``linear``,
    QKᵀ and attention·V as ``attention``; their submodules are counted with them, never twice).

    Args:
        module: the network (in eval mode), e.g. ``model.encoder``.
        example: one input batch; the count is divided by its first dimension.

    Returns:
        MACs per sample.
    """
    import torch
    from torch import nn

    from sgjnd.model.sgjnd_net import CrossAttention

    counts: dict[str, int] = {"conv": 0, "linear": 0, "attention": 0}
    inside_mha: set[int] = set()
    for sub in module.modules():
        if isinstance(sub, nn.MultiheadAttention | CrossAttention):
            inside_mha.update(id(m) for m in sub.modules() if m is not sub)

    def on_conv(mod: Any, args: tuple[Any, ...], out: torch.Tensor) -> None:
        counts["conv"] += int(out.numel()) * int(np.prod(tuple(mod.weight.shape[1:])))

    def on_linear(mod: Any, args: tuple[Any, ...], out: torch.Tensor) -> None:
        if id(mod) not in inside_mha:
            counts["linear"] += int(out.numel()) * int(mod.in_features)

    def on_mha(mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs["key"]
        if isinstance(mod, CrossAttention):  # batch-first query (M, Lq, d), a context map (M, d, H, W)
            n, lq, lk = query.shape[0], query.shape[1], key.shape[2] * key.shape[3]
        elif mod.batch_first:
            n, lq, lk = query.shape[0], query.shape[1], key.shape[1]
        else:
            n, lq, lk = query.shape[1], query.shape[0], key.shape[0]
        e = int(mod.embed_dim)
        kdim, vdim = int(getattr(mod, "kdim", e)), int(getattr(mod, "vdim", e))
        # Kinds as in the ONNX export: the query and output projections are weight products (linear), the key and
        # value projections too, but CrossAttention's are 1x1 convolutions; QKᵀ and attention·V are attention.
        key_value = int(n) * (lk * kdim * e + lk * vdim * e)
        counts["conv" if isinstance(mod, CrossAttention) else "linear"] += key_value
        counts["linear"] += int(n) * 2 * lq * e * e
        counts["attention"] += int(n) * 2 * lq * lk * e

    handles = []
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            handles.append(sub.register_forward_hook(on_conv))
        elif isinstance(sub, nn.Linear):
            handles.append(sub.register_forward_hook(on_linear))
        elif isinstance(sub, nn.MultiheadAttention | CrossAttention):
            handles.append(sub.register_forward_hook(on_mha, with_kwargs=True))
    try:
        with torch.inference_mode():
            module(example)
    finally:
        for handle in handles:
            handle.remove()
    batch = int(example.shape[0])
    per_sample = {k: v // batch for k, v in counts.items()}
    return MacCount(sum(per_sample.values()), per_sample, "torch hooks")


_MAC_OPS = ("Conv", "MatMul", "Gemm", "Attention")
_MOVE_OPS = ("Slice", "Split", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Gather", "Identity", "Cast")


def count_macs_onnx(path: Path) -> MacCount:
    """Count the MACs of one sample through the ONNX graph at ``path``.

    The first (batch) dimension of every graph input is fixed to 1 and ONNX shape inference (with data propagation)
    resolves the other shapes. Counted: ``Conv`` (output elements · weight elements per output channel), ``MatMul``
    (output elements · inner dimension), ``Gemm`` (M·N·K) and ONNX ``Attention`` (2 · query elements · key length).
    A MatMul whose output shape stays symbolic is counted from its input shapes; shapes that static inference cannot
    resolve (the TorchScript exporter computes attention reshapes at run time) are observed by running the graph
    once on zeros in ONNX Runtime; an operation whose shapes stay unknown is listed in ``uncounted``. In an exported
    attention layer the projections are MatMul/Gemm nodes and count as ``linear``; the QKᵀ and attention·V products
    count as ``attention`` (a MatMul of two activations).

    Raises:
        UsageError: the file does not exist.
        ImportError: onnx is not installed.
    """
    import onnx
    from onnx import shape_inference

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no ONNX graph at {path}: expected an .onnx file")
    model = onnx.load(str(path), load_external_data=False)
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, tuple[int | None, ...]] = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                  for d in info.type.tensor_type.shape.dim)
    initializers = {t.name: tuple(int(d) for d in t.dims) for t in inferred.graph.initializer}
    shapes.update(initializers)
    for node in inferred.graph.node:  # Constant nodes carry weights in some exports
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            shapes[node.output[0]] = tuple(int(d) for d in node.attribute[0].t.dims)
    # A weight product has one operand that is a weight: an initializer or constant, possibly moved by a data-movement
    # op (split, sliced, transposed) whose slice bounds may come from activation shapes. The nodes are in
    # topological order, so one pass propagates it.
    constant_like = set(initializers) | {n.output[0] for n in inferred.graph.node if n.op_type == "Constant"}
    for node in inferred.graph.node:
        if node.op_type in _MAC_OPS or not node.input:
            continue
        if all(i in constant_like for i in node.input if i) or (
            node.op_type in _MOVE_OPS and node.input[0] in constant_like
        ):
            constant_like.update(node.output)
    mac_nodes = [n for n in inferred.graph.node if n.op_type in _MAC_OPS]
    unresolved = {t for n in mac_nodes for t in (*n.input[:2], n.output[0]) if t and _known(shapes.get(t)) is None}
    if unresolved:  # the TorchScript exporter computes attention shapes at run time: observe them once
        shapes.update(_shapes_by_running(model, sorted(unresolved)))
    counts: dict[str, int] = {"conv": 0, "linear": 0, "attention": 0}
    uncounted: list[str] = []
    for node in mac_nodes:
        macs = _node_macs(node.op_type, [shapes.get(i) for i in node.input], shapes.get(node.output[0]),
                          {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute})
        if macs is None:
            uncounted.append(node.name or node.output[0])
            continue
        if node.op_type == "Conv":
            counts["conv"] += macs
        elif node.op_type == "Attention" or (
            node.op_type == "MatMul" and not any(i in constant_like for i in node.input[:2])
        ):
            counts["attention"] += macs
        else:
            counts["linear"] += macs
    return MacCount(sum(counts.values()), counts, "onnx graph", tuple(uncounted))


def _shapes_by_running(model: Any, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of the tensors ``names`` observed by running ``model`` (batch fixed to 1) once on zeros in ONNX Runtime.

    Returns an empty dict when ONNX Runtime is not installed or cannot run the graph (the caller reports the
    affected nodes as uncounted).
    """
    if importlib.util.find_spec("onnxruntime") is None:
        return {}
    import onnx
    import onnxruntime

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    dtypes = {1: np.float32, 2: np.uint8, 10: np.float16, 7: np.int64, 6: np.int32}
    feeds = {}
    for graph_input in probe.graph.input:
        tensor_type = graph_input.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim]
        feeds[graph_input.name] = np.zeros(shape, dtype=dtypes.get(tensor_type.elem_type, np.float32))
    try:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = onnxruntime.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
        values = session.run(wanted, feeds)
    except Exception:  # any failure only leaves those nodes uncounted
        return {}
    return {name: tuple(int(d) for d in np.shape(value)) for name, value in zip(wanted, values, strict=True)}


def _known(shape: Sequence[int | None] | None) -> tuple[int, ...] | None:
    if shape is None or any(d is None or d <= 0 for d in shape):
        return None
    return tuple(int(d) for d in shape if d is not None)


def _node_macs(op: str, inputs: list[tuple[int | None, ...] | None], output: tuple[int | None, ...] | None,
               attrs: Mapping[str, Any]) -> int | None:
    """MACs of one node from its input and output shapes; None when they are not resolved."""
    out = _known(output)
    if op == "Conv":
        weight = _known(inputs[1]) if len(inputs) > 1 else None
        if out is None or weight is None:
            return None
        return int(np.prod(out)) * int(np.prod(weight[1:]))
    if op == "Gemm":
        a = _known(inputs[0])
        b = _known(inputs[1]) if len(inputs) > 1 else None
        if a is None or b is None or len(a) != 2 or len(b) != 2:
            return None
        m, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
        n = b[0] if attrs.get("transB", 0) else b[1]
        return m * n * k
    if op == "MatMul":
        a = _known(inputs[0])
        b = _known(inputs[1]) if len(inputs) > 1 else None
        if a is None or b is None:
            return None
        k = a[-1]
        if out is None:  # symbolic output: rebuild it from the broadcast of the inputs
            if len(a) < 2 or len(b) < 2:
                return None
            batch = np.broadcast_shapes(a[:-2], b[:-2])
            out = (*batch, a[-2], b[-1])
        return int(np.prod(out)) * int(k)
    if op == "Attention":
        q = _known(inputs[0])
        k_shape = _known(inputs[1]) if len(inputs) > 1 else None
        if q is None or k_shape is None:
            return None
        kv_len = k_shape[-2]  # (B, S_kv, hidden) or (B, H, S_kv, head)
        return 2 * int(np.prod(q)) * kv_len
    return None
