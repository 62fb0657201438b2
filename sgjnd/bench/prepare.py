"""Everything a benchmark run needs before it measures: checkpoint, ONNX graphs, reduced-precision graphs, engines.

Given nothing, the suite makes all of it in ``<out>/model``: an UNTRAINED checkpoint of the config's model from its
seed, the ONNX export, the precision-prepared graphs (through :mod:`sgjnd.calibration`) and, where TensorRT and a
GPU exist, the engines. Given a checkpoint (``--model CKPT``) it exports it; given ``--model DIR`` it uses the directory
as it is and never writes into it. A step that cannot be done is recorded with its reason, so the targets that need
it become SKIPPED rows that say why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sgjnd.bench.config import BenchConfig
from sgjnd.errors import SgjndError, UsageError
from sgjnd.runtime.modeldir import artifact_path, available_precisions
from sgjnd.spec import ModelSpec, read_sidecar

if TYPE_CHECKING:
    from sgjnd.calibration.pipeline import Precision as CalibrationPrecision
    from sgjnd.calibration.pipeline import Target as CalibrationTarget

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class Prepared:
    """What the suite has to measure with.

    Attributes:
        spec: the model spec.
        weights: the statement of what the weights are (from the sidecar).
        checkpoint: the checkpoint for the PyTorch reference, or None (``checkpoint_reason`` says why).
        model_dir: the directory of ONNX graphs and engines, or None (``model_dir_reason`` says why).
        missing: ``onnx:<precision>`` / ``engine:<precision>`` -> why those graphs are absent.
        images: the photos of the end-to-end and drift suites.
        images_reason: why there are no images, if so.
        notes: remarks for the report.
    """

    spec: ModelSpec
    weights: str
    checkpoint: Path | None = None
    checkpoint_reason: str = ""
    model_dir: Path | None = None
    model_dir_reason: str = ""
    missing: dict[str, str] = field(default_factory=dict)
    images: list[Path] = field(default_factory=list)
    images_reason: str = ""
    notes: list[str] = field(default_factory=list)

    def checkpoint_sha256(self) -> str | None:
        """The checkpoint's sha256 from its sidecar (or the ONNX graphs' record of it)."""
        for path in (self.checkpoint, self.model_dir and artifact_path(self.model_dir, "encoder")):
            if path and Path(path).is_file():
                info = read_sidecar(Path(path), verify_hash=False).artifact
                return info.sha256 if info.kind == "checkpoint" else info.checkpoint_sha256
        return None


def prepare(
    config: BenchConfig,
    out_dir: Path,
    *,
    weights: Path | None = None,
    model_dir: Path | None = None,
    need_engines: bool = False,
    say: Say = log.info,
) -> Prepared:
    """Make or find the checkpoint, graphs and photos of a run.

    Args:
        config: the run's config (model name, seed, batch sizes, precisions to prepare).
        out_dir: the run's output directory; ``<out_dir>/model`` receives what the suite makes.
        weights: an existing checkpoint to benchmark instead of a seeded one.
        model_dir: an existing model directory to benchmark as it is (read only).
        need_engines: build TensorRT engines (only when a TensorRT target is configured).
        say: where progress messages go.

    Raises:
        UsageError: ``weights`` or ``model_dir`` does not exist.
        SgjndError: the checkpoint cannot be created or read (nothing can be measured without a model).
    """
    own_dir = Path(out_dir) / "model"
    checkpoint, checkpoint_reason = _checkpoint(config, own_dir, weights, model_dir, say)
    notes: list[str] = []
    if model_dir is not None:
        if not Path(model_dir).is_dir():
            raise UsageError(f"--model {model_dir} is not a directory: give a directory written by `sgjnd export`")
        directory: Path | None = Path(model_dir)
        directory_reason = ""
        notes.append(f"graphs read from {model_dir} as they are (the suite does not write into a given directory)")
    else:
        directory, directory_reason = _export(checkpoint, own_dir, config, say)
    spec, statement = _spec(checkpoint, directory)
    prepared = Prepared(spec, statement, checkpoint, checkpoint_reason, directory, directory_reason, notes=notes)
    if directory is not None and model_dir is None:
        _calibrate(prepared, directory, config, Path(out_dir), say)
    note = calibration_note(directory) if directory is not None else ""
    if note:
        prepared.notes.append(note)
    if need_engines and directory is not None:
        _engines(prepared, directory, config, own_dir, writable=model_dir is None, say=say)
    prepared.images, prepared.images_reason = _images(config)
    return prepared


def _checkpoint(
    config: BenchConfig, own_dir: Path, weights: Path | None, model_dir: Path | None, say: Say
) -> tuple[Path | None, str]:
    if weights is not None:
        if not Path(weights).is_file():
            raise UsageError(f"--model {weights} does not exist: give a checkpoint written by `sgjnd init` or "
                             "sgjnd.model.save_checkpoint")
        return Path(weights), ""
    if model_dir is not None:
        found = _checkpoint_beside(Path(model_dir))
        if found is None:
            return None, (f"no checkpoint for the PyTorch reference: {model_dir} holds none whose sha256 matches its "
                          "graphs; pass --model CKPT")
        return found, ""
    path = own_dir / f"{config.model}_seed{config.seed}.pt"
    if path.is_file():
        say(f"checkpoint: reusing {path}")
        return path, ""
    from sgjnd.model import create_model, save_checkpoint

    say(f"checkpoint: creating {config.model} with UNTRAINED weights from seed {config.seed}")
    model = create_model(config.model, seed=config.seed)
    statement = f"UNTRAINED: deterministic random initialisation of {config.model} from seed {config.seed}"
    save_checkpoint(model, path, weights=statement)
    return path, ""


def _checkpoint_beside(model_dir: Path) -> Path | None:
    """A checkpoint in ``model_dir`` or its parent whose sha256 is the one the graphs were exported from."""
    encoder = artifact_path(model_dir, "encoder")
    if not encoder.is_file():
        return None
    try:
        wanted = read_sidecar(encoder, verify_hash=False).artifact.checkpoint_sha256
    except SgjndError:
        return None
    for candidate in sorted([*model_dir.glob("*.pt"), *model_dir.parent.glob("*.pt")]):
        try:
            if read_sidecar(candidate, verify_hash=False).artifact.sha256 == wanted:
                return candidate
        except SgjndError:
            continue
    return None


def _export(checkpoint: Path | None, own_dir: Path, config: BenchConfig, say: Say) -> tuple[Path | None, str]:
    if checkpoint is None:
        return None, "no checkpoint to export"
    encoder = artifact_path(own_dir, "encoder")
    want = read_sidecar(checkpoint, verify_hash=False).artifact.sha256
    if encoder.is_file() and artifact_path(own_dir, "head").is_file():
        try:
            if read_sidecar(encoder, verify_hash=False).artifact.checkpoint_sha256 == want:
                say(f"ONNX graphs: reusing {own_dir}")
                return own_dir, ""
        except SgjndError:
            pass
    try:
        from sgjnd.export.onnx import onnx_from_checkpoint
    except ImportError as exc:
        return None, f"ONNX export is not available ({exc}); install it with: pip install 'sgjnd[onnx]'"
    say(f"ONNX graphs: exporting {checkpoint.name} to {own_dir}")
    try:
        onnx_from_checkpoint(checkpoint, own_dir, max_batch=max(config.batch_sizes))
    except SgjndError as exc:
        return None, f"ONNX export failed: {exc}"
    return own_dir, ""


def _spec(checkpoint: Path | None, directory: Path | None) -> tuple[ModelSpec, str]:
    for path in (checkpoint, directory and artifact_path(directory, "encoder")):
        if path and Path(path).is_file():
            sidecar = read_sidecar(Path(path), verify_hash=False)
            return sidecar.model, sidecar.artifact.weights
    raise UsageError("nothing to benchmark: no checkpoint and no ONNX graphs; pass --model CKPT or --model DIR")


def _calibrate(prepared: Prepared, directory: Path, config: BenchConfig, out_dir: Path, say: Say) -> None:
    """Make the ``config.prepare`` graphs missing from ``directory`` with sgjnd.calibration; record why not if not.

    Both INT8 flavours come from one calibration (``target="all"``). The calibration photos are the bundled photos,
    the same the end-to-end suite measures, so the JND drift of INT8 on them is, if anything, optimistic.
    """
    todo = [p for p in config.prepare if p not in available_precisions(directory)]
    if todo:
        _calibration_jobs(prepared, directory, config, out_dir, todo, say)


def calibration_note(directory: Path) -> str:
    """What the INT8 graphs of ``directory`` were calibrated on, read from their sidecar ('' when there are none)."""
    for precision in ("int8-ort", "int8"):
        path = artifact_path(directory, "encoder", precision)
        if not path.is_file():
            continue
        try:
            data = read_sidecar(path, verify_hash=False).artifact.details.get("calibration", {}).get("data", {})
        except SgjndError:
            return ""
        if not isinstance(data, dict) or "patches" not in data:
            return ""
        return (f"INT8 graphs calibrated on {data['patches']} patches ({data.get('reference', '?')} reference, "
                f"{data.get('distorted', '?')} JPEG-distorted) from {data.get('images', '?')} photos; when these are "
                "the bundled photos, the end-to-end suite measures the same photos, so the INT8 JND drift there is, "
                "if anything, optimistic.")
    return ""


def _calibration_jobs(prepared: Prepared, directory: Path, config: BenchConfig, out_dir: Path, todo: list[str],
                      say: Say) -> None:
    try:
        from sgjnd.calibration.pipeline import CalibrateConfig, calibrate_model
        from sgjnd.calibration.reader import ReaderConfig
        from sgjnd.samples import copy_sample_photos
    except ImportError as exc:
        for precision in todo:
            prepared.missing[f"onnx:{precision}"] = f"no {precision} graphs: sgjnd.calibration is not usable ({exc})"
        return
    int8 = [p for p in todo if p in ("int8", "int8-ort")]
    jobs: list[tuple[CalibrationPrecision, CalibrationTarget, list[str]]] = []
    if int8:
        flavour: CalibrationTarget = "all" if len(int8) == 2 else ("tensorrt" if int8 == ["int8"] else "ort-cpu")
        jobs.append(("int8", flavour, int8))
    if "fp16" in todo:
        jobs.append(("fp16", "tensorrt", ["fp16"]))
    photos: Path | None = None
    for precision, target, names in jobs:
        try:
            if precision == "int8" and photos is None:
                photos = out_dir / "calibration-photos"
                copy_sample_photos(photos)
            settings = CalibrateConfig(
                precision=precision,
                target=target,
                reader=ReaderConfig(num_patches=config.calibration_patches),
                report=False,
                progress=False,
                threads=config.threads,
            )
            data = f" on up to {config.calibration_patches} patches of the photos" if precision == "int8" else ""
            say(f"{'/'.join(names)} graphs: calibrating in {directory}{data}")
            calibrate_model(directory, images=photos if precision == "int8" else None, holdout=[], config=settings)
        except (SgjndError, ImportError) as exc:
            for name in names:
                prepared.missing[f"onnx:{name}"] = f"calibration to {name} failed: {exc}"


def _engines(prepared: Prepared, directory: Path, config: BenchConfig, own_dir: Path, *, writable: bool,
             say: Say) -> None:
    """Build the engines of every precision whose ONNX graphs exist, for each TensorRT product a target names
    (TensorRT, TensorRT-RTX), where the product and a GPU exist."""
    from sgjnd.engine_spec import PRODUCTS

    products = [PRODUCTS[b] for b in dict.fromkeys(t.backend for t in config.targets) if b in PRODUCTS]
    for product in products:
        have = available_precisions(directory, product.engine_ext)
        named = {t.precision for t in config.targets if t.backend == product.name}
        wanted = [p for p in ("fp32", "fp16", "int8") if p in named]
        for precision in wanted:
            key = f"{product.engine_ext}:{precision}"
            if precision in have:
                continue
            runtime = "" if product.name == "tensorrt" else f" --runtime {product.name}"
            if not writable:
                hint = f"sgjnd build {directory}{runtime} --precision {precision}"
                prepared.missing[key] = (
                    f"no {precision} {product.title} engines in {directory}; build them with: {hint}"
                )
                continue
            try:
                from sgjnd.engine_spec import BatchProfile, BuildConfig
                from sgjnd.export.trt import engines_from_model_dir

                profile = BatchProfile(1, min(16, max(config.batch_sizes)), max(config.batch_sizes))
                cache = own_dir / "timing.cache" if product.name == "tensorrt" else None  # TensorRT-RTX has none
                build = BuildConfig(precision=precision, batch=profile, timing_cache=cache, runtime=product.name)
                say(f"{precision} {product.title} engines: building in {directory}")
                engines_from_model_dir(directory, build)
            except (SgjndError, ImportError) as exc:
                prepared.missing[key] = f"{precision} {product.title} engines could not be built: {exc}"


def _images(config: BenchConfig) -> tuple[list[Path], str]:
    try:
        from sgjnd.samples import sample_photos

        photos = sample_photos()
    except (SgjndError, ImportError) as exc:
        return [], f"no bundled photos: {exc}"
    return photos[: config.e2e_images] if config.e2e_images else photos, ""
