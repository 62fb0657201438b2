"""The training loop of ``sgjnd train``: any registered model on MCL-JCI, KonJND-1k or proxy labels.

One step draws ``images_per_batch`` training sources; per source, ``patches_per_image`` random cells of the
non-overlapping patch grid (method notes A2) and ``qfs_per_image`` QFs. The reference patches go through the
encoder once and are paired with the co-located distorted patches of every drawn QF; a horizontal flip, when drawn,
is applied identically to the reference and all its distorted patches. The head gives q and w per pair, and
``S = Σ w·q / Σ w`` per (image, QF) is trained with BCE against ``1[QF > J]`` (``binary``) or MSE against the
SUR (``sur``). Distorted patches come from the dataset's coded files when it has them, else from the runtime's JPEG
codec with the model spec's settings (exact crops, identical to a full-image encode).

Reproducibility and resume: every random draw of epoch e comes from generators seeded with (seed, e), and the
model is initialised from the seed, so the same config gives the same weights, and a run resumed from the end of
epoch e continues exactly as an uninterrupted one. ``train_state.pt`` (FP32 weights, optimiser, step, history) is
written after every epoch; ``last.pt`` and ``best.pt`` are ordinary sgjnd checkpoints with sidecars.

Validation runs the saved checkpoint through the runtime predictor on held-out source groups and stops early on
the JND MAE after the sliding window (method notes §3.3).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import re
import time
import typing
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgjnd.data.datasets import JNDDataset, Source, open_dataset
from sgjnd.data.labels import LabelConfig, binary_target
from sgjnd.data.splits import split_dataset
from sgjnd.errors import CheckpointError, UsageError
from sgjnd.fileio import OursTest, is_json_object_file, jsonl_of_objects, write_atomic
from sgjnd.model import SGJND, SGJNDEncoder, aggregate, create_model, load_backbone_weights, save_checkpoint
from sgjnd.progress import Progress
from sgjnd.runtime.decode import decode_image
from sgjnd.runtime.pairs import GriddedImage, PairMaker
from sgjnd.runtime.patches import PatchGrid, extract_patches, pad_to_patch
from sgjnd.runtime.predictor import PredictConfig
from sgjnd.runtime.search import SearchConfig
from sgjnd.spec import sidecar_path
from sgjnd.train.config import TrainConfig
from sgjnd.train.frozen import FrozenBackbone

log = logging.getLogger(__name__)

STATE_FORMAT = 1
STATE_FILE = "train_state.pt"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"


def run_files() -> dict[str, OursTest]:
    """The fixed-name files a training run writes into its folder, with how to tell ones sgjnd wrote (for
    :func:`sgjnd.fileio.check_output_files`): the state file and checkpoints are ours where the folder's run record
    is (``run.json``: what makes a folder a run folder), checkpoints also by their sidecar."""

    def in_a_run(path: Path) -> bool:
        return (path.parent / RUN_FILE).is_file() and is_json_object_file(path.parent / RUN_FILE, ("config",))

    def checkpoint(path: Path) -> bool:
        return in_a_run(path) or is_json_object_file(sidecar_path(path), ("model", "artifact"))

    return {
        RUN_FILE: lambda p: is_json_object_file(p, ("config",)),
        METRICS_FILE: jsonl_of_objects(("epoch",)),
        STATE_FILE: in_a_run,
        "last.pt": checkpoint,
        "best.pt": checkpoint,
    }
_RESUME_IGNORED = ("epochs", "output", "validation", "threads", "keep_epochs", "feature_cache_mb")
"""Config fields that may change between a run and its resumption."""

Stages = tuple[Tensor, ...]


# -- model pieces ---------------------------------------------------------------------------------------------


def encode_from_stages(encoder: SGJNDEncoder, stages: Sequence[Tensor]) -> Tensor:
    """The encoder's output from its backbone's stage outputs (used with cached backbone features).

    A test checks it equals ``encoder(x)`` for every registered variant.
    """
    return encoder.features_from_stages(stages)


def build_model(config: TrainConfig) -> SGJND:
    """The network of ``config.model``, initialised from ``config.seed``, with backbone weights when asked.

    Raises:
        UsageError: unknown model or option, or ``imagenet`` asked for a backbone without offline weights.
        CheckpointError: the backbone weights file does not fit.
    """
    mc = config.model
    model = create_model(mc.name, seed=config.seed, **mc.options)
    weights = mc.backbone_weights
    if weights:
        from sgjnd.model.effnet import EfficientNetLite0, load_effnet_weights

        if isinstance(model.encoder.backbone, EfficientNetLite0):
            load_effnet_weights(model, None if weights == "imagenet" else Path(weights))
        elif weights == "imagenet":
            raise UsageError(
                f"backbone_weights 'imagenet' is only available offline for EfficientNet-Lite0 (sgjnd_effl0); for "
                f"{mc.name} give a torchvision-layout ResNet-50 file (e.g. resnet50-11ad3fa6.pth)"
            )
        else:
            load_backbone_weights(model, Path(weights))
    return model


def freeze(model: SGJND, prefixes: Sequence[str]) -> list[str]:
    """Turn off gradients of parameters whose names start with one of ``prefixes``; returns their names.

    Raises:
        UsageError: a prefix matches no parameter.
    """
    frozen = []
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            raise UsageError(f"freeze prefix {prefix!r} matches no parameter of {model.spec.name}: expected a module "
                             f"path such as 'encoder.backbone' (first parameters: {names[:3]})")
    for name, param in model.named_parameters():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def backbone_frozen(model: SGJND) -> bool:
    """True when no backbone parameter is trainable."""
    return not any(p.requires_grad for p in model.encoder.backbone.parameters())


def param_groups(model: SGJND, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: trainable backbone parameters at ``lr_backbone``, all other trainable ones at ``lr_head``."""
    backbone = {id(p) for p in model.encoder.backbone.parameters()}
    groups = [
        {"name": "backbone", "lr": config.optim.lr_backbone,
         "params": [p for p in model.parameters() if p.requires_grad and id(p) in backbone]},
        {"name": "head", "lr": config.optim.lr_head,
         "params": [p for p in model.parameters() if p.requires_grad and id(p) not in backbone]},
    ]
    return [g for g in groups if g["params"]]


