"""Export a checkpoint to the two deployment graphs, ``encoder.onnx`` and ``head.onnx``, with JSON sidecars.

Why the TorchScript exporter (``dynamo=False``) by default: on torch 2.13 it writes exactly the requested opset
(17 is the lowest with ``LayerNormalization`` as one op, which TensorRT 8.6+ maps to its normalisation layer and
which keeps FP16 LayerNorm from overflowing), names the dynamic batch axis as asked, gives byte-identical files for
an unchanged checkpoint, and takes well under a second on the tiny model. The dynamo exporter
(``exporter="dynamo"``) cannot write opset 17 (its translation starts at 18 and the down-conversion fails on this
graph), takes seconds, and is kept as the path forward for when the TorchScript exporter is removed.

Every export is checked before anything is written: ``onnx.checker`` with ``full_check``, strict shape inference,
the graph's inputs and outputs against the model spec, and ONNX Runtime against PyTorch on real patches (reference
and JPEG-distorted patches from the bundled photos) at the batch size of the parity set and at batch 1.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

import sgjnd
from sgjnd.compare.tensors import OutputComparison, Tolerance, compare_outputs, format_comparisons, tolerances_for
from sgjnd.errors import ExportError, SgjndError, UsageError
from sgjnd.fileio import atomic_output, sha256_bytes
from sgjnd.runtime.modeldir import artifact_path, check_artifacts_ours
from sgjnd.spec import (
    BATCH,
    ArtifactInfo,
    EncoderInput,
    GraphName,
    GraphSpec,
    ModelSpec,
    Sidecar,
    read_sidecar,
    sidecar_path,
)

if TYPE_CHECKING:
    import onnx
    import torch

    from sgjnd.runtime.pairs import PairSet

log = logging.getLogger(__name__)

Exporter = Literal["torchscript", "dynamo"]
MIN_OPSET = 17
"""Lowest opset accepted: LayerNormalization is a single ONNX op from opset 17 on."""

DEFAULT_MAX_BATCH = 64
"""Largest batch recorded in the sidecars when none is given (TensorRT profiles are built up to it)."""

PARITY_QFS: tuple[int, ...] = (20, 60)
"""JPEG qualities of the distorted parity patches: one clearly visible, one near typical JNDs."""

PARITY_PATCHES_PER_PHOTO = 1
"""Reference patches cut from each of two photos; each also gives one distorted patch per QF in PARITY_QFS."""

Simplifier = Callable[["onnx.ModelProto"], "onnx.ModelProto"]


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how well ONNX Runtime matched PyTorch.

    Attributes:
        out_dir: the model directory.
        files: graph name -> ONNX file.
        sidecars: graph name -> the sidecar written beside it.
        parity: check name (``encoder``, ``encoder[batch=1]``, ``head``) -> per-output comparisons.
        opset: the ONNX opset of both graphs.
        exporter: which torch exporter made the graphs.
        simplified: graph name -> the simplifier whose output was kept for it, or None.
        parity_source: where the parity patches came from.
        seconds: wall time of the whole export.
    """

    out_dir: Path
    files: dict[str, Path]
    sidecars: dict[str, Sidecar]
    parity: dict[str, list[OutputComparison]]
    opset: int
    exporter: str
    simplified: dict[str, str | None]
    parity_source: str
    seconds: float

    def summary(self) -> str:
        """A few readable lines: files, sizes, opset and the parity of every output."""
        lines = [f"exported to {self.out_dir} (opset {self.opset}, {self.exporter} exporter, {self.seconds:.1f} s)"]
        for graph, path in self.files.items():
            lines.append(f"  {path.name:<12} {path.stat().st_size / 2**20:8.2f} MiB  sha256 "
                         f"{self.sidecars[graph].artifact.sha256[:16]}…")
        for graph, simplifier in self.simplified.items():
            if simplifier:
                lines.append(f"  {graph} simplified with {simplifier} (outputs verified unchanged)")
        lines.append(f"ONNX Runtime vs PyTorch on {self.parity_source}:")
        for check, comparisons in self.parity.items():
            lines.append(format_comparisons(comparisons, title=f" {check}"))
        return "\n".join(lines)


