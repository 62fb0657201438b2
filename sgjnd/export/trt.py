"""ONNX -> TensorRT engines, with a sidecar per engine, and engine inspection.

The supported path works on TensorRT 10 and 11: the precision lives in the ONNX graph (``encoder.onnx`` for FP32,
``encoder.fp16.onnx`` from ModelOpt AutoCast, ``encoder.int8.onnx`` with symmetric int8 QDQ) and the network is
built STRONGLY_TYPED, so TensorRT keeps every tensor's type. The LEGACY path (TensorRT 10 only; see
:mod:`sgjnd.export.trt_legacy`) builds the FP32 graph weakly typed with BuilderFlag.FP16/INT8 instead.

Every build: validates the options first, logs the full configuration and library versions, adds a batch-axis
optimisation profile for every input, reports all ONNX parser errors, loads/updates/saves the timing cache, and
writes the engine and its sidecar atomically. ``tensorrt`` and the CUDA bindings are imported when a build runs.

    config = BuildConfig(precision="fp16", batch=BatchProfile(1, 16, 64))
    engines_from_model_dir(Path("models/sgjnd_r50"), config)   # encoder.fp16.engine, head.fp16.engine
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import platform
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sgjnd import __version__
from sgjnd.engine_spec import (
    RTX_DEFAULT_COMPUTE_CAPABILITIES,
    TENSORRT,
    TENSORRT_RTX,
    EngineRecord,
    TrtProduct,
    batch_shape,
    profile_shapes,
    trt_product,
)
from sgjnd.engine_spec import BatchProfile as BatchProfile
from sgjnd.engine_spec import BuildConfig as BuildConfig
from sgjnd.errors import BackendError, BuildError, SpecError, UsageError
from sgjnd.export.trt_legacy import (
    CalibrationBatches,
    CalibratorState,
    SourceSummary,
    calibration_cache_path,
    calibration_key_parts,
    check_calibration_source,
    make_entropy_calibrator,
    plan_calibration_cache,
    require_legacy,
)
from sgjnd.fileio import sha256_bytes, write_atomic
from sgjnd.runtime import cuda
from sgjnd.runtime.backends.registry import graph_names
from sgjnd.runtime.backends.trt import (
    TrtLogCapture,
    dims_tuple,
    engine_record,
    load_checked_engine,
    make_trt_logger,
    numpy_dtype,
    require_tensorrt,
    trt_module,
)
from sgjnd.runtime.modeldir import artifact_path, check_artifacts_ours, require_model_dir
from sgjnd.spec import ArtifactInfo, GraphName, GraphSpec, Sidecar, read_sidecar, write_sidecar

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = [
    "BatchProfile",
    "BuildConfig",
    "CalibrationBatches",
    "engine_from_onnx",
    "engine_information",
    "engines_from_model_dir",
    "onnx_source",
    "summarize_layers",
]

log = logging.getLogger(__name__)

NETWORK_STRONGLY_TYPED = "strongly-typed"
NETWORK_LEGACY = "legacy-weakly-typed"


# -- which file ----------------------------------------------------------------------------------------------------
def onnx_source(model_dir: Path, graph: GraphName, config: BuildConfig) -> Path:
    """The ONNX file a build of ``graph`` reads: the precision-prepared graph, or the FP32 one for fp32 and LEGACY."""
    precision = "fp32" if config.legacy_precision_flags else config.precision
    return artifact_path(model_dir, graph, precision, "onnx")


def _missing_onnx_hint(model_dir: Path, config: BuildConfig) -> str:
    if config.precision == "fp32" or config.legacy_precision_flags:
        return f"export it with: sgjnd export CHECKPOINT -o {model_dir}"
    return (
        f"make it with: sgjnd calibrate {model_dir} --precision {config.precision} (or, LEGACY on TensorRT 10 "
        "only, build from the FP32 graph with --legacy-precision-flags)"
    )


# -- versions ------------------------------------------------------------------------------------------------------
def library_versions(api: cuda.CudaApi | None, product: TrtProduct = TENSORRT) -> dict[str, str]:
    """Versions of everything that shapes an engine, for the build log and the sidecar's ``producer``.

    The ONNX parser ships inside TensorRT, so its release is TensorRT's; ``get_nv_onnx_parser_version()`` returns
    the parser's *interface* version (``NV_ONNX_PARSER_VERSION`` = major·10000 + minor·100 + patch: 100 or 200 in
    real releases, i.e. 0.1.0 or 0.2.0), recorded as such. ``api`` is None for a build without a GPU.
    """
    trt = trt_module(product)
    get_parser_version = getattr(trt, "get_nv_onnx_parser_version", None)
    parser = int(get_parser_version()) if get_parser_version is not None else 0
    versions = {
        "sgjnd": __version__,
        product.name: str(trt.__version__),
        "onnx-parser": str(trt.__version__),
        "onnx-parser-interface": f"{parser // 10000}.{parser // 100 % 100}.{parser % 100}" if parser else "unknown",
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    if api is not None:
        versions.update(api.versions())
    return versions


# -- network checks --------------------------------------------------------------------------------------------------
def _parse_onnx(parser: trt.OnnxParser, path: Path) -> None:
    """Parse ``path`` and raise with every parser error (TensorRT stops at the first fatal one)."""
    if parser.parse_from_file(str(path)):
        return
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or ["(the parser gave no reason)"]
    listing = "\n".join(f"  [{i}] {text}" for i, text in enumerate(errors))
    raise BuildError(f"TensorRT's ONNX parser rejected {path} with {len(errors)} error(s):\n{listing}")


def check_network_io(network: trt.INetworkDefinition, graph: GraphSpec, source: Path) -> None:
    """Check the parsed network's inputs and outputs against the graph spec (names, rank, static dims, and the
    input dtype: a uint8-input encoder must reach TensorRT as a UINT8 network input, cast inside the network).

    Raises:
        BuildError: naming the tensor and the difference.
    """
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    outputs = {network.get_output(i).name for i in range(network.num_outputs)}
    want_in = [t.name for t in graph.inputs]
    want_out = [t.name for t in graph.outputs]
    if sorted(inputs) != sorted(want_in) or sorted(outputs) != sorted(want_out):
        raise BuildError(
            f"{source} has inputs {sorted(inputs)} and outputs {sorted(outputs)}, but graph {graph.name} must have "
            f"inputs {want_in} and outputs {want_out}; re-export the model"
        )
    for spec in graph.inputs:
        got = dims_tuple(inputs[spec.name].shape)
        want = batch_shape(spec, -1)
        if len(got) != len(want) or any(w != -1 and g != w for g, w in zip(got, want, strict=True)):
            raise BuildError(f"{source}: input {spec.name!r} has shape {got}, but the spec says {spec.shape}")
        try:
            got_dtype = numpy_dtype(inputs[spec.name].dtype)
        except BackendError as exc:
            raise BuildError(f"{source}: input {spec.name!r}: {exc}") from exc
        if got_dtype != np.dtype(spec.dtype):
            raise BuildError(f"{source}: input {spec.name!r} is {got_dtype} in the parsed network, but the spec says "
                             f"{spec.dtype}; re-export the model")


# -- config ----------------------------------------------------------------------------------------------------------
def _add_profile(
    builder: trt.Builder, network_graph: GraphSpec, profile: BatchProfile, product: TrtProduct = TENSORRT
) -> trt.IOptimizationProfile:
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = trt_module(product)

    trt_profile = builder.create_optimization_profile()
    for name, (lo, mid, hi) in profile_shapes(profile, network_graph.inputs).items():
        trt_profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(mid)), trt.Dims(list(hi)))
    return trt_profile


def _configure(trt_config: trt.IBuilderConfig, config: BuildConfig) -> list[str]:
    """Apply the precision-independent options; return their description for the build log."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = trt_module(config.product)

    applied = [f"workspace={config.workspace_bytes}B", f"opt_level={config.opt_level}", "profiling=DETAILED"]
    trt_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
    trt_config.builder_optimization_level = config.opt_level
    trt_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector then reports layer precisions
    if hasattr(trt.BuilderFlag, "TF32"):
        if config.tf32:
            trt_config.set_flag(trt.BuilderFlag.TF32)
        else:  # TensorRT enables TF32 by default; FP32 should mean FP32, as in Polygraphy
            trt_config.clear_flag(trt.BuilderFlag.TF32)
        applied.append(f"tf32={config.tf32}")
    if config.version_compatible:
        trt_config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        applied.append("VERSION_COMPATIBLE")
    if config.hardware_compatibility is not None:
        level_name = {"ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}[config.hardware_compatibility]
        level = getattr(trt.HardwareCompatibilityLevel, level_name, None)
        if level is None:
            raise UsageError(
                f"--hardware-compatibility {config.hardware_compatibility} needs a TensorRT with "
                f"HardwareCompatibilityLevel.{level_name}; this one ({trt.__version__}) lacks it"
            )
        trt_config.hardware_compatibility_level = level
        applied.append(f"hardware_compatibility={level_name}")
    if config.product is TENSORRT_RTX:
        applied.append(f"compute_capabilities={','.join(_set_rtx_targets(trt_config, config))}")
    return applied


def rtx_targets(config: BuildConfig) -> tuple[str, ...]:
    """The compute capabilities a TensorRT-RTX build targets: those asked for, else its default (Ampere and later)."""
    return config.compute_capabilities or RTX_DEFAULT_COMPUTE_CAPABILITIES


def _set_rtx_targets(trt_config: Any, config: BuildConfig) -> tuple[str, ...]:
    """Name the target compute capabilities explicitly, so the sidecar records exactly what the engine holds."""
    import tensorrt_rtx as rtx

    targets = rtx_targets(config)
    trt_config.num_compute_capabilities = len(targets)
    for index, cc in enumerate(targets):
        value = getattr(rtx.ComputeCapability, "SM" + cc.replace(".", ""), None)
        if value is None or not trt_config.set_compute_capability(value, index):
            raise UsageError(
                f"TensorRT-RTX {rtx.__version__} cannot target compute capability {cc}; it knows "
                f"{', '.join(n for n in rtx.ComputeCapability.__members__ if n.startswith('SM'))}"
            )
    return targets


def _load_timing_cache(trt_config: trt.IBuilderConfig, path: Path | None) -> None:
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
        log.info("loaded timing cache %s (%d bytes)", path, len(data))
    elif path is not None:
        log.info("timing cache %s does not exist yet; it will be created", path)
    try:
        cache = trt_config.create_timing_cache(data)
    except Exception as exc:  # a corrupt file is an optimisation lost, not a failed build
        log.warning("timing cache %s is unreadable (%s); starting an empty one", path, exc)
        cache = None
    if cache is None or not trt_config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("timing cache %s was made for another TensorRT or GPU; starting an empty one", path)
        trt_config.set_timing_cache(trt_config.create_timing_cache(b""), ignore_mismatch=False)


def _save_timing_cache(trt_config: trt.IBuilderConfig, path: Path) -> None:
    cache = trt_config.get_timing_cache()
    if path.is_file():  # another build may have saved since we loaded: merge rather than overwrite
        disk = trt_config.create_timing_cache(path.read_bytes())
        if disk is not None and not cache.combine(disk, ignore_mismatch=False):
            log.warning("timing cache %s on disk does not match this TensorRT or GPU; replacing it", path)
    data = bytes(cache.serialize())
    write_atomic(path, data)
    log.info("saved timing cache %s (%d bytes)", path, len(data))


# -- build ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Legacy:
    """What the LEGACY path adds to one build."""

    flags: list[str]
    calibration_sha256: str | None = None
    state: CalibratorState | None = None
    note: str | None = None
    calibrator: Any = None  # kept referenced here until the build is done: TensorRT calls it during the build


def _setup_legacy(
    builder: trt.Builder,
    trt_config: trt.IBuilderConfig,
    sidecar: Sidecar,
    graph: GraphSpec,
    config: BuildConfig,
    onnx_path: Path,
    calibration: CalibrationBatches | None,
    api: cuda.CudaApi,
) -> _Legacy:
    import tensorrt as trt

    trt_config.set_flag(trt.BuilderFlag.FP16)
    if config.precision == "fp16":
        return _Legacy(["FP16"])
    if graph.name != "encoder":
        note = "LEGACY int8: the head was built with BuilderFlag.FP16 only (calibrating it would need encoder features)"
        return _Legacy(["FP16"], note=note)
    trt_config.set_flag(trt.BuilderFlag.INT8)
    summary = check_calibration_source(calibration, sidecar.model) if calibration is not None else None
    parts = calibration_key_parts(sidecar.artifact.sha256, sidecar.model, str(trt.__version__))
    plan = plan_calibration_cache(calibration_cache_path(onnx_path.parent, graph.name), parts, summary)
    if summary is None:  # a matching cache exists: TensorRT reads it and never asks for a batch
        summary = SourceSummary(batch_size=1, batches=0, fingerprint=plan.key)
    state = CalibratorState()
    calibrator = make_entropy_calibrator(calibration, summary, plan, api, sidecar.model.encoder_graph().inputs[0],
                                         state)
    trt_config.int8_calibrator = calibrator
    n = summary.batch_size  # calibration runs at one fixed batch: its own profile, min = opt = max
    if not trt_config.set_calibration_profile(_add_profile(builder, graph, BatchProfile(n, n, n))):
        raise BuildError(f"TensorRT rejected the calibration profile (batch {n}) for {onnx_path.name}")
    flags = ["FP16", "INT8", f"calibrator=entropy2(batch={n})"]
    return _Legacy(flags, plan.key, state, calibrator=calibrator)


def engine_from_onnx(
    onnx_path: Path,
    config: BuildConfig,
    *,
    out: Path | None = None,
    calibration: CalibrationBatches | None = None,
    device: int = 0,
) -> Path:
    """Build a TensorRT engine from one ONNX graph and write it with its sidecar.

    Args:
        onnx_path: an ONNX graph with a sidecar (``encoder.onnx``, ``head.fp16.onnx``, ...).
        config: build options; validated before any work.
        out: the engine path; None: ``<graph>[.<precision>].engine`` beside the ONNX file.
        calibration: LEGACY int8 only: calibration batches for the entropy calibrator.
        device: CUDA device ordinal to build on.

    Returns:
        The engine path (its sidecar is ``<engine>.json``).

    Raises:
        UsageError: an option cannot work (or LEGACY was requested on TensorRT 11).
        BackendUnavailable: TensorRT, the CUDA bindings, the driver or the GPU is missing (with how to install).
        SpecError: the ONNX file or its sidecar is missing or they disagree.
        BuildError: parsing or building failed (with TensorRT's errors).
    """
    config.validate()
    trt_version = require_tensorrt(config.product)
    if config.legacy_precision_flags:
        require_legacy(trt_version)
    onnx_path = Path(onnx_path)
    sidecar = read_sidecar(onnx_path, rebuild_hint=_missing_onnx_hint(onnx_path.parent, config))
    if sidecar.artifact.kind != "onnx" or sidecar.artifact.graph is None:
        raise SpecError(f"{onnx_path}'s sidecar describes a {sidecar.artifact.kind} artifact, not an ONNX graph")
    source_precision = "fp32" if config.legacy_precision_flags else config.precision
    if sidecar.artifact.precision != source_precision:
        raise UsageError(
            f"{onnx_path} holds a {sidecar.artifact.precision} graph, but --precision {config.precision} "
            f"{'with --legacy-precision-flags ' if config.legacy_precision_flags else ''}builds from a "
            f"{source_precision} graph (a STRONGLY_TYPED network keeps the graph's precision): use "
            f"{onnx_source(onnx_path.parent, sidecar.artifact.graph, config).name}"
        )
    if calibration is not None and not (config.legacy_precision_flags and config.precision == "int8"):
        raise UsageError("calibration batches are only used by --precision int8 --legacy-precision-flags")
    graph = sidecar.model.graph(sidecar.artifact.graph)
    ext = config.product.engine_ext
    out = Path(out) if out is not None else artifact_path(onnx_path.parent, graph.name, config.precision, ext)
    check_artifacts_ours([out], what="engine output")
    if config.product.builds_without_gpu:  # ahead of time: no CUDA bindings, driver or GPU needed
        return _build(onnx_path, out, sidecar, graph, config, None, None, calibration)
    api = cuda.load_cuda()
    gpu = cuda.require_device(api, device)
    return _build(onnx_path, out, sidecar, graph, config, api, gpu, calibration)


def _build(
    onnx_path: Path,
    out: Path,
    sidecar: Sidecar,
    graph: GraphSpec,
    config: BuildConfig,
    api: cuda.CudaApi | None,
    gpu: cuda.DeviceInfo | None,
    calibration: CalibrationBatches | None,
) -> Path:
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = trt_module(config.product)

    product = config.product
    capture = TrtLogCapture()
    logger = make_trt_logger(capture, product)
    builder = trt.Builder(logger)
    if builder is None:
        raise BuildError(f"TensorRT could not create a builder{capture.summary()}")
    legacy = config.legacy_precision_flags
    flags = 0 if legacy else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    _parse_onnx(parser, onnx_path)
    check_network_io(network, graph, onnx_path)

    trt_config = builder.create_builder_config()
    applied = _configure(trt_config, config)
    if trt_config.add_optimization_profile(_add_profile(builder, graph, config.batch, product)) < 0:
        raise BuildError(f"TensorRT rejected the batch profile {config.batch} for {onnx_path}{capture.summary()}")
    extra = _Legacy([])
    if legacy:
        if api is None:
            raise BuildError("internal error: a LEGACY build needs the CUDA API for its calibrator")
        extra = _setup_legacy(builder, trt_config, sidecar, graph, config, onnx_path, calibration, api)
    if product is TENSORRT:  # TensorRT-RTX has no timing cache (validate() refuses the option)
        _load_timing_cache(trt_config, config.timing_cache)

    versions = library_versions(api, product)
    network_kind = NETWORK_LEGACY if legacy else NETWORK_STRONGLY_TYPED
    log.info(
        "building %s from %s\n%s",
        out.name,
        onnx_path,
        json.dumps(
            {
                "build_options": config.to_record(),
                "network": network_kind,
                "builder_settings": applied + extra.flags,
                "profile_shapes": {k: list(v) for k, v in profile_shapes(config.batch, graph.inputs).items()},
                "product": product.name,
                "gpu": dataclasses.asdict(gpu) if gpu is not None else "none (ahead-of-time build)",
                "versions": versions,
                "onnx_sha256": sidecar.artifact.sha256,
            },
            indent=2,
        ),
    )
    if legacy:
        log.warning("LEGACY build of %s: weak typing and builder precision flags (removed in TensorRT 11)", out.name)

    started = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, trt_config)
    finally:
        if extra.state is not None:
            extra.state.close()
    seconds = time.perf_counter() - started
    if extra.state is not None and extra.state.error:
        raise BuildError(f"LEGACY int8 calibration of {onnx_path.name} failed: {extra.state.error}")
    if serialized is None:
        raise BuildError(
            f"{product.title} could not build {out.name} from {onnx_path}{capture.summary()} (run with -vv)"
        )
    data = bytes(memoryview(serialized))
    if config.timing_cache is not None:
        _save_timing_cache(trt_config, config.timing_cache)

    calibration_sha = extra.calibration_sha256 or sidecar.artifact.details.get("calibration_sha256")
    record = EngineRecord(
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu.name if gpu is not None else "",
        compute_capability=gpu.compute_capability if gpu is not None else "",
        build=config,
        network=network_kind,
        onnx_file=onnx_path.name,
        onnx_sha256=sidecar.artifact.sha256,
        calibration_sha256=str(calibration_sha) if calibration_sha else None,
        built_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        build_seconds=round(seconds, 3),
        versions=versions,
        notes=(extra.note,) if extra.note else (),
        target_compute_capabilities=rtx_targets(config) if product is TENSORRT_RTX else (),
    )
    artifact = ArtifactInfo(
        kind="engine",
        file=out.name,
        sha256=sha256_bytes(data),
        graph=graph.name,
        precision=config.precision,
        checkpoint_sha256=sidecar.artifact.checkpoint_sha256,
        weights=sidecar.artifact.weights,
        producer=versions,
        details=record.to_details(),
    )
    write_atomic(out, data)  # engine first: a crash before the sidecar leaves a hash mismatch, which is refused
    write_sidecar(out, Sidecar(model=sidecar.model, artifact=artifact))
    log.info("wrote %s (%.1f MiB) in %.1f s", out, len(data) / 2**20, seconds)
    return out