def averaged_model(model: SGJND, decay: float | None) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights (buffers too) with ``decay`` per step, or None.

    torch's ``AveragedModel`` with its EMA update: its first update copies the weights, later ones blend them.
    """
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then cosine to 0 or constant."""
    warm = config.optim.warmup_steps
    if warm and step < warm:
        return (step + 1) / warm
    if config.optim.schedule == "constant":
        return 1.0
    span = max(total - warm, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, span) / span))


def set_train_mode(model: SGJND, config: TrainConfig) -> None:
    """Train mode, with the backbone's BatchNorm statistics fixed when asked or when the backbone is frozen."""
    model.train()
    if config.model.bn_eval or backbone_frozen(model):
        for m in model.encoder.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


# -- data -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One training step's tensors.

    Attributes:
        ref: (B·N, 3, s, s) normalised reference patches (None when their features came from the cache).
        dis: (B·K·N, 3, s, s) normalised distorted patches, image-major, then QF, then patch.
        targets: (B·K,) targets of S.
        keys: cache keys of the reference patches (B·N) and distorted patches (B·K·N).
        qfs: (B, K) QFs drawn.
    """

    ref: np.ndarray | None
    dis: np.ndarray | None
    targets: np.ndarray
    ref_keys: list[tuple[int, int, int, int, int]]
    dis_keys: list[tuple[int, int, int, int, int]]
    qfs: np.ndarray


class _Images:
    """Decoded, padded references and their full patch grids, kept for the most recent ``capacity`` sources."""

    def __init__(self, sources: Sequence[Source], pairs: PairMaker, capacity: int = 64) -> None:
        self.sources = sources
        self.pairs = pairs
        self.capacity = capacity
        self._cache: OrderedDict[int, tuple[np.ndarray, PatchGrid]] = OrderedDict()

    def get(self, index: int) -> tuple[np.ndarray, PatchGrid]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        image = self.pairs.grid(decode_image(self.sources[index].reference).bgr)  # every cell: steps draw from it
        bgr, grid = image.bgr, image.grid
        self._cache[index] = (bgr, grid)
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return bgr, grid


class Sampler:
    """Draws training batches (see the module docstring) from a dataset's sources.

    Args:
        dataset: the training sources.
        model: the network (its spec gives patch size, preprocessing and JPEG settings).
        config: the training config.
        label: label aggregation for human datasets.
    """

    def __init__(self, dataset: JNDDataset, model: SGJND, config: TrainConfig, label: LabelConfig) -> None:
        self.sources = dataset.sources
        self.spec = model.spec
        self.config = config
        self.sampling = config.sampling
        self.qfs = np.asarray(config.candidate_qfs)
        self.pairs = PairMaker(self.spec)
        self.images = _Images(self.sources, self.pairs)
        self.jnd = [s.jnd_label(label) for s in self.sources]
        self.label = label

    def draw(self, rng: np.random.Generator, indices: Sequence[int]) -> tuple[list[Any], np.ndarray, np.ndarray]:
        """Random cells, flips and QFs for the sources ``indices``: a plan, the QFs (B, K) and targets (B·K,)."""
        n, k = self.sampling.patches_per_image, self.sampling.qfs_per_image
        plan, qfs_all, targets = [], [], []
        for index in indices:
            _, grid = self.images.get(index)
            cells = rng.choice(len(grid), size=n, replace=len(grid) < n)
            flip = bool(self.sampling.flip and rng.random() < 0.5)
            qfs = self._qfs(rng, self.jnd[index], k)
            plan.append((index, grid.coords[cells], flip))
            qfs_all.append(qfs)
            for qf in qfs.tolist():
                if self.config.mode == "binary":
                    targets.append(binary_target(qf, self.jnd[index]))
                else:
                    targets.append(self.sources[index].sur_target(qf, self.label))
        return plan, np.asarray(qfs_all, dtype=np.int64), np.asarray(targets, dtype=np.float32)

    def _qfs(self, rng: np.random.Generator, jnd: float, k: int) -> np.ndarray:
        if self.sampling.qf_sampling == "uniform":
            return rng.choice(self.qfs, size=k, replace=len(self.qfs) < k)
        low, high = self.qfs[self.qfs <= jnd], self.qfs[self.qfs > jnd]
        n_low = k // 2 if len(low) and len(high) else (k if len(low) else 0)
        parts = [rng.choice(low, size=n_low, replace=len(low) < n_low)] if n_low else []
        if k - n_low:
            parts.append(rng.choice(high, size=k - n_low, replace=len(high) < k - n_low))
        return np.concatenate(parts)

    def patches(self, index: int, coords: np.ndarray, flip: bool, qf: int | None) -> np.ndarray:
        """Normalised (n, 3, s, s) patches of source ``index`` at ``coords``: the reference (qf None) or its JPEG.

        Made by the predictor's pair maker (padding, exact-crop JPEG, normalisation), with two differences training
        needs: the cells are drawn at random per step (with an optional horizontal flip), and a dataset may bring
        its own JPEG files (human JND datasets were labelled on those exact files), which are used instead of ours.
        """
        bgr, _ = self.images.get(index)
        grid = PatchGrid(coords=np.ascontiguousarray(coords, dtype=np.int64), patch_size=self.spec.patch_size,
                         image_shape=(bgr.shape[0], bgr.shape[1]))
        if qf is None:
            pix = extract_patches(bgr, grid)
        else:
            coded = self.sources[index].distorted.get(qf)
            if coded is not None:
                dis, _ = pad_to_patch(decode_image(coded).bgr, self.spec.patch_size)
                if dis.shape != bgr.shape:
                    raise UsageError(f"{coded} is {dis.shape[1]}x{dis.shape[0]} but its reference "
                                     f"{self.sources[index].reference} is {bgr.shape[1]}x{bgr.shape[0]}")
                pix = extract_patches(dis, grid)
            else:
                pix = self.pairs.distorted_pixels(GriddedImage(bgr, grid), qf)
        if flip:
            pix = np.ascontiguousarray(pix[:, :, ::-1])
        return self.pairs.encoder_input(pix)


class FeatureCache:
    """Backbone stage outputs per (source, y, x, flip, qf) patch, FP16, least recently used first out.

    Args:
        capacity_mb: memory cap.
    """

    def __init__(self, capacity_mb: int) -> None:
        self.capacity = capacity_mb * 2**20
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._store: OrderedDict[tuple[int, ...], Stages] = OrderedDict()

    def get(self, key: tuple[int, ...]) -> Stages | None:
        item = self._store.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._store.move_to_end(key)
        return item

    def put(self, key: tuple[int, ...], stages: Stages) -> None:
        if key in self._store:
            return
        size = sum(t.numel() * t.element_size() for t in stages)
        self._store[key] = stages
        self.used += size
        while self.used > self.capacity and self._store:
            _, old = self._store.popitem(last=False)
            self.used -= sum(t.numel() * t.element_size() for t in old)


# -- the step -------------------------------------------------------------------------------------------------


class Trainer:
    """Runs training steps of ``model`` on batches from ``sampler``.

    Args:
        model: the network (in train mode as set by :func:`set_train_mode`).
        sampler: the batch source.
        config: the training config.
        cache: backbone feature cache (only with a frozen backbone), or None.
    """

    def __init__(self, model: SGJND, sampler: Sampler, config: TrainConfig, cache: FeatureCache | None) -> None:
        self.model = model
        self.sampler = sampler
        self.config = config
        self.cache = cache
        self.frozen = (FrozenBackbone(model.encoder.backbone, config.frozen_backbone, config.threads,
                                      model.spec.patch_size) if cache is not None else None)

    def _features(self, keys: Sequence[tuple[int, int, int, int, int]], make: Callable[[list[int]], np.ndarray]
                  ) -> Tensor:
        """Encoder features of the patches ``keys``; ``make(positions)`` gives the pixels of those positions."""
        encoder = self.model.encoder
        if self.cache is None or self.frozen is None:
            out: Tensor = encoder(torch.from_numpy(make(list(range(len(keys))))))
            return out
        found: list[Stages | None] = [self.cache.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            stages = self.frozen(torch.from_numpy(make(missing)))
            for j, i in enumerate(missing):
                item = tuple(s[j].to(torch.float16).clone() for s in stages)
                found[i] = item
                self.cache.put(keys[i], item)
        stacked = [torch.stack([f[level] for f in found if f is not None]).float() for level in range(4)]
        return encode_from_stages(encoder, stacked)

    def loss(self, rng: np.random.Generator, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Draw a batch for ``indices`` and return (loss, S, targets)."""
        plan, qfs, targets = self.sampler.draw(rng, indices)
        n = self.config.sampling.patches_per_image
        k = qfs.shape[1]
        ref_keys = [(idx, int(y), int(x), int(flip), 0) for idx, coords, flip in plan for y, x in coords.tolist()]
        dis_keys = [(idx, int(y), int(x), int(flip), int(qf))
                    for (idx, coords, flip), row in zip(plan, qfs.tolist(), strict=True) for qf in row
                    for y, x in coords.tolist()]

        def make(keys: Sequence[tuple[int, int, int, int, int]]) -> Callable[[list[int]], np.ndarray]:
            def pixels(positions: list[int]) -> np.ndarray:
                # group by (source, flip, qf): one JPEG trial serves all its cells
                groups: OrderedDict[tuple[int, int, int], list[int]] = OrderedDict()
                for p in positions:
                    idx, _, _, flip, qf = keys[p]
                    groups.setdefault((idx, flip, qf), []).append(p)
                out: dict[int, np.ndarray] = {}
                for (idx, flip, qf), members in groups.items():
                    coords = np.array([[keys[p][1], keys[p][2]] for p in members], dtype=np.int64)
                    arr = self.sampler.patches(idx, coords, bool(flip), qf or None)
                    for p, a in zip(members, arr, strict=True):
                        out[p] = a
                return np.stack([out[p] for p in positions])
            return pixels

        f_ref = self._features(ref_keys, make(ref_keys))
        f_dis = self._features(dis_keys, make(dis_keys))
        b = len(plan)
        f_ref_rep = f_ref.view(b, 1, n, -1).expand(b, k, n, f_ref.shape[1]).reshape(b * k * n, -1)
        q, w = self.model.head(f_ref_rep, f_dis)
        scores = aggregate(q, w, b * k, n)
        y = torch.from_numpy(targets)
        if self.config.mode == "binary":
            loss = F.binary_cross_entropy(scores.clamp(1e-6, 1 - 1e-6), y)
        else:
            loss = F.mse_loss(scores, y)
        return loss, scores.detach(), y