@dataclass
class _Graph:
    """One graph in memory between export and writing."""

    name: GraphName
    spec: GraphSpec
    model: ModelSpec
    checkpoint_sha256: str
    proto: onnx.ModelProto
    data: bytes = b""


def onnx_from_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    *,
    opset: int = MIN_OPSET,
    max_batch: int = DEFAULT_MAX_BATCH,
    parity_patches: np.ndarray | None = None,
    exporter: Exporter = "torchscript",
    simplify: bool = True,
    encoder_input: EncoderInput = "uint8",
) -> ExportReport:
    """Export the encoder and head of ``checkpoint`` to ``out_dir/encoder.onnx`` and ``out_dir/head.onnx``.

    Nothing is written until both graphs have passed every check; then each file and its sidecar are written
    through a temporary file and a rename, so a failed export leaves ``out_dir`` as it was.

    Args:
        checkpoint: a checkpoint written by ``sgjnd.model.save_checkpoint`` (with its ``.json`` sidecar).
        out_dir: the model directory; created if missing.
        opset: ONNX opset of the graphs (at least 17).
        max_batch: the largest batch the runtime may send, recorded in the sidecars (TensorRT profiles use it).
        parity_patches: patches for the parity check: (N, s, s, 3) uint8 BGR pixels (either encoder input), or
            normalised (N, 3, s, s) float32 patches (float32 encoder input only); None uses reference and
            JPEG-distorted patches of the bundled photos.
        exporter: ``torchscript`` (exact opset, fast) or ``dynamo`` (needs opset >= 18).
        simplify: run onnxslim (or onnx-simplifier) when installed, and keep its result only if the graph's inputs,
            outputs and ONNX Runtime results are unchanged.
        encoder_input: ``uint8`` (default): the encoder takes (N, s, s, 3) BGR pixels and normalises inside the
            graph (:class:`sgjnd.model.pixels.PixelEncoder`); ``float32``: it takes normalised (N, 3, s, s) patches.
            Either way PyTorch's reference runs the float network on the runtime's own float preprocessing, so the
            parity check also proves the in-graph preprocessing.

    Returns:
        The report: files, sidecars, parity figures.

    Raises:
        UsageError: an argument is out of range.
        CheckpointError, SpecError: the checkpoint or its sidecar cannot be used.
        ExportError: torch cannot export the model, the graph fails the ONNX checks, or ONNX Runtime differs from
            PyTorch beyond the FP32 tolerance (the message holds the comparison).
    """
    import onnx
    import onnxruntime
    import torch

    from sgjnd.model import load_checkpoint
    from sgjnd.model.pixels import PixelEncoder

    start = time.perf_counter()
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    _check_args(out_dir, opset, max_batch, exporter, encoder_input)
    check_artifacts_ours([artifact_path(out_dir, g) for g in ("encoder", "head")], what="model directory (-o)")
    hint = f"sgjnd export {checkpoint} -o {out_dir}"
    network = load_checkpoint(checkpoint)
    source = read_sidecar(checkpoint, verify_hash=False)  # load_checkpoint verified the hash and the embedded spec
    network_spec = source.model.with_encoder_input("float32")  # what the torch modules take
    spec = source.model.with_encoder_input(encoder_input)  # what the graphs take, recorded in their sidecars
    floats, pixels, pair_set, parity_source = _parity_inputs(network_spec, parity_patches)
    if encoder_input == "uint8" and pixels is None:
        raise UsageError(
            "parity_patches for a uint8-input encoder must be (N, s, s, 3) uint8 BGR pixels, got normalised float32 "
            "patches: pass the pixels, or export with encoder_input='float32'"
        )
    patches = pixels if encoder_input == "uint8" and pixels is not None else floats  # what the encoder graph takes

    graphs: dict[GraphName, _Graph] = {}
    with torch.no_grad():
        samples = {
            "encoder": (torch.from_numpy(patches[:2].copy()),),
            "head": (torch.zeros(2, spec.feature_dim), torch.zeros(2, spec.feature_dim)),
        }
        encoder = PixelEncoder(network.encoder, network_spec) if encoder_input == "uint8" else network.encoder
        modules: dict[GraphName, torch.nn.Module] = {"encoder": encoder, "head": network.head}
        for name in ("encoder", "head"):
            graph_spec = spec.graph(name)
            proto = _export(modules[name], samples[name], graph_spec, opset, exporter, max_batch)
            if modules[name] is not network.encoder and name == "encoder":
                _unwrap_names(proto, "encoder", "pixels")
            proto = _finish(proto, graph_spec, spec, source.artifact.sha256)
            _check_opset(proto, graph_spec, opset)
            _check_layernorm(modules[name], proto, graph_spec, opset)
            graphs[name] = _Graph(name, graph_spec, spec, source.artifact.sha256, proto)

        # Reference results from PyTorch: the float network on the runtime's float preprocessing (whatever the graph
        # takes): features of all parity patches, q and w of (reference, distorted) pairs.
        features = network.encoder(torch.from_numpy(floats)).numpy()
        single = network.encoder(torch.from_numpy(floats[:1].copy())).numpy()
        f_ref, f_dis = _pairs(features, pair_set)
        q, w = network.head(torch.from_numpy(f_ref), torch.from_numpy(f_dis))
    feeds = {
        "encoder": {"patches": patches},
        "encoder[batch=1]": {"patches": patches[:1].copy()},
        "head": {"f_ref": f_ref, "f_dis": f_dis},
    }
    expected = {
        "encoder": {"features": features},
        "encoder[batch=1]": {"features": single},
        "head": {"q": q.numpy(), "w": w.numpy()},
    }

    tolerance = tolerances_for("fp32")
    simplified: dict[str, str | None] = dict.fromkeys(graphs)
    for name, graph in graphs.items():
        graph.data = graph.proto.SerializeToString()
        checks = [c for c in feeds if c.split("[")[0] == name]
        if simplify:
            graph.data, used = _try_simplify(graph, {c: feeds[c] for c in checks}, tolerance)
            simplified[name] = used
    parity: dict[str, list[OutputComparison]] = {}
    sessions = {name: _session(g.data, g.spec, hint) for name, g in graphs.items()}
    for check, check_feeds in feeds.items():
        session = sessions[check.split("[")[0]]  # type: ignore[index]
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, check_feeds), strict=True))
        parity[check] = compare_outputs(expected[check], outputs, tolerance)
    failed = [c for cs in parity.values() for c in cs if not c.passed]
    if failed:
        table = "\n".join(format_comparisons(cs, title=f" {check}") for check, cs in parity.items())
        raise ExportError(
            f"ONNX Runtime {onnxruntime.__version__} differs from PyTorch beyond the FP32 tolerance on "
            f"{parity_source}; nothing was written to {out_dir}.\n{table}\nThis points to an exporter or runtime "
            f"bug: try another --opset, or report it with this output."
        )

    producer = _producer_versions(torch, onnx, onnxruntime)
    sidecars: dict[str, Sidecar] = {}
    for name, graph in graphs.items():
        path = artifact_path(out_dir, name)
        details: dict[str, Any] = {
            "opset": opset,
            "max_batch": max_batch,
            "exporter": exporter,
            "simplifier": simplified[name],
            "parity": {
                check: {c.name: _figures(c) for c in cs} for check, cs in parity.items() if check.startswith(name)
            },
            "parity_source": parity_source,
        }
        info = ArtifactInfo(
            kind="onnx",
            file=path.name,
            sha256=sha256_bytes(graph.data),
            graph=name,
            precision="fp32",
            checkpoint_sha256=source.artifact.sha256,
            weights=source.artifact.weights,
            producer=producer,
            details=details,
        )
        sidecars[name] = Sidecar(model=spec, artifact=info)
    files = _write_all(out_dir, {name: g.data for name, g in graphs.items()}, sidecars)
    report = ExportReport(
        out_dir=out_dir,
        files=files,
        sidecars=sidecars,
        parity=parity,
        opset=opset,
        exporter=exporter,
        simplified=simplified,
        parity_source=parity_source,
        seconds=time.perf_counter() - start,
    )
    log.info("%s", report.summary())
    return report