def engines_from_model_dir(
    model_dir: Path, config: BuildConfig, *, calibration: CalibrationBatches | None = None, device: int = 0
) -> list[Path]:
    """Build the encoder and head engines of a model directory (``encoder[.prec].engine``, ``head[.prec].engine``).

    Args:
        model_dir: a directory written by ``sgjnd export`` (and ``sgjnd calibrate`` for fp16/int8).
        config: build options; validated before any work.
        calibration: LEGACY int8 only: calibration batches for the encoder.
        device: CUDA device ordinal to build on.

    Returns:
        The engine paths, encoder first.

    Raises:
        As :func:`engine_from_onnx`; SpecError names the command that makes a missing ONNX graph.
    """
    config.validate()
    trt_version = require_tensorrt(config.product)  # before looking at files: without it nothing else matters
    if config.legacy_precision_flags:
        require_legacy(trt_version)
    model_dir = require_model_dir(Path(model_dir), rebuild_hint=f"sgjnd export CHECKPOINT -o {model_dir}")
    sources = {graph: onnx_source(model_dir, graph, config) for graph in graph_names()}
    missing = [p.name for p in sources.values() if not p.is_file()]
    if missing:
        raise SpecError(f"{model_dir} has no {', '.join(missing)}: {_missing_onnx_hint(model_dir, config)}")
    return [
        engine_from_onnx(path, config, calibration=calibration if graph == "encoder" else None, device=device)
        for graph, path in sources.items()
    ]


