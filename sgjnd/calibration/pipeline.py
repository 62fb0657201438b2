"""`sgjnd calibrate` as a library call: FP32 graphs of a model directory -> INT8 (QDQ) or FP16 graphs, with a report.

:func:`calibrate_model` is a sequence of steps, each a function of explicit inputs:

1. collect the calibration patches with the runtime's own preprocessing (:mod:`sgjnd.calibration.reader`);
2. the encoder's activation ranges from them (:func:`sgjnd.calibration.quantize.calibrate_ranges`);
3. one QDQ encoder per target flavour (:mod:`sgjnd.calibration.quantize`);
4. the head's calibration data (FP32 encoder features of the (reference, distorted) pairs) and ranges;
5. one head per flavour: quantised, or kept in FP32 (the default, see below);
6. rename the graphs into place with their sidecars, then check every new pair against FP32 on held-out images
   (:mod:`sgjnd.calibration.report`) and write the report.

The expensive steps (ranges, features) are memoised whole by :func:`sgjnd.calibration.cache.cached_step`, keyed by
the content of their inputs and settings. FP16 replaces steps 1 to 5 by one conversion per graph
(:mod:`sgjnd.calibration.fp16`). ``bf16`` writes no graph: it runs the FP32 graphs on OpenVINO at bf16 inference
precision and records the same report (``calibration.bf16.json``), the accuracy gate that lets ``--backend auto``
pick it.

All work happens in a temporary folder inside the model directory; graphs and sidecars are renamed into place only
when everything has been produced and checked, so a failure leaves the directory as it was.

The head of an INT8 pair is kept in FP32 by default (``head="fp32"``): it is two small MLPs (well under 1 % of the
encoder's work per patch pair), so quantising it saves nothing measurable, while its outputs feed the JND decision
directly (q crosses the 0.5 threshold there). Its sidecar says so (``details.kept_fp32``). ``head="int8"`` quantises
it too, calibrated on FP32 encoder features of (reference, distorted) pairs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

import sgjnd
from sgjnd.calibration.cache import CalibrationCache, cache_key, cached_step, key_parts, tool_versions
from sgjnd.calibration.fp16 import Engine, fp16_from_onnx
from sgjnd.calibration.quantize import (
    FLAVOUR_PRECISION,
    Flavour,
    QuantizeConfig,
    calibrate_ranges,
    int8_from_onnx,
    integer_kernels,
    preprocess_for_quantization,
)
from sgjnd.calibration.reader import (
    CalibrationSet,
    ReaderConfig,
    encoder_chunks,
    head_chunks,
    head_features,
    list_images,
    read_calibration_set,
    split_holdout,
)
from sgjnd.calibration.report import CalibrationReport, accuracy_report
from sgjnd.calibration.sensitivity import format_noise, noise_summary, tensor_noise
from sgjnd.errors import CalibrationError, UsageError
from sgjnd.fileio import check_output_file, sha256_bytes, sha256_file, write_atomic
from sgjnd.runtime.modeldir import artifact_name, artifact_path, check_artifacts_ours, require_model_dir
from sgjnd.spec import ArtifactInfo, GraphName, ModelSpec, Sidecar, read_sidecar, sidecar_path, write_sidecar

log = logging.getLogger(__name__)

Precision = Literal["int8", "fp16", "bf16"]
Target = Literal["tensorrt", "ort-cpu", "all"]
HeadPolicy = Literal["fp32", "int8"]

TARGETS: tuple[Target, ...] = ("tensorrt", "ort-cpu", "all")
"""Targets of ``sgjnd calibrate``; ``all`` writes both INT8 flavours from one calibration."""

AUTO_HOLDOUT_MIN_IMAGES = 5
"""With at least this many calibration images and no ``holdout`` given, a fifth of them is held out."""

SENSITIVITY_PATCHES = 4
"""Calibration patches of the sensitivity measurement (every intermediate tensor of two graphs is held for them)."""

_GRAPHS: tuple[GraphName, GraphName] = ("encoder", "head")


@dataclass(frozen=True)
class CalibrateConfig:
    """Everything ``sgjnd calibrate`` does besides choosing the model directory and the images.

    Attributes:
        precision: int8 (QDQ) or fp16 (mixed precision).
        target: the INT8 flavour(s) to write: tensorrt (``*.int8.onnx``), ort-cpu (``*.int8-ort.onnx``) or all.
            FP16 graphs are the same for every target.
        reader: how calibration patches are chosen.
        quantize: calibration method, op types and exclusions.
        head: ``fp32`` keeps the head of an INT8 pair in FP32 (see the module docstring), ``int8`` quantises it.
        fp16_engine: which FP16 converter to use.
        report: compare the new graphs with FP32 on held-out images.
        report_patches: patches per image in the report (tensor level and JND prediction).
        report_search: the QF search strategy of the report's JND predictions.
        sensitivity: also measure the quantisation noise of every quantised encoder tensor (ONNX Runtime's QDQ
            debugging, on ``SENSITIVITY_PATCHES`` calibration patches) and report the noisiest.
        save_patches: also write the calibration set to this ``.npz`` file.
        use_cache: reuse cached calibration results whose key matches.
        threads: ONNX Runtime intra-op threads; None leaves the choice to ONNX Runtime.
        progress: progress lines on stderr.
    """

    precision: Precision = "int8"
    target: Target = "tensorrt"
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    head: HeadPolicy = "fp32"
    fp16_engine: Engine = "auto"
    report: bool = True
    report_patches: int = 4
    report_search: str = "coarse-to-fine"
    sensitivity: bool = False
    save_patches: Path | None = None
    use_cache: bool = True
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.precision not in ("int8", "fp16", "bf16"):
            raise UsageError(f"precision must be int8, fp16 or bf16, got {self.precision!r}")
        if self.precision == "bf16" and not self.report:
            raise UsageError("precision bf16 writes no graph, only the accuracy report: it cannot run without one "
                             "(drop --no-report)")
        if self.target not in TARGETS:
            raise UsageError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.head not in ("fp32", "int8"):
            raise UsageError(f"head must be fp32 or int8, got {self.head!r}")
        if self.report_patches < 1:
            raise UsageError(f"report_patches must be at least 1, got {self.report_patches}")

    @property
    def flavours(self) -> tuple[Flavour, ...]:
        """The INT8 flavours this configuration writes."""
        if self.target == "all":
            return ("tensorrt", "ort-cpu")
        return (self.target,)

    @property
    def precisions(self) -> tuple[str, ...]:
        """The model-directory precisions this configuration writes."""
        if self.precision in ("fp16", "bf16"):
            return (self.precision,)
        return tuple(FLAVOUR_PRECISION[f] for f in self.flavours)


@dataclass(frozen=True)
class WrittenGraph:
    """One graph written to the model directory."""

    precision: str
    graph: GraphName
    path: Path
    sha256: str
    details: dict[str, Any]


@dataclass
class CalibrationOutcome:
    """What :func:`calibrate_model` did.

    Attributes:
        model_dir: the model directory.
        precisions: precisions written.
        graphs: the graphs written, with their sidecar details.
        data: summary of the calibration set (None for FP16, which needs none).
        holdout: the held-out images of the report.
        report: the accuracy report per precision (empty when skipped).
        report_paths: where each report's JSON was written.
        cache_hits: cache entries reused (kind -> key prefix).
        notes: what else happened, in words.
        seconds: wall time.
    """

    model_dir: Path
    precisions: tuple[str, ...]
    graphs: list[WrittenGraph]
    data: dict[str, Any] | None
    holdout: list[str]
    report: dict[str, CalibrationReport] = field(default_factory=dict)
    report_paths: dict[str, Path] = field(default_factory=dict)
    cache_hits: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def format(self) -> str:
        """A readable summary: files written, calibration data, then each precision's report."""
        lines = [f"model directory: {self.model_dir}"]
        for g in self.graphs:
            lines.append(f"  wrote {g.path.name} (+ .json)")
        if self.data:
            d = self.data
            lines.append(
                f"calibration data: {d['patches']} patches ({d['reference']} reference, {d['distorted']} distorted "
                f"at QF {d['qf_min']}..{d['qf_max']}) from {d['images']} image(s), sha256 {d['sha256'][:12]}…"
            )
            for s in d.get("skipped", []):
                lines.append(f"  skipped {s['path']}: {s['reason']}")
        if self.cache_hits:
            lines.append("cache reused: " + ", ".join(f"{k} {v[:12]}…" for k, v in self.cache_hits.items()))
        lines += [f"note: {n}" for n in self.notes]
        if not self.report:  # with a report, each precision's block shows its graphs' noise
            for g in self.graphs:
                if g.details.get("sensitivity"):
                    lines.append(f"{g.path.name}:")
                    lines += [f"  {line}" for line in format_noise(g.details["sensitivity"])]
        for precision, report in self.report.items():
            lines.append("")
            lines.append(report.format())
            if precision in self.report_paths:
                lines.append(f"report written to {self.report_paths[precision]}")
        lines.append(f"done in {self.seconds:.1f} s")
        return "\n".join(lines)