# -- checks ----------------------------------------------------------------------------------------------------


def _check_args(out_dir: Path, opset: int, max_batch: int, exporter: str, encoder_input: str) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise UsageError(
            f"opset must be an integer >= {MIN_OPSET} (LayerNormalization is one op from opset 17), got {opset!r}"
        )
    if exporter not in ("torchscript", "dynamo"):
        raise UsageError(f"exporter must be 'torchscript' or 'dynamo', got {exporter!r}")
    if exporter == "dynamo" and opset < 18:
        raise UsageError(f"the dynamo exporter writes opset 18 or later, got --opset {opset}; use 18+ or torchscript")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise UsageError(f"max_batch must be a positive integer, got {max_batch!r}")
    if encoder_input not in ("uint8", "float32"):
        raise UsageError(f"encoder_input must be 'uint8' or 'float32', got {encoder_input!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a directory: give a directory for the ONNX graphs")


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    graph: GraphSpec,
    opset: int,
    exporter: Exporter,
    max_batch: int,
) -> onnx.ModelProto:
    """Export one module to an in-memory ModelProto with a dynamic batch axis on every input and output."""
    import onnx
    import torch

    inputs = [t.name for t in graph.inputs]
    outputs = [t.name for t in graph.outputs]
    module.eval()
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo; it is chosen deliberately (module docstring).
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            # shapes read in Python (the attention's reshapes) trace to constants; the dynamic batch is proven
            # instead by the parity check at two batch sizes.
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            # dynamo: both head inputs share one batch Dim on purpose, which it reports as an unused axis name.
            warnings.filterwarnings("ignore", message=".*shares the same shape constraints", category=UserWarning)
            if exporter == "torchscript":
                buffer = io.BytesIO()
                torch.onnx.export(
                    module,
                    args,
                    buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
                    input_names=inputs,
                    output_names=outputs,
                    opset_version=opset,
                    dynamo=False,
                    dynamic_axes={name: {0: BATCH} for name in [*inputs, *outputs]},
                    do_constant_folding=True,
                )
                return onnx.load_from_string(buffer.getvalue())
            batch = torch.export.Dim(BATCH, min=1, max=max_batch)
            chatter = io.StringIO()  # the dynamo exporter prints its progress; keep it for the debug log
            with contextlib.redirect_stdout(chatter):
                program = torch.onnx.export(
                    module,
                    args,
                    None,
                    input_names=inputs,
                    output_names=outputs,
                    opset_version=opset,
                    dynamo=True,
                    external_data=False,
                    dynamic_shapes=tuple({0: batch} for _ in inputs),
                    verbose=False,
                )
            log.debug("dynamo exporter output for %s:\n%s", graph.name, chatter.getvalue())
            if program is None:  # pragma: no cover - dynamo always returns a program when f is None
                raise ExportError("torch.onnx.export returned no program")
            proto: onnx.ModelProto = program.model_proto
            return proto
    except SgjndError:
        raise
    except Exception as exc:  # torch raises many types (TorchExportError, RuntimeError, UnsupportedOperatorError, ...)
        raise ExportError(
            f"torch {torch.__version__} could not export the {graph.name} graph to ONNX opset {opset} with the "
            f"{exporter} exporter: {type(exc).__name__}: {str(exc).strip()[:800]}"
        ) from exc