# -- inspection ----------------------------------------------------------------------------------------------------
_PRECISION_WORDS: Sequence[tuple[str, str]] = (
    # Matched as substrings of the lower-cased text, first match wins: a word that contains another comes first
    # (uint8 before int8, bfloat16 and float8/float4 before float). TensorRT 10 writes names such as "FP16",
    # "Half", "Float", "Int8"; TensorRT 11 adds data type names such as "BFloat16", "Float8E4M3" or "FP8".
    ("uint8", "uint8"),
    ("int8", "int8"),
    ("int4", "int4"),
    ("float8", "fp8"),
    ("fp8", "fp8"),
    ("e4m3", "fp8"),
    ("float4", "fp4"),
    ("fp4", "fp4"),
    ("bfloat16", "bf16"),
    ("bf16", "bf16"),
    ("float16", "fp16"),
    ("fp16", "fp16"),
    ("half", "fp16"),
    ("float32", "fp32"),
    ("fp32", "fp32"),
    ("float", "fp32"),
    ("int32", "int32"),
    ("int64", "int64"),
    ("bool", "bool"),
)


def tensor_precision(format_text: str) -> str:
    """The precision named in an inspector tensor text, or ``unknown``.

    Reads TensorRT 10's combined ``Format/Datatype`` text (``Row major linear FP16 format`` -> ``fp16``) as well as
    TensorRT 11's separate data type (``Half``, ``Float``, ``Int8``, ``BFloat16``) and format texts.
    """
    text = str(format_text).lower()
    for word, precision in _PRECISION_WORDS:
        if word in text:
            return precision
    return "unknown"