# -- the run --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """What a run produced.

    Attributes:
        out_dir: the run folder.
        best: the best checkpoint (by validation JND MAE; the last one without validation).
        last: the last checkpoint.
        epochs_run: epochs completed, resumed ones included.
        best_epoch: the epoch of ``best``.
        best_mae: its validation JND MAE (None without validation).
        stopped_early: whether early stopping ended the run.
        history: one record per epoch (the lines of ``metrics.jsonl``).
    """

    out_dir: Path
    best: Path
    last: Path
    epochs_run: int
    best_epoch: int
    best_mae: float | None
    stopped_early: bool
    history: list[dict[str, Any]]


def weights_statement(config: TrainConfig, dataset: JNDDataset, n_train: int, epoch: int) -> str:
    """The sidecar's weights statement: what the model was trained on, and that proxy labels are not human data."""
    if config.weights:
        return config.weights
    what = dataset.description
    if not dataset.human:
        what = what.replace("PROXY LABELS", "proxy labels").replace("NOT human data", "not human data")
    return f"trained on {what} ({n_train} training source(s) of {dataset.root.name}, epoch {epoch}; sgjnd train)"


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _RESUME_IGNORED}


def _save(model: SGJND, path: Path, weights: str, fp16: bool, details: dict[str, Any] | None = None) -> None:
    if fp16:  # store FP16 values; load_checkpoint copies them into the FP32 model
        model = copy.deepcopy(model).half()
    save_checkpoint(model, path, weights=weights, details=details)