def _unwrap_names(proto: onnx.ModelProto, inner: str, outer: str) -> None:
    """Give the wrapped module's nodes and tensors the names they have when it is exported alone, and put the
    wrapper's own under ``/<outer>/``.

    Exported inside :class:`~sgjnd.model.pixels.PixelEncoder`, every encoder node would be named ``/encoder/...``
    and every weight ``encoder....``; recipes that name nodes (``--exclude-nodes`` patterns such as
    ``/backbone/_blocks.[0-5]/*``, sensitivity reports) must apply to both kinds of graph, so the names are made
    those of the float graph. The preprocessing nodes (``/Cast``, ``/Mul``, ...) move to ``/pixels/...`` so that
    they cannot collide with the encoder's top-level nodes.
    """
    scope, weights = f"/{inner}/", f"{inner}."

    def rename(name: str) -> str:
        if name.startswith(scope):
            return "/" + name[len(scope):]
        if name.startswith(weights):
            return name[len(weights):]
        if name.startswith("/"):
            return f"/{outer}{name}"
        return name

    graph = proto.graph
    kept = {v.name for v in (*graph.input, *graph.output)}  # the I/O names are the spec's
    for node in graph.node:
        node.name = rename(node.name)
        node.input[:] = [n if n in kept else rename(n) for n in node.input]
        node.output[:] = [n if n in kept else rename(n) for n in node.output]
    for init in graph.initializer:
        init.name = rename(init.name)
    for info in graph.value_info:
        info.name = rename(info.name)