def _is_map(value: object) -> bool:
    return isinstance(value, Mapping)


def summarize_layers(info: Mapping[str, Any]) -> dict[str, Any]:
    """Per-layer precision from the engine inspector's JSON, in TensorRT 10's layout or TensorRT 11's.

    TensorRT 10 gives each layer tensor one ``Format/Datatype`` text and the engine's I/O as ``Bindings``, a list of
    names. TensorRT 11 splits the tensor text into ``Datatype`` and ``Format`` fields and replaces ``Bindings`` with
    ``I/O Tensors``, a list of objects (``Name``, ``IOMode``, ``DataType``, ``Dimensions``, ...). A tensor's
    precision is read from its data type field when there is one with a known type, else from its format text; a
    layer's precision is that of its first output with a known type (else of its inputs).

    Returns:
        ``layers`` (one row per layer: name, type, precision, input and output precisions, tactic),
        ``precision_counts`` (layers per precision), ``io_tensors`` (the engine's I/O tensor names, in both layouts)
        and ``io_precisions`` (name -> precision; ``unknown`` for TensorRT 10, whose ``Bindings`` carry no type).
    """

    def precision_of(tensor: Mapping[str, Any]) -> str:
        for key in ("Datatype", "DataType", "Format/Datatype", "Format"):
            precision = tensor_precision(tensor.get(key, ""))
            if precision != "unknown":
                return precision
        return "unknown"

    def precisions(tensors: object) -> list[str]:
        return [precision_of(t) for t in tensors if _is_map(t)] if isinstance(tensors, list) else []

    rows: list[dict[str, Any]] = []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):  # LAYER_NAMES_ONLY verbosity
            rows.append({"name": layer, "type": None, "precision": "unknown", "inputs": [], "outputs": []})
            continue
        if not _is_map(layer):
            continue
        inputs = precisions(layer.get("Inputs"))
        outputs = precisions(layer.get("Outputs"))
        known = [p for p in (*outputs, *inputs) if p != "unknown"]
        rows.append(
            {
                "name": layer.get("Name"),
                "type": layer.get("LayerType"),
                "precision": known[0] if known else "unknown",
                "inputs": inputs,
                "outputs": outputs,
                "tactic": layer.get("TacticName"),
            }
        )
    io = info.get("I/O Tensors", info.get("Bindings", []))
    io_precisions: dict[str, str] = {}
    for tensor in io if isinstance(io, list) else []:
        if _is_map(tensor) and tensor.get("Name") is not None:  # TensorRT 11: an object per tensor
            io_precisions[str(tensor["Name"])] = precision_of(tensor)
        elif isinstance(tensor, str):  # TensorRT 10: a name
            io_precisions[tensor] = "unknown"
    return {
        "layers": rows,
        "precision_counts": dict(Counter(r["precision"] for r in rows)),
        "io_tensors": list(io_precisions),
        "io_precisions": io_precisions,
    }