def calibrate_model(
    model_dir: Path,
    *,
    images: Path | None = None,
    holdout: Path | int | Sequence[Path] | None = None,
    config: CalibrateConfig | None = None,
) -> CalibrationOutcome:
    """Write INT8 or FP16 graphs for the FP32 graphs in ``model_dir`` and compare them with FP32.

    Args:
        model_dir: a directory written by ``sgjnd export`` (``encoder.onnx``, ``head.onnx`` with sidecars).
        images: a folder of calibration photos, or a ``.npz`` of patches saved earlier; needed for INT8. For FP16
            (no calibration) a folder given here is used for the report.
        holdout: the report's images: a folder (or list of files) of other photos, or a number N of images to
            withhold from ``images``. None chooses: a fifth of ``images`` when it has at least
            :data:`AUTO_HOLDOUT_MIN_IMAGES` images, else the bundled sample photos not among them.
        config: precision, target and settings; None uses the defaults of :class:`CalibrateConfig`.

    Returns:
        What was written and the report.

    Raises:
        SpecError: the model directory or an FP32 graph or sidecar is missing or does not match.
        CalibrationError: the images cannot be used, or calibration, quantisation or conversion fails.
        UsageError: an argument is out of range.
    """
    start = time.perf_counter()
    config = config or CalibrateConfig()
    fp32 = Fp32Graphs.read(model_dir)
    if config.precision != "bf16":  # bf16 writes no graph (it is a way of running the fp32 ones)
        check_artifacts_ours([artifact_path(fp32.model_dir, g, p) for p in config.precisions for g in _GRAPHS])
    if config.save_patches is not None:  # before any work: a refused output costs nothing and is left intact
        check_output_file(config.save_patches, what="calibration patch file (.npz)", ours=CalibrationSet.is_ours)
    chosen = _resolve_images(images, holdout, config)
    outcome = CalibrationOutcome(fp32.model_dir, config.precisions, [], None, [str(p) for p in chosen.report],
                                 notes=chosen.notes)
    cache = CalibrationCache.for_model_dir(fp32.model_dir) if config.use_cache else None

    # Everything is made in a folder inside the model directory and renamed into place once all of it is made.
    with tempfile.TemporaryDirectory(prefix=".calibrate-", dir=fp32.model_dir, ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        if config.precision == "int8":
            data = read_calibration_set(chosen.calibration, fp32.spec, config.reader, root=chosen.root,
                                        progress=config.progress)
            if config.save_patches is not None:
                data.save(config.save_patches)
            outcome.data = data.summary()
            staged = _int8(fp32, data, config, cache, work, outcome.notes)
        elif config.precision == "fp16":
            staged = _fp16(fp32, config, work)
        else:  # bf16 is an inference precision of the fp32 graphs: nothing to write, only the report below
            staged = []
        outcome.graphs = _commit(fp32, staged)
    outcome.cache_hits = dict(cache.hits) if cache is not None else {}

    if config.report and chosen.report:
        reports = accuracy_report(
            fp32.model_dir, list(config.precisions), chosen.report,
            max_patches=config.report_patches, strategy=config.report_search, threads=config.threads,
            backend="openvino" if config.precision == "bf16" else "onnxruntime",
        )
        _write_reports(outcome, reports, fp32)
    elif config.report:
        outcome.notes.append("no held-out images: the accuracy report was skipped (pass --holdout DIR)")
    outcome.seconds = time.perf_counter() - start
    return outcome


# -- inputs ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fp32Graphs:
    """The FP32 graphs a calibration starts from: the model directory and the graphs' sidecars."""

    model_dir: Path
    sidecars: dict[GraphName, Sidecar]

    @classmethod
    def read(cls, model_dir: Path) -> Fp32Graphs:
        """The FP32 graphs of ``model_dir``, checked to describe one model.

        Raises:
            SpecError: the directory, a graph or a sidecar is missing or does not match.
            CalibrationError: the encoder and the head describe different models.
        """
        model_dir = require_model_dir(Path(model_dir), rebuild_hint="sgjnd export CHECKPOINT -o DIR")
        paths = {g: artifact_path(model_dir, g) for g in _GRAPHS}
        hint = f"sgjnd export CHECKPOINT -o {model_dir}"
        sidecars = {g: read_sidecar(path, rebuild_hint=hint) for g, path in paths.items()}
        if sidecars["head"].model != sidecars["encoder"].model:
            raise CalibrationError(f"encoder and head in {model_dir} describe different models; export them again")
        return cls(model_dir, sidecars)

    @property
    def spec(self) -> ModelSpec:
        """The model (preprocessing, graphs) both graphs implement."""
        return self.sidecars["encoder"].model

    def path(self, graph: GraphName) -> Path:
        """The FP32 graph file."""
        return artifact_path(self.model_dir, graph)

    def sha256(self, graph: GraphName) -> str:
        """The graph's hash, as its sidecar records it (the cache keys' ``graph_sha256``)."""
        return self.sidecars[graph].artifact.sha256


class _Images(NamedTuple):
    """The images of one calibration.

    Attributes:
        calibration: the photos to calibrate on, or the ``.npz`` of patches saved earlier.
        root: the folder the calibration photos are reported relative to (None: a list of files or an ``.npz``).
        report: the held-out photos of the accuracy report.
        notes: how they were chosen, in words.
    """

    calibration: Path | list[Path]
    root: Path | None
    report: list[Path]
    notes: list[str]


def _resolve_images(
    images: Path | None, holdout: Path | int | Sequence[Path] | None, config: CalibrateConfig
) -> _Images:
    """The calibration and report images, from the ``images`` and ``holdout`` arguments.

    Raises:
        CalibrationError: INT8 without images, or images that cannot be used.
        UsageError: a ``holdout`` that does not fit ``images``.
    """
    if config.precision == "int8" and images is None:
        raise CalibrationError(
            "INT8 calibration needs images: pass --images DIR (real photos like the ones the model will "
            "see) or a .npz of patches saved with --save-patches"
        )
    calib, report, notes = _split_images(images, holdout, config)
    if images is not None and Path(images).suffix.lower() == ".npz":
        return _Images(Path(images), None, report, notes)
    return _Images(calib, Path(images) if images is not None and Path(images).is_dir() else None, report, notes)


def _split_images(
    images: Path | None, holdout: Path | int | Sequence[Path] | None, config: CalibrateConfig
) -> tuple[list[Path], list[Path], list[str]]:
    """(calibration files, report files, notes) from the ``images`` and ``holdout`` arguments."""
    notes: list[str] = []
    folder = Path(images) if images is not None and Path(images).is_dir() else None
    if images is not None and folder is None and Path(images).suffix.lower() != ".npz":
        raise CalibrationError(
            f"--images must be a folder of photos or a .npz of patches saved with --save-patches, got {images}"
        )
    files = list_images(folder) if folder is not None else []
    if isinstance(holdout, bool):
        raise UsageError(f"holdout must be a folder, a list of files or a number of images, got {holdout!r}")
    if isinstance(holdout, int):
        if folder is None:
            raise UsageError("--holdout N withholds N images of --images DIR, so --images must be a folder")
        if config.precision in ("fp16", "bf16"):
            return [], files[:holdout] if holdout else files, notes
        calib, held = split_holdout(files, holdout, seed=config.reader.seed)
        return calib, held, notes
    if holdout is not None:
        held = list_images(Path(holdout)) if isinstance(holdout, str | Path) else [Path(p) for p in holdout]
        calib = _without(files, held, notes)
        if files and not calib and config.precision == "int8":
            raise CalibrationError(
                f"all {len(files)} images of {folder} are also held-out images, and a held-out image is never "
                "calibrated on: pass other photos to --images, or another --holdout"
            )
        return calib, held, notes
    if config.precision in ("fp16", "bf16") and files:
        return [], files, notes  # nothing is calibrated, so every image is held out
    if not config.report:
        return files, [], notes  # no report: every image calibrates
    if len(files) >= AUTO_HOLDOUT_MIN_IMAGES:
        n = max(1, len(files) // 5)
        calib, held = split_holdout(files, n, seed=config.reader.seed)
        notes.append(f"held out {n} of the {len(files)} images for the report (pass --holdout to choose)")
        return calib, held, notes
    bundled = _bundled_photos()
    held = _without(bundled, files, []) if bundled else []
    if held:
        notes.append("report on the bundled sample photos (pass --holdout DIR to choose other images)")
    return files, held, notes


def _without(files: Sequence[Path], others: Sequence[Path], notes: list[str]) -> list[Path]:
    """``files`` less any whose content equals one of ``others`` (a held-out image must not be calibrated on)."""
    taken = {sha256_file(p) for p in others}
    kept = [f for f in files if sha256_file(f) not in taken]
    if len(kept) < len(files):
        notes.append(f"{len(files) - len(kept)} calibration image(s) are also held-out images: not calibrated on")
    return kept


def _bundled_photos() -> list[Path]:
    try:
        from sgjnd.samples import sample_photos

        return sample_photos()
    except Exception:  # scikit-image missing or incomplete: no default report images
        return []


# -- INT8 --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Staged:
    """A graph written in the work folder, waiting to be renamed into the model directory with its sidecar."""

    precision: str
    graph: GraphName
    tmp: Path
    details: dict[str, Any]


def _int8(
    fp32: Fp32Graphs, data: CalibrationSet, config: CalibrateConfig, cache: CalibrationCache | None, work: Path,
    notes: list[str],
) -> list[_Staged]:
    """The INT8 pairs, staged in ``work``: encoder ranges -> encoders -> head calibration data and ranges -> heads.

    The ranges and the features are whole steps memoised by content (:func:`cached_step`); ``notes`` gets what the
    report should say.
    """
    spec, q, data_sha256 = fp32.spec, config.quantize, data.sha256()
    key = functools.partial(key_parts, spec=spec, versions=tool_versions())
    prepared = {g: work / f"{g}.prep.onnx" for g in _GRAPHS}
    prep_notes = {g: preprocess_for_quantization(fp32.path(g), prepared[g]) for g in _GRAPHS}
    settings = {**q.range_settings(), "preprocess": prep_notes["encoder"][0], "reader": config.reader.to_dict()}

    # The encoder: ranges from the calibration patches, then one QDQ graph per flavour.
    enc_key = key(kind="encoder-ranges", graph_sha256=fp32.sha256("encoder"), data_sha256=data_sha256,
                  settings=settings)
    enc_ranges = cached_step(cache, "ranges.json", enc_key, lambda out: calibrate_ranges(
        prepared["encoder"], encoder_chunks(data, spec, q.chunk), out, q, label="calibrating encoder",
        progress=config.progress), work=work)
    facts = {
        "engine": f"onnxruntime.quantization {enc_key['versions'].get('onnxruntime')} quantize_static (QDQ)",
        "method": q.method,
        "range_settings": q.range_settings(),
        "data_sha256": data_sha256,
        "data": {k: v for k, v in data.summary().items() if k not in ("skipped", "sha256")},
        "excluded_op_types": list(q.exclude_op_types),
        "cache_key_encoder": cache_key(enc_key),
    }
    probe = data.encoder_inputs(spec, 0, min(SENSITIVITY_PATCHES, len(data))) if config.sensitivity else None
    encoders = [_quantize_encoder(prepared["encoder"], enc_ranges, flavour, q, facts, prep_notes["encoder"], work,
                                  threads=config.threads, notes=notes, sensitivity=probe)
                for flavour in config.flavours]

    # The head: kept in FP32 (the default), or ranges from the FP32 encoder's features of the (reference, distorted)
    # pairs, then one QDQ graph per flavour.
    if config.head == "fp32":
        heads = [_head_kept_fp32(fp32.path("head"), flavour, work) for flavour in config.flavours]
    else:
        features_key = key(kind="features", graph_sha256=fp32.sha256("encoder"), data_sha256=data_sha256,
                           settings={"graph": "fp32 encoder"})
        features = np.load(cached_step(cache, "features.npy", features_key, lambda out: np.save(
            out, _fp32_features(fp32, data, config.threads)), work=work), allow_pickle=False)
        head_q = dataclasses.replace(q, exclude_nodes=())
        head_key = key(kind="head-ranges", graph_sha256=fp32.sha256("head"),
                       data_sha256=sha256_bytes(features.tobytes()), settings=settings)
        head_ranges = cached_step(cache, "ranges.json", head_key, lambda out: calibrate_ranges(
            prepared["head"], head_chunks(features, data), out, head_q, label="calibrating head",
            progress=config.progress), work=work)
        head_facts = {**facts, "cache_key_head": cache_key(head_key),
                      "data": "FP32 encoder features of the (reference, distorted) calibration pairs"}
        heads = [_quantize_head(prepared["head"], head_ranges, flavour, head_q, head_facts, work)
                 for flavour in config.flavours]
    return [graph for pair in zip(encoders, heads, strict=True) for graph in pair]


def _quantize_encoder(
    prepared: Path, ranges: Path, flavour: Flavour, q: QuantizeConfig, facts: dict[str, Any],
    prep_notes: Sequence[str], work: Path, *, threads: int | None, notes: list[str], sensitivity: np.ndarray | None,
) -> _Staged:
    """The QDQ encoder of ``flavour`` in ``work``, with its sidecar details: for ``ort-cpu`` the CPU kernels ONNX
    Runtime runs it with, and with ``sensitivity`` patches the quantisation noise of its tensors on them."""
    precision = FLAVOUR_PRECISION[flavour]
    tmp = work / artifact_name("encoder", precision)
    result = int8_from_onnx(prepared, tmp, ranges, flavour, q)
    details: dict[str, Any] = {
        "calibration": {**facts, "flavour": flavour, "exclude_nodes": list(q.exclude_nodes),
                        "excluded_nodes": list(result.excluded_nodes),
                        "excluded_op_types": list(result.excluded_op_types),
                        "float_attention_matmuls": list(result.float_attention),
                        "reduce_range": result.reduce_range,
                        "notes": [*prep_notes, *result.notes]},
        "qdq": result.summary.to_dict(),
    }
    if flavour == "ort-cpu":
        details["ort_cpu_kernels"] = _cpu_kernels(tmp, result.float_compute, threads, notes)
    if sensitivity is not None:
        details["sensitivity"] = noise_summary(tensor_noise(prepared, tmp, [sensitivity]))
    return _Staged(precision, "encoder", tmp, details)


def _quantize_head(
    prepared: Path, ranges: Path, flavour: Flavour, q: QuantizeConfig, facts: dict[str, Any], work: Path
) -> _Staged:
    """The QDQ head of ``flavour`` in ``work``, with its sidecar details."""
    precision = FLAVOUR_PRECISION[flavour]
    tmp = work / artifact_name("head", precision)
    result = int8_from_onnx(prepared, tmp, ranges, flavour, q)
    details = {"kept_fp32": False, "calibration": {**facts, "flavour": flavour}, "qdq": result.summary.to_dict()}
    return _Staged(precision, "head", tmp, details)


def _head_kept_fp32(head: Path, flavour: Flavour, work: Path) -> _Staged:
    """The FP32 ``head`` copied into ``work`` as the head of ``flavour``'s pair."""
    precision = FLAVOUR_PRECISION[flavour]
    tmp = work / artifact_name("head", precision)
    tmp.write_bytes(head.read_bytes())
    return _Staged(precision, "head", tmp, {"kept_fp32": True, "calibration": {"flavour": flavour, "note": (
        "head kept in FP32: its two MLPs are well under 1% of the encoder's work, and q decides the JND directly; "
        "calibrate with head=int8 to quantise it"
    )}})


def _cpu_kernels(graph: Path, float_compute: int, threads: int | None, notes: list[str]) -> dict[str, Any]:
    """The kernels ONNX Runtime's CPU provider runs an ``ort-cpu`` encoder with; a note when compute nodes that were
    quantised (all but ``float_compute``) still run in float."""
    kernels = integer_kernels(graph, threads=threads)
    unfused = sum(kernels["float_compute_ops"].values()) - float_compute
    if unfused > 0:
        kernels["unfused_float_compute"] = unfused
        notes.append(
            f"{unfused} compute node(s) of encoder.int8-ort.onnx that were quantised still run in float on "
            "ONNX Runtime's CPU provider (its DequantizeLinear → op → QuantizeLinear fusion did not apply), "
            "so INT8 will gain little or lose speed; export with onnxslim installed (pip install "
            "'sgjnd[onnx]'): without it, a torch 2.11 export left 48 of ResNet-50's 57 convolutions unfused"
        )
    return kernels


def _fp32_features(fp32: Fp32Graphs, data: CalibrationSet, threads: int | None) -> np.ndarray:
    """The head's calibration data: the FP32 encoder's features of every calibration patch, on ONNX Runtime's CPU
    provider (the reference every report compares against)."""
    from sgjnd.runtime.backends.registry import open_model

    with open_model("onnxruntime", fp32.model_dir, providers=("cpu",), threads=threads) as models:
        return head_features(models, data)


# -- FP16 --------------------------------------------------------------------------------------------------------


def _fp16(fp32: Fp32Graphs, config: CalibrateConfig, work: Path) -> list[_Staged]:
    staged = []
    for graph in _GRAPHS:
        prepared = work / f"{graph}.prep.onnx"
        notes = preprocess_for_quantization(fp32.path(graph), prepared)
        tmp = work / artifact_name(graph, "fp16")
        result = fp16_from_onnx(prepared, tmp, engine=config.fp16_engine)
        staged.append(_Staged("fp16", graph, tmp, {"fp16": {**result.to_dict(), "keep_io_types": True,
                                                             "notes": notes}}))
    return staged


# -- writing -----------------------------------------------------------------------------------------------------


def _commit(fp32: Fp32Graphs, staged: list[_Staged]) -> list[WrittenGraph]:
    """The sidecars of every staged graph, then each graph renamed into place and its sidecar written (each step
    atomic)."""
    sidecars = [_sidecar(item, fp32.sidecars[item.graph]) for item in staged]
    written = []
    for item, sidecar in zip(staged, sidecars, strict=True):
        final = artifact_path(fp32.model_dir, item.graph, item.precision)
        os.replace(item.tmp, final)
        write_sidecar(final, sidecar)
        written.append(WrittenGraph(item.precision, item.graph, final, sidecar.artifact.sha256,
                                    sidecar.artifact.details))
        log.info("wrote %s and %s", final, sidecar_path(final).name)
    return written


def _sidecar(item: _Staged, source: Sidecar) -> Sidecar:
    """The sidecar of a staged graph: its own file, precision and details, the rest from its FP32 ``source``."""
    fp32 = source.artifact
    kept: dict[str, Any] = {k: fp32.details[k] for k in ("max_batch", "opset", "exporter") if k in fp32.details}
    info = ArtifactInfo(
        kind="onnx",
        file=artifact_name(item.graph, item.precision),
        sha256=sha256_file(item.tmp),
        graph=item.graph,
        precision=item.precision,
        checkpoint_sha256=fp32.checkpoint_sha256,
        weights=fp32.weights,
        producer={**fp32.producer, **{k: v for k, v in tool_versions().items() if v != "absent"},
                  "sgjnd": sgjnd.__version__},
        details={**kept, "source": {"file": fp32.file, "sha256": fp32.sha256}, **item.details},
    )
    return Sidecar(model=source.model, artifact=info)


def _report_facts(outcome: CalibrationOutcome, precision: str) -> dict[str, Any]:
    """The calibration facts a report repeats: data, exclusions, kernels, cache use."""
    graphs = {g.graph: g.details for g in outcome.graphs if g.precision == precision}
    return {
        "data": outcome.data,
        "graphs": graphs,
        # Which graphs this report vouches for (`--backend auto` trusts a report only for these bytes).
        "graph_sha256": {g.graph: g.sha256 for g in outcome.graphs if g.precision == precision},
        "holdout": outcome.holdout,
        "cache_hits": outcome.cache_hits,
        "notes": outcome.notes,
    }


def _write_reports(outcome: CalibrationOutcome, reports: dict[str, CalibrationReport], fp32: Fp32Graphs) -> None:
    """Add the calibration facts to each precision's report and write it beside the graphs."""
    for precision in outcome.precisions:
        facts = _report_facts(outcome, precision)
        if precision == "bf16":  # the report vouches for the fp32 graphs it ran
            facts["graph_sha256"] = {g: fp32.sha256(g) for g in _GRAPHS}
        report = dataclasses.replace(reports[precision], calibration=facts)
        path = outcome.model_dir / f"calibration.{precision}.json"
        write_atomic(path, (json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n").encode())
        outcome.report[precision] = report
        outcome.report_paths[precision] = path
