"""Provider options for ONNX Runtime's TensorRT execution provider (the ORT backend passes them on).

Without explicit profile shapes the TensorRT EP builds its engine for the first batch it sees and rebuilds when a
larger one comes; without an engine cache it rebuilds in every new session (minutes for ResNet-50). So: engine and
timing caches on, and ``trt_profile_{min,opt,max}_shapes`` covering every input over the whole batch range. When the
explicit shapes are given, ORT compares them with the ``.profile`` file in the cache and rebuilds on a mismatch, so
a cache directory never serves an engine for another profile.

Precision comes from the graph, never from the EP. Our reduced-precision graphs are precision-prepared: the FP16 graph
is mixed precision with LayerNorm, Softmax and the attention MatMuls kept in FP32 on purpose, the INT8 graph is
symmetric QDQ. With TensorRT 9 and later the EP builds a strongly typed network (every tensor keeps the type the
ONNX file gives it) unless ``trt_fp16_enable`` or ``trt_int8_enable`` is set; either flag makes it a weakly typed
network in which TensorRT may run the FP32 islands in FP16 (DESIGN.md §4). So both flags stay off for every graph,
and ``trt_layer_norm_fp32_fallback`` (which only acts with ``trt_fp16_enable``) is not set. The FP32 graph is built
strongly typed as FP32 too (TensorRT's default TF32 math still applies); FP16 on TensorRT means the prepared FP16
graph (``sgjnd calibrate --precision fp16``), not a builder flag.

Option names and formats follow ONNX Runtime's TensorRT EP documentation; the values are strings ("True"/"False"
for booleans) because ORT accepts strings for every provider option. Pure Python: nothing is imported late.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sgjnd.engine_spec import BUILD_PRECISIONS, BatchProfile, profile_shapes
from sgjnd.errors import UsageError
from sgjnd.spec import Sidecar, TensorSpec


def default_cache_root() -> Path:
    """Where :func:`tensorrt_ep_options_for` keeps engine caches when not told: ``~/.cache/sgjnd/ort-tensorrt``."""
    return Path.home() / ".cache" / "sgjnd" / "ort-tensorrt"

DEFAULT_OPT_BATCH = 16
"""The opt batch of the EP profile when the sidecar gives only a maximum."""

CACHE_TAG = "strongly-typed"
"""Suffix of the per-graph engine cache folder. ORT's engine cache names do not record the precision flags, so
engines built by earlier versions of these options (weakly typed, ``trt_fp16_enable``) live in other folders and are
never reused for a strongly typed build."""


def shapes_option(shapes: dict[str, tuple[int, ...]]) -> str:
    """``{"f_ref": (1, 1024), "f_dis": (1, 1024)}`` -> ``"f_ref:1x1024,f_dis:1x1024"`` (ORT's profile format)."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in shape)}" for name, shape in shapes.items())


def tensorrt_ep_options(
    cache_dir: Path,
    profile: BatchProfile,
    input_specs: Sequence[TensorSpec],
    *,
    precision: str = "fp32",
    device_id: int = 0,
) -> dict[str, str]:
    """TensorRT EP options: engine and timing caches in ``cache_dir``, one explicit profile over the batch axis.

    Args:
        cache_dir: folder for the EP's engine cache and timing cache; created if missing. Use one folder per ONNX
            file (the EP keys engines by graph hash, but a shared folder grows without bound).
        profile: batch-axis profile; every input gets it (the head has two inputs).
        input_specs: the graph's inputs (``ModelSpec.graph(name).inputs``); only the batch axis may be dynamic.
        precision: the precision the graph was prepared in (``fp32``, ``fp16`` mixed precision, ``int8`` QDQ). It
            is checked, not passed on: the graph carries its precision and the EP builds it strongly typed, with
            ``trt_fp16_enable`` and ``trt_int8_enable`` off (either would let TensorRT override the graph's types).
        device_id: CUDA device ordinal.

    Returns:
        Provider options, all strings, for ``("TensorrtExecutionProvider", options)``.

    Raises:
        UsageError: the profile or precision is invalid.
        SpecError: an input has a dynamic axis other than the batch.
    """
    profile.validate()
    if precision not in BUILD_PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(BUILD_PRECISIONS)}, got {precision!r}")
    if not input_specs:
        raise UsageError("input_specs is empty: pass the graph's inputs, e.g. model.graph('encoder').inputs")
    shapes = profile_shapes(profile, input_specs)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    return {
        "device_id": str(int(device_id)),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        "trt_profile_min_shapes": shapes_option({name: s[0] for name, s in shapes.items()}),
        "trt_profile_opt_shapes": shapes_option({name: s[1] for name, s in shapes.items()}),
        "trt_profile_max_shapes": shapes_option({name: s[2] for name, s in shapes.items()}),
        # Off for every graph: either flag makes the EP build a weakly typed network (see the module docstring).
        "trt_fp16_enable": "False",
        "trt_int8_enable": "False",
    }


def tensorrt_ep_options_for(
    artifact: Path, sidecar: Sidecar, max_batch: int | None = None, *, cache_root: Path | None = None
) -> dict[str, str]:
    """:func:`tensorrt_ep_options` for one ONNX file of a model directory, from its sidecar.

    The profile is ``1, min(16, max), max`` with ``max`` from ``max_batch`` or the sidecar's ``details.max_batch``
    (64 if neither); the cache folder is ``cache_root/<first 16 hex of the ONNX sha256>-<CACHE_TAG>``.

    Args:
        artifact: the ONNX file (``encoder.onnx``, ``head.int8.onnx``, ...).
        sidecar: its sidecar.
        max_batch: the largest batch the session will see; None: from the sidecar.
        cache_root: parent of the per-graph cache folders; None: :func:`default_cache_root`.

    Raises:
        UsageError: the file is not a graph TensorRT can run (an ``int8-ort`` graph is asymmetric U8S8).
    """
    graph = sidecar.artifact.graph
    if graph is None:
        raise UsageError(f"{artifact}'s sidecar names no graph: it is not an ONNX graph of a model directory")
    if sidecar.artifact.precision.startswith("int8") and sidecar.artifact.precision != "int8":
        raise UsageError(
            f"{artifact.name} is a {sidecar.artifact.precision} graph (ONNX Runtime CPU flavour, asymmetric uint8 "
            "activations); TensorRT only runs symmetric int8 QDQ: use precision int8"
        )
    recorded = sidecar.artifact.details.get("max_batch")
    top = int(max_batch or (recorded if isinstance(recorded, int) and recorded > 0 else 64))
    profile = BatchProfile(1, min(DEFAULT_OPT_BATCH, top), top)
    precision = sidecar.artifact.precision if sidecar.artifact.precision in BUILD_PRECISIONS else "fp32"
    root = cache_root if cache_root is not None else default_cache_root()
    cache_dir = root / f"{sidecar.artifact.sha256[:16]}-{CACHE_TAG}"
    return tensorrt_ep_options(cache_dir, profile, sidecar.model.graph(graph).inputs, precision=precision)
