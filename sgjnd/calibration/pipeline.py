"""`sgjnd calibrate` as a library call: FP32 graphs of a model directory -> INT8 (QDQ) or FP16 graphs, with a report.

:func:`calibrate_model` reads the FP32 graphs and their sidecars, makes the calibration set with the runtime's own
preprocessing (:mod:`sgjnd.calibration.reader`), computes or reuses cached activation ranges
(:mod:`sgjnd.calibration.cache`), writes one QDQ graph pair per target flavour (:mod:`sgjnd.calibration.quantize`)
or an FP16 pair (:mod:`sgjnd.calibration.fp16`), each with a sidecar, and finally compares every new pair with FP32 on
held-out images (:mod:`sgjnd.calibration.report`). ``bf16`` writes no graph: it runs the FP32 graphs on OpenVINO at
bf16 inference precision and records the same report (``calibration.bf16.json``), the accuracy gate that lets
``--backend auto`` pick it.

All work happens in a temporary folder inside the model directory; graphs and sidecars are renamed into place only
when everything has been produced and checked, so a failure leaves the directory as it was.

The head of an INT8 pair is kept in FP32 by default (``head="fp32"``): it is two small MLPs (well under 1 % of the
encoder's work per patch pair), so quantising it saves nothing measurable, while its outputs feed the JND decision
directly (q crosses the 0.5 threshold there). Its sidecar says so (``details.kept_fp32``). ``head="int8"`` quantises
it too, calibrated on FP32 encoder features of (reference, distorted) pairs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

import sgjnd
from sgjnd.calibration.cache import CalibrationCache, cache_key, key_parts, tool_versions
from sgjnd.calibration.fp16 import Engine, fp16_from_onnx
from sgjnd.calibration.quantize import (
    FLAVOUR_PRECISION,
    Flavour,
    QuantizeConfig,
    calibrate_ranges,
    encoder_features,
    int8_from_onnx,
    integer_kernels,
    preprocess_for_quantization,
)
from sgjnd.calibration.reader import (
    CalibrationSet,
    EncoderDataReader,
    HeadDataReader,
    ReaderConfig,
    list_images,
    read_calibration_set,
    split_holdout,
)
from sgjnd.calibration.report import CalibrationReport, accuracy_report
from sgjnd.calibration.sensitivity import format_noise, noise_summary, tensor_noise
from sgjnd.errors import CalibrationError, UsageError
from sgjnd.fileio import check_output_file, sha256_bytes, sha256_file, write_atomic
from sgjnd.runtime.modeldir import artifact_name, artifact_path, require_model_dir
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
    model_dir = require_model_dir(Path(model_dir), rebuild_hint="sgjnd export CHECKPOINT -o DIR")
    sources = {g: _fp32_sidecar(model_dir, g) for g in _GRAPHS}
    spec = sources["encoder"].model
    if sources["head"].model != spec:
        raise CalibrationError(f"encoder and head in {model_dir} describe different models; export them again")
    if config.save_patches is not None:  # before any work: a refused output costs nothing and is left intact
        check_output_file(config.save_patches, what="calibration patch file (.npz)", ours=CalibrationSet.is_ours)
    calib_files, report_files, notes = _resolve_images(images, holdout, config)
    outcome = CalibrationOutcome(model_dir, config.precisions, [], None, [str(p) for p in report_files], notes=notes)

    work = Path(tempfile.mkdtemp(prefix=".calibrate-", dir=model_dir))
    try:
        if config.precision == "int8":
            if images is None:
                raise CalibrationError(
                    "INT8 calibration needs images: pass --images DIR (real photos like the ones the model will "
                    "see) or a .npz of patches saved with --save-patches"
                )
            source: Path | list[Path] = Path(images) if Path(images).suffix.lower() == ".npz" else calib_files
            data = read_calibration_set(source, spec, config.reader,
                                        root=Path(images) if Path(images).is_dir() else None,
                                        progress=config.progress)
            if config.save_patches is not None:
                data.save(config.save_patches)
            outcome.data = data.summary()
            staged = _int8(model_dir, work, sources, data, config, outcome)
        elif config.precision == "fp16":
            staged = _fp16(model_dir, work, sources, config)
        else:  # bf16 is an inference precision of the fp32 graphs: nothing to write, only the report below
            staged = []
        outcome.graphs = _commit(model_dir, staged)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if config.report and report_files:
        reports = accuracy_report(
            model_dir, list(config.precisions), report_files,
            max_patches=config.report_patches, strategy=config.report_search, threads=config.threads,
            backend="openvino" if config.precision == "bf16" else "onnxruntime",
        )
        for precision in config.precisions:
            report = reports[precision]
            facts = _report_facts(outcome, precision)
            if precision == "bf16":  # the report vouches for the fp32 graphs it ran
                facts["graph_sha256"] = {g: sidecar.artifact.sha256 for g, sidecar in sources.items()}
            report = dataclasses.replace(report, calibration=facts)
            outcome.report[precision] = report
            path = model_dir / f"calibration.{precision}.json"
            write_atomic(path, (json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n").encode())
            outcome.report_paths[precision] = path
    elif config.report:
        outcome.notes.append("no held-out images: the accuracy report was skipped (pass --holdout DIR)")
    outcome.seconds = time.perf_counter() - start
    return outcome


# -- inputs ------------------------------------------------------------------------------------------------------


def _fp32_sidecar(model_dir: Path, graph: GraphName) -> Sidecar:
    path = artifact_path(model_dir, graph)
    return read_sidecar(path, rebuild_hint=f"sgjnd export CHECKPOINT -o {model_dir}")


def _resolve_images(
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


@dataclass
class _Staged:
    """A graph written in the work folder, waiting to be renamed into the model directory."""

    precision: str
    graph: GraphName
    tmp: Path
    sidecar: Sidecar


def _int8(
    model_dir: Path, work: Path, sources: dict[GraphName, Sidecar], data: CalibrationSet, config: CalibrateConfig,
    outcome: CalibrationOutcome,
) -> list[_Staged]:
    spec = sources["encoder"].model
    cache = CalibrationCache.for_model_dir(model_dir)
    q = config.quantize
    versions = tool_versions()
    staged: list[_Staged] = []
    prepared = {g: work / f"{g}.prep.onnx" for g in _GRAPHS}
    prep_notes = {g: preprocess_for_quantization(artifact_path(model_dir, g), prepared[g]) for g in _GRAPHS}
    settings = {**q.range_settings(), "preprocess": prep_notes["encoder"][0], "reader": config.reader.to_dict()}

    # Encoder ranges, from the patches in small chunks.
    parts = key_parts(kind="encoder-ranges", graph_sha256=sources["encoder"].artifact.sha256, spec=spec,
                      data_sha256=data.sha256(), settings=settings, versions=versions)
    enc_ranges = _cached_ranges(cache, parts, config, outcome, lambda out: calibrate_ranges(
        prepared["encoder"],
        lambda: (EncoderDataReader(data, spec, batch_size=q.chunk, start=s, stop=s + q.chunk)
                 for s in range(0, len(data), q.chunk)),
        out, q, total=-(-len(data) // q.chunk), label="calibrating encoder", progress=config.progress,
    ), work / "encoder.ranges.json")

    head_ranges: Path | None = None
    if config.head == "int8":
        features = _cached_features(model_dir, cache, sources, spec, data, config, outcome, work, versions)
        pairs = int(data.distorted_index.size)
        head_parts = key_parts(kind="head-ranges", graph_sha256=sources["head"].artifact.sha256, spec=spec,
                               data_sha256=sha256_bytes(features.tobytes()), settings=settings, versions=versions)
        head_ranges = _cached_ranges(cache, head_parts, config, outcome, lambda out: calibrate_ranges(
            prepared["head"],
            lambda: (HeadDataReader(features, data, batch_size=64, start=s, stop=s + 64) for s in range(0, pairs, 64)),
            out, dataclasses.replace(q, exclude_nodes=()), total=-(-pairs // 64), label="calibrating head",
            progress=config.progress,
        ), work / "head.ranges.json")

    calibration = {
        "engine": f"onnxruntime.quantization {versions.get('onnxruntime')} quantize_static (QDQ)",
        "method": q.method,
        "range_settings": q.range_settings(),
        "data_sha256": data.sha256(),
        "data": {k: v for k, v in data.summary().items() if k not in ("skipped", "sha256")},
        "excluded_op_types": list(q.exclude_op_types),
        "cache_key_encoder": cache_key(parts),
    }
    for flavour in config.flavours:
        precision = FLAVOUR_PRECISION[flavour]
        enc_tmp = work / artifact_name("encoder", precision)
        result = int8_from_onnx(prepared["encoder"], enc_tmp, enc_ranges, flavour, q)
        details: dict[str, Any] = {
            "calibration": {**calibration, "flavour": flavour, "exclude_nodes": list(q.exclude_nodes),
                            "excluded_nodes": list(result.excluded_nodes),
                            "excluded_op_types": list(result.excluded_op_types),
                            "float_attention_matmuls": list(result.float_attention),
                            "reduce_range": result.reduce_range,
                            "notes": [*prep_notes["encoder"], *result.notes]},
            "qdq": result.summary.to_dict(),
        }
        if flavour == "ort-cpu":
            kernels = integer_kernels(enc_tmp, threads=config.threads)
            unfused = sum(kernels["float_compute_ops"].values()) - result.float_compute
            if unfused > 0:
                kernels["unfused_float_compute"] = unfused
                outcome.notes.append(
                    f"{unfused} compute node(s) of encoder.int8-ort.onnx that were quantised still run in float on "
                    "ONNX Runtime's CPU provider (its DequantizeLinear → op → QuantizeLinear fusion did not apply), "
                    "so INT8 will gain little or lose speed; export with onnxslim installed (pip install "
                    "'sgjnd[onnx]'): without it, a torch 2.11 export left 48 of ResNet-50's 57 convolutions unfused"
                )
            details["ort_cpu_kernels"] = kernels
        if config.sensitivity:
            patches = data.normalized(spec, 0, min(SENSITIVITY_PATCHES, len(data)))
            details["sensitivity"] = noise_summary(tensor_noise(prepared["encoder"], enc_tmp, [patches]))
        staged.append(_stage(precision, "encoder", enc_tmp, sources["encoder"], details))

        head_tmp = work / artifact_name("head", precision)
        if head_ranges is None:
            head_tmp.write_bytes(artifact_path(model_dir, "head").read_bytes())
            head_details: dict[str, Any] = {
                "kept_fp32": True,
                "calibration": {"flavour": flavour, "note": (
                    "head kept in FP32: its two MLPs are well under 1% of the encoder's work, and q decides the JND "
                    "directly; calibrate with head=int8 to quantise it"
                )},
            }
        else:
            head_cfg = dataclasses.replace(q, exclude_nodes=())
            head_result = int8_from_onnx(prepared["head"], head_tmp, head_ranges, flavour, head_cfg)
            head_details = {
                "kept_fp32": False,
                "calibration": {**calibration, "flavour": flavour, "cache_key_head": cache_key(head_parts),
                                "data": "FP32 encoder features of the (reference, distorted) calibration pairs"},
                "qdq": head_result.summary.to_dict(),
            }
        staged.append(_stage(precision, "head", head_tmp, sources["head"], head_details))
    return staged


def _cached_ranges(
    cache: CalibrationCache, parts: dict[str, Any], config: CalibrateConfig, outcome: CalibrationOutcome,
    compute: Any, out: Path,
) -> Path:
    """The ranges file for ``parts``: from the cache when it holds a valid entry, else computed and stored."""
    name = "ranges.json"
    if config.use_cache:
        hit = cache.get(parts, (name,))
        if hit is not None:
            outcome.cache_hits[str(parts["kind"])] = cache_key(parts)
            return hit[name]
    compute(out)
    if config.use_cache:
        return cache.put(parts, {name: out})[name]
    return out


def _cached_features(
    model_dir: Path, cache: CalibrationCache, sources: dict[GraphName, Sidecar], spec: ModelSpec, data: CalibrationSet,
    config: CalibrateConfig, outcome: CalibrationOutcome, work: Path, versions: dict[str, str],
) -> np.ndarray:
    """FP32 encoder features of every calibration patch (the head's calibration data), cached."""
    parts = key_parts(kind="features", graph_sha256=sources["encoder"].artifact.sha256, spec=spec,
                      data_sha256=data.sha256(), settings={"graph": "fp32 encoder"}, versions=versions)
    name = "features.npy"
    if config.use_cache:
        hit = cache.get(parts, (name,))
        if hit is not None:
            outcome.cache_hits["features"] = cache_key(parts)
            return np.load(hit[name], allow_pickle=False)
    features = encoder_features(artifact_path(model_dir, "encoder"), data.batches(spec, 16), threads=config.threads)
    out = work / name
    np.save(out, features)
    if config.use_cache:
        cache.put(parts, {name: out})
    return features


# -- FP16 --------------------------------------------------------------------------------------------------------


def _fp16(model_dir: Path, work: Path, sources: dict[GraphName, Sidecar], config: CalibrateConfig) -> list[_Staged]:
    staged = []
    for graph in _GRAPHS:
        prepared = work / f"{graph}.prep.onnx"
        notes = preprocess_for_quantization(artifact_path(model_dir, graph), prepared)
        tmp = work / artifact_name(graph, "fp16")
        result = fp16_from_onnx(prepared, tmp, engine=config.fp16_engine)
        details = {"fp16": {**result.to_dict(), "keep_io_types": True, "notes": notes}}
        staged.append(_stage("fp16", graph, tmp, sources[graph], details))
    return staged


# -- writing -----------------------------------------------------------------------------------------------------


def _stage(precision: str, graph: GraphName, tmp: Path, source: Sidecar, details: dict[str, Any]) -> _Staged:
    fp32 = source.artifact
    kept: dict[str, Any] = {k: fp32.details[k] for k in ("max_batch", "opset", "exporter") if k in fp32.details}
    info = ArtifactInfo(
        kind="onnx",
        file=artifact_name(graph, precision),
        sha256=sha256_file(tmp),
        graph=graph,
        precision=precision,
        checkpoint_sha256=fp32.checkpoint_sha256,
        weights=fp32.weights,
        producer={**fp32.producer, **{k: v for k, v in tool_versions().items() if v != "absent"},
                  "sgjnd": sgjnd.__version__},
        details={**kept, "source": {"file": fp32.file, "sha256": fp32.sha256}, **details},
    )
    return _Staged(precision, graph, tmp, Sidecar(model=source.model, artifact=info))


def _commit(model_dir: Path, staged: list[_Staged]) -> list[WrittenGraph]:
    """Rename every staged graph into place, then write its sidecar (each step atomic)."""
    written = []
    for item in staged:
        final = artifact_path(model_dir, item.graph, item.precision)
        os.replace(item.tmp, final)
        write_sidecar(final, item.sidecar)
        written.append(WrittenGraph(item.precision, item.graph, final, item.sidecar.artifact.sha256,
                                    item.sidecar.artifact.details))
        log.info("wrote %s and %s", final, sidecar_path(final).name)
    return written


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