def _validate(path: Path, val: JNDDataset, config: TrainConfig, label: LabelConfig) -> dict[str, float]:
    from sgjnd.runtime.backends.registry import open_model
    from sgjnd.train.evaluate import evaluate_dataset

    vc = config.validation
    predict = PredictConfig(
        search=SearchConfig(strategy=vc.strategy, qfs=tuple(range(vc.min_qf, vc.max_qf + 1)), window=vc.window),
        max_patches=vc.max_patches,
    )
    with open_model("torch", path, threads=config.threads) as models:
        result = evaluate_dataset(models, val, predict, label, progress=False)
    return result.metrics


def train(config: TrainConfig, out_dir: Path | None = None, *, resume: bool = True, progress: bool = True,
          max_steps: int | None = None) -> TrainResult:
    """Train per ``config`` into ``out_dir`` (default ``config.output``), resuming a run found there.

    Args:
        config: the training config.
        out_dir: the run folder.
        resume: continue from ``train_state.pt`` when present (the config must match but for epochs, output,
            validation, threads).
        progress: progress lines on stderr.
        max_steps: stop after this many steps in this call (tests, smoke runs); the epoch in progress is not saved.

    Raises:
        UsageError: bad config, data or split; DatasetError: the dataset does not fit its layout; CheckpointError:
            the run folder's state is unreadable or from another config.
    """
    out_dir = Path(out_dir or config.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    label = LabelConfig(config.data.label, config.data.sur_p)

    dataset, train_set, val_set = split_for(config)
    if not len(train_set):
        raise UsageError(f"no training sources left in {dataset.root} after the split and exclusions")

    model = build_model(config)
    if dataset.jpeg is not None and dataset.jpeg != model.spec.jpeg:
        raise UsageError(f"the labels were made with JPEG settings {dataset.jpeg} but {model.spec.name} uses "
                         f"{model.spec.jpeg}: label again with matching --subsampling")
    frozen = freeze(model, config.model.freeze)
    if config.cache_frozen_features and not backbone_frozen(model):
        raise UsageError("cache_frozen_features needs the whole backbone frozen: add 'encoder.backbone' to "
                         "model.freeze")
    groups = param_groups(model, config)
    if not groups:
        raise UsageError("every parameter is frozen: nothing to train; shorten model.freeze")
    optimizer = torch.optim.AdamW(groups, weight_decay=config.optim.weight_decay)
    ema = averaged_model(model, config.optim.ema_decay)
    # what checkpoints hold, validation scores and best.pt keeps: the average when there is one
    saved: SGJND = typing.cast(SGJND, ema.module) if ema is not None else model
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    sampler = Sampler(train_set, model, config, label)
    # the constant guess a model must beat: `sgjnd evaluate` scores it beside the model
    facts = {"train_label_median_qf": float(np.median(sampler.jnd)), "train_sources": len(train_set)}
    steps_per_epoch = config.sampling.steps_per_epoch or math.ceil(len(train_set) / config.sampling.images_per_batch)
    total_steps = steps_per_epoch * config.epochs

    start_epoch, step = 1, 0
    history: list[dict[str, Any]] = []
    best_mae: float | None = None
    best_epoch, bad = 0, 0
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{state_path} is not a training state of this sgjnd version; use --no-resume")
        if _comparable(state["config"]) != _comparable(json.loads(json.dumps(config.to_dict()))):
            raise CheckpointError(f"{out_dir} holds a run with another config; train into another folder (-o) or "
                                  "pass --no-resume to start over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
        history = list(state["history"])
        best_mae = state["best_mae"]
        best_epoch, bad = int(state["best_epoch"]), int(state["bad"])
        log.info("resuming %s after epoch %d (step %d)", out_dir, start_epoch - 1, step)
    elif not resume:
        (out_dir / METRICS_FILE).unlink(missing_ok=True)

    cache = FeatureCache(config.feature_cache_mb) if config.cache_frozen_features else None
    trainer = Trainer(model, sampler, config, cache)
    notes = {"train_sources": len(train_set), "val_sources": len(val_set), "frozen_params": len(frozen),
             "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
             "dataset": dataset.description, "human_labels": dataset.human}
    write_atomic(out_dir / RUN_FILE, (json.dumps({"config": config.to_dict(), **notes}, indent=2) + "\n").encode())
    last, best = out_dir / "last.pt", out_dir / "best.pt"
    stopped = start_epoch > config.epochs or (config.validation.patience > 0 and bad >= config.validation.patience)
    steps_this_call = 0
    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.epochs + 1):
        if stopped or (max_steps is not None and steps_this_call >= max_steps):
            break
        started = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout and any other torch draw
        set_train_mode(model, config)
        order = rng.permutation(len(train_set))
        per = config.sampling.images_per_batch
        bar = Progress(steps_per_epoch, f"epoch {epoch}/{config.epochs}", enabled=progress)
        losses, correct, pairs = [], 0, 0
        for i in range(steps_per_epoch):
            take = [int(order[(i * per + j) % len(order)]) for j in range(per)]
            factor = lr_factor(step, total_steps, config)
            for g, base in zip(optimizer.param_groups, base_lrs, strict=True):
                g["lr"] = base * factor
            loss, scores, y = trainer.loss(rng, take)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], config.optim.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            steps_this_call += 1
            losses.append(float(loss.detach()))
            correct += int(((scores >= 0.5).float() == (y >= 0.5).float()).sum())
            pairs += int(y.numel())
            bar.step(f"loss {np.mean(losses):.4f}")
            if max_steps is not None and steps_this_call >= max_steps:
                break
        if max_steps is not None and steps_this_call >= max_steps and i + 1 < steps_per_epoch:
            break  # a partial epoch is not saved: resume restarts it from its beginning
        record: dict[str, Any] = {
            "epoch": epoch, "step": step, "train_loss": float(np.mean(losses)), "train_pair_acc": correct / pairs,
            "lr_head": base_lrs[-1] * lr_factor(step - 1, total_steps, config),
        }
        if cache is not None:
            record["feature_cache"] = {"hits": cache.hits, "misses": cache.misses, "mb": round(cache.used / 2**20)}
        statement = weights_statement(config, dataset, len(train_set), epoch)
        saved.eval()
        _save(saved, last, statement, config.save_fp16, facts)
        if config.keep_epochs:
            _save(saved, out_dir / f"epoch_{epoch:03d}.pt", statement, config.save_fp16, facts)
        improved = False
        if len(val_set) and epoch % config.validation.every == 0:
            metrics = _validate(last, val_set, config, label)
            record["val"] = metrics
            if best_mae is None or metrics["mae_qf"] < best_mae - 1e-9:
                best_mae, best_epoch, bad, improved = metrics["mae_qf"], epoch, 0, True
            else:
                bad += 1
        elif not len(val_set):
            best_epoch, improved = epoch, True
        if improved:
            _save(saved, best, statement, config.save_fp16, facts)
        record["seconds"] = round(time.perf_counter() - started, 1)
        record["best_epoch"] = best_epoch
        history.append(record)
        with open(out_dir / METRICS_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        torch.save({"format": STATE_FORMAT, "epoch": epoch, "step": step, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                    "history": history, "best_mae": best_mae,
                    "best_epoch": best_epoch, "bad": bad, "config": json.loads(json.dumps(config.to_dict()))},
                   out_dir / ".train_state.tmp")
        (out_dir / ".train_state.tmp").replace(state_path)
        if progress:
            val_text = ""
            if "val" in record:
                from sgjnd.train.evaluate import metrics_line

                val_text = f"; val {metrics_line(record['val'])}"
            print(f"epoch {epoch}: loss {record['train_loss']:.4f}, pair acc {100 * record['train_pair_acc']:.1f} %"
                  f"{val_text} ({record['seconds']} s)", flush=True)
        if config.validation.patience and bad >= config.validation.patience:
            stopped = True
            log.info("early stop after epoch %d: no better validation MAE for %d validations", epoch, bad)
            break
    if not best.exists() and last.exists():
        _save(saved, best, weights_statement(config, dataset, len(train_set), epoch), config.save_fp16,
              facts)
    return TrainResult(out_dir, best, last, len(history), best_epoch, best_mae, stopped, history)


def split_for(config: TrainConfig) -> tuple[JNDDataset, JNDDataset, JNDDataset]:
    """The dataset of ``config`` after its exclusions, its training sources and the validation items scored.

    Validation is whole source groups (``data.val_groups`` or a fold; ``[]``: none), narrowed to the items
    ``validation.only`` matches; training never sees a validation group either way.

    Raises:
        UsageError: ``validation.only`` matches no validation item; DatasetError: the dataset does not fit its layout.
    """
    dataset = open_dataset(Path(config.data.path), config.data.kind, jnd_index=config.data.jnd_index)
    if config.data.exclude:
        dropped = set(config.data.exclude)
        dataset = dataset.subset(s.name for s in dataset.sources if s.name not in dropped and s.group not in dropped)
    if config.data.val_groups is not None and not config.data.val_groups:
        return dataset, dataset, dataset.subset([])
    train_set, val_set = split_dataset(dataset, k=config.data.folds, fold=config.data.fold,
                                       seed=config.data.split_seed, val_groups=config.data.val_groups)
    if config.validation.only and len(val_set):
        pattern = re.compile(config.validation.only)
        matched = [s.name for s in val_set.sources if pattern.search(s.name)]
        if not matched:
            raise UsageError(f"validation.only {config.validation.only!r} matches none of the validation items "
                             f"(names like {val_set.names[:3]}): loosen it or drop it")
        val_set = val_set.subset(matched)
    return dataset, train_set, val_set


def dataset_summary(config: TrainConfig) -> dict[str, Any]:
    """The split a config makes (source names per split), without training: for ``sgjnd train --dry-run``."""
    dataset, train_set, val_set = split_for(config)
    summary = {"train": train_set.names, "val": val_set.names, "labels": dataset.description}
    if config.data.val_groups is not None and not config.data.val_groups:
        return summary
    return {**summary, "notes": list(dataset.notes),
            **dataclasses.asdict(LabelConfig(config.data.label, config.data.sur_p))}