def engine_information(
    engine_path: Path, *, device: int = 0, allow_host_code: bool = False, allow_other_gpu_model: bool = False
) -> dict[str, Any]:
    """The engine inspector's layer information (JSON), with formats resolved at the profile's opt shapes.

    Args:
        engine_path: an engine with its sidecar (checked against this machine and its sha256 first).
        device: CUDA device ordinal.
        allow_host_code: allow a version-compatible engine's host code to run on load.
        allow_other_gpu_model: load an engine built on another GPU model of the same compute capability.

    Returns:
        ``{"summary": summarize_layers(...), "raw": <inspector JSON>}``.

    Raises:
        BackendUnavailable, SpecError, UsageError, BackendError: as the TensorRT backend's load.
    """
    product = trt_product(engine_record(read_sidecar(Path(engine_path), verify_hash=False), str(engine_path)).product)
    trt_version = require_tensorrt(product)
    api = cuda.load_cuda()
    gpu = cuda.require_device(api, device)
    capture = TrtLogCapture()
    loaded = load_checked_engine(
        Path(engine_path), gpu, capture, allow_host_code=allow_host_code, allow_other_gpu_model=allow_other_gpu_model,
        product=product,
    )
    try:
        graph = loaded.sidecar.model.graph(loaded.sidecar.artifact.graph or "encoder")
        text = _engine_json(loaded.engine, graph, loaded.record.profile.opt, product)
    finally:
        loaded.release()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackendError(f"TensorRT {trt_version}'s inspector returned text that is not JSON: {exc}") from exc
    return {"summary": summarize_layers(raw), "raw": raw}


def _engine_json(engine: trt.ICudaEngine, graph: GraphSpec, batch: int, product: TrtProduct = TENSORRT) -> str:
    """The inspector's JSON; the context and inspector die when this returns, before the engine."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = trt_module(product)

    context = engine.create_execution_context()
    inspector = engine.create_engine_inspector()
    if context is not None:  # without concrete shapes the inspector says "N/A due to dynamic shapes"
        for spec in graph.inputs:
            context.set_input_shape(spec.name, trt.Dims(list(batch_shape(spec, batch))))
        inspector.execution_context = context
    return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