def _finish(proto: onnx.ModelProto, graph: GraphSpec, model: ModelSpec, checkpoint_sha256: str) -> onnx.ModelProto:
    """Pin the I/O shapes to the spec, record provenance in metadata, and run the full checker and shape inference."""
    import onnx

    for values, specs in ((proto.graph.input, graph.inputs), (proto.graph.output, graph.outputs)):
        names = [v.name for v in values]
        if names != [t.name for t in specs]:
            raise ExportError(f"the exported {graph.name} graph has I/O {names}, expected {[t.name for t in specs]}")
        for value, spec in zip(values, specs, strict=True):
            shape = value.type.tensor_type.shape
            shape.ClearField("dim")
            for d in spec.shape:
                dim = shape.dim.add()
                if isinstance(d, int):
                    dim.dim_value = d
                else:
                    dim.dim_param = d
    # Intermediate shapes are inferred afresh, so they agree with the pinned I/O shapes and carry no stale names.
    del proto.graph.value_info[:]
    del proto.metadata_props[:]
    for key, value in (("sgjnd.model", model.name), ("sgjnd.graph", graph.name),
                       ("sgjnd.checkpoint_sha256", checkpoint_sha256), ("sgjnd.version", sgjnd.__version__)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported {graph.name} graph fails the ONNX checker: {exc}") from exc
    return proto


def _check_opset(proto: onnx.ModelProto, graph: GraphSpec, opset: int) -> None:
    """The graph must be at exactly the requested opset (the sidecar records it; TensorRT versions depend on it)."""
    found = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if found != [opset]:
        raise ExportError(f"the exported {graph.name} graph has opset {found}, not the requested {opset}")


def _check_layernorm(module: torch.nn.Module, proto: onnx.ModelProto, graph: GraphSpec, opset: int) -> None:
    """Every nn.LayerNorm must be one LayerNormalization node (TensorRT's FP16 LayerNorm fix depends on it)."""
    import torch

    wanted = sum(isinstance(m, torch.nn.LayerNorm) for m in module.modules())
    found = sum(n.op_type == "LayerNormalization" for n in proto.graph.node)
    if found < wanted:
        raise ExportError(
            f"the {graph.name} graph has {found} LayerNormalization nodes for {wanted} LayerNorm modules at opset "
            f"{opset}: the exporter decomposed LayerNorm, which overflows in FP16 on TensorRT"
        )


def _session(data: bytes, graph: GraphSpec, hint: str) -> Any:
    """A CPU session on ``data`` (full optimisation, as the runtime uses), with its I/O checked against the spec."""
    import onnxruntime

    from sgjnd.runtime.backends.ort import check_session_io

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = onnxruntime.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's error types are not a stable hierarchy
        raise ExportError(f"ONNX Runtime cannot load the exported {graph.name} graph: {exc}") from exc
    try:
        check_session_io(session, graph, Path(f"{graph.name}.onnx"), hint)
    except SgjndError as exc:
        raise ExportError(str(exc)) from exc
    return session


# -- parity inputs ---------------------------------------------------------------------------------------------


def _parity_inputs(
    spec: ModelSpec, given: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, PairSet | None, str]:
    """Parity patches: normalised float32 (for PyTorch and float graphs), the uint8 BGR pixels they came from (None
    when float patches were given), their (reference, distorted) layout when we made them, and where they came from.

    Made by the predictor's own pair maker (exact-crop JPEG at :data:`PARITY_QFS`), so the graphs are checked on
    the inputs they will run on.
    """
    from sgjnd.runtime.patches import normalize_patches

    s = spec.patch_size
    if given is not None:
        array = np.asarray(given)
        if array.dtype == np.uint8 and array.ndim == 4 and array.shape[1:] == (s, s, 3) and len(array) >= 2:
            pixels = np.ascontiguousarray(array)
            return normalize_patches(pixels, spec), pixels, None, f"{len(array)} given patches"
        if array.dtype == np.float32 and array.ndim == 4 and array.shape[1:] == (3, s, s) and len(array) >= 2:
            return np.ascontiguousarray(array), None, None, f"{len(array)} given patches"
        raise UsageError(
            f"parity_patches must be uint8 (N >= 2, {s}, {s}, 3) BGR pixels or float32 (N >= 2, 3, {s}, {s}) "
            f"normalised patches, got {array.dtype} {array.shape}"
        )
    from sgjnd.runtime.pairs import PairMaker, make_pair_set

    images, source = _parity_images(s)
    pair_set = make_pair_set(
        PairMaker(spec.with_encoder_input("uint8")), images, PARITY_QFS, max_patches=PARITY_PATCHES_PER_PHOTO
    )
    n_ref, n_all = pair_set.n_ref, len(pair_set.patches)
    qfs = ", ".join(map(str, PARITY_QFS))
    described = f"{n_ref} reference + {n_all - n_ref} JPEG-distorted (QF {qfs}) patches of {source}"
    return normalize_patches(pair_set.patches, spec), pair_set.patches, pair_set, described


def _pairs(features: np.ndarray, pair_set: PairSet | None) -> tuple[np.ndarray, np.ndarray]:
    """(f_ref, f_dis) pairs for the head: each reference vs its distorted versions, else each patch vs the next."""
    if pair_set is not None:
        f_ref, f_dis = pair_set.pairs(features)
        return np.ascontiguousarray(f_ref), np.ascontiguousarray(f_dis)
    return np.ascontiguousarray(features), np.ascontiguousarray(np.roll(features, 1, axis=0))


def _parity_images(patch_size: int) -> tuple[list[np.ndarray], str]:
    """Two bundled photos as BGR uint8 (at least one patch each), or seeded synthetic images if none are bundled."""
    try:
        samples = importlib.import_module("sgjnd.samples")
        photos = [_as_bgr(p) for p in list(samples.sample_photos())[:2]]
        photos = [p for p in photos if p.shape[0] >= patch_size and p.shape[1] >= patch_size]
        if photos:
            return photos, "the bundled photos"
    except (ImportError, AttributeError, SgjndError) as exc:
        log.info("bundled photos unavailable (%s): using seeded synthetic images for the parity check", exc)
    return [_synthetic(patch_size, seed) for seed in (0, 1)], "seeded synthetic images"


def _as_bgr(photo: Any) -> np.ndarray:
    """A sample photo (array, decoded image or path) as a BGR uint8 array."""
    if isinstance(photo, np.ndarray):
        return photo
    bgr = getattr(photo, "bgr", None)
    if isinstance(bgr, np.ndarray):
        return bgr
    from sgjnd.runtime.decode import decode_image

    return decode_image(Path(photo)).bgr


def _synthetic(patch_size: int, seed: int) -> np.ndarray:
    """A deterministic photo-like BGR image: smooth colour fields, edges and fine texture."""
    import cv2

    rng = np.random.default_rng(seed)
    size = 2 * patch_size
    low = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
    image = np.asarray(cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC), dtype=np.float32)
    image[size // 3 :, : size // 2] *= np.float32(0.5)
    image += rng.normal(0, 12, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


# -- simplification --------------------------------------------------------------------------------------------


def find_simplifier() -> tuple[str, Simplifier] | None:
    """onnxslim or onnx-simplifier when installed (in that order), as ``(name and version, function)``."""
    try:
        import onnxslim

        version = importlib.metadata.version("onnxslim")
        return f"onnxslim {version}", lambda proto: onnxslim.slim(proto)
    except ImportError:
        pass
    try:
        onnxsim = importlib.import_module("onnxsim")

        def run(proto: onnx.ModelProto) -> onnx.ModelProto:
            simplified, ok = onnxsim.simplify(proto)
            if not ok:
                raise ExportError("onnx-simplifier could not validate its result")
            return simplified

        return f"onnxsim {importlib.metadata.version('onnxsim')}", run
    except ImportError:
        return None


def _try_simplify(
    graph: _Graph, feeds: Mapping[str, Mapping[str, np.ndarray]], tolerance: Mapping[str, Tolerance]
) -> tuple[bytes, str | None]:
    """The simplified graph's bytes if it verifiably computes the same outputs, else the original's."""
    import onnx

    found = find_simplifier()
    if found is None:
        log.debug("no ONNX simplifier installed (pip install onnxslim): graphs are kept as exported")
        return graph.data, None
    name, simplify = found
    try:
        simplified = simplify(onnx.load_from_string(graph.data))
        simplified = _finish(simplified, graph.spec, graph.model, graph.checkpoint_sha256)
        data = simplified.SerializeToString()
        original = _session(graph.data, graph.spec, "")
        candidate = _session(data, graph.spec, "")
        for check_feeds in feeds.values():
            want = dict(zip([o.name for o in original.get_outputs()], original.run(None, dict(check_feeds)),
                            strict=True))
            got = dict(zip([o.name for o in candidate.get_outputs()], candidate.run(None, dict(check_feeds)),
                           strict=True))
            bad = [c for c in compare_outputs(want, got, tolerance) if not c.passed]
            if bad:
                raise ExportError("; ".join(c.line() for c in bad))
    except Exception as exc:  # a simplifier may fail in any way; the unsimplified graph is always a valid result
        log.warning("%s changed the %s graph (%s): keeping the graph as exported", name, graph.name, exc)
        return graph.data, None
    log.info("%s simplified the %s graph: %d -> %d nodes", name, graph.name, len(graph.proto.graph.node),
             len(simplified.graph.node))
    return data, name


# -- writing ---------------------------------------------------------------------------------------------------


def _figures(c: OutputComparison) -> dict[str, float]:
    """Parity figures for the sidecar, at two significant digits so that reruns give identical bytes."""
    return {"max_abs": float(f"{c.max_abs:.2g}"), "max_rel": float(f"{c.max_rel:.2g}"),
            "cosine": round(c.cosine, 6)}


def _producer_versions(torch: Any, onnx: Any, onnxruntime: Any) -> dict[str, str]:
    return {
        "torch": str(torch.__version__),
        "onnx": str(onnx.__version__),
        "onnxruntime": str(onnxruntime.__version__),
        "sgjnd": sgjnd.__version__,
    }


def _write_all(out_dir: Path, graphs: Mapping[str, bytes], sidecars: Mapping[str, Sidecar]) -> dict[str, Path]:
    """Write every graph and sidecar to temporary files first, then rename them all into place."""
    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in graphs.items():
            path = artifact_path(out_dir, name)  # type: ignore[arg-type]
            for target, payload in ((path, data), (sidecar_path(path), sidecars[name].to_json().encode())):
                tmp = atomic_output(target)
                staged.append((tmp, target))
                with open(tmp, "wb") as fh:
                    fh.write(payload)
                    fh.flush()
                    os.fsync(fh.fileno())
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return {name: artifact_path(out_dir, name) for name in graphs}  # type: ignore[arg-type]


__all__ = ["DEFAULT_MAX_BATCH", "MIN_OPSET", "ExportReport", "find_simplifier", "onnx_from_checkpoint"]
