"""The JND predictor: image -> patches -> features -> S(QF) -> JND (DESIGN.md §3).

The reference patches go through the encoder once; the distorted patches of every QF a search round asks for are
made with the exact-crop JPEG codec (:mod:`sgjnd.runtime.pairs`) and stream through encoder batches of the backend's
preferred size (:mod:`sgjnd.runtime.batching`). The head scores each (reference, distorted) patch pair, and
S(QF) = Σ w·q / Σ w over the patches.

Where both graphs run on tensors on one device and the trials are the exact pipeline (on a GPU by default), the
rounds run there instead (:mod:`sgjnd.runtime.device_rounds`): the image is copied to the device once, features stay
there, and only each round's q and w come back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np

from sgjnd.engine_spec import buffer_nbytes
from sgjnd.errors import BackendError, UsageError
from sgjnd.runtime.backends.base import ModelBackends, tensor_device_of
from sgjnd.runtime.batching import batch_size_for, encode, score_pairs
from sgjnd.runtime.decode import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from sgjnd.runtime.device_rounds import DeviceRounds, shared_tensor_device
from sgjnd.runtime.jpeg import psnr
from sgjnd.runtime.pairs import PairMaker, Trials
from sgjnd.runtime.search import SearchConfig, run_search

_T = TypeVar("_T")

JpegTrials = Literal["auto", "opencv", "exact"]
JPEG_TRIALS: tuple[str, ...] = ("auto", "opencv", "exact")
"""The values of :attr:`PredictConfig.jpeg`."""

Rounds = Literal["auto", "host", "device"]
ROUNDS: tuple[str, ...] = ("auto", "host", "device")
"""The values of :attr:`PredictConfig.rounds`."""

STAGES = ("decode", "patches", "jpeg", "inference", "search", "report")
"""Stages timed per image, in pipeline order."""


@dataclass(frozen=True)
class PredictConfig:
    """Everything about a prediction that is not the model.

    Attributes:
        search: the QF search (strategy, candidates, window, threshold).
        stride: patch-grid stride in pixels; None means the patch size (non-overlapping).
        max_patches: cap on patches per image, spread evenly over the grid; None for all cells.
        batch_size: encoder batch size; None uses the backend's preferred size. The head always runs batches of
            its own preferred size.
        pad_last_batch: pad the last encoder and head batches to full size (for engines tuned to one shape; wasted
            work on dynamic-shape CPU backends).
        max_pixels: images with more pixels are refused from their header, before decoding.
        jpeg_margin: pixels of context around each patch in the exact-crop JPEG encode.
        jpeg: how JPEG trials are made (:mod:`sgjnd.runtime.pairs`; same pixels either way): ``opencv`` on the CPU,
            ``exact`` (the integer array pipeline: on the encoder's CUDA device where it takes tensors there, else
            numpy), or ``auto``: ``exact`` where the encoder runs on tensors on a CUDA device (PyTorch CUDA, and
            TensorRT or ONNX Runtime CUDA with torch installed), else ``opencv``.
        prefetch_jpeg: with OpenCV trials, make the next QF's trials on a worker thread while the encoder runs.
        rounds: where a search round runs (:mod:`sgjnd.runtime.device_rounds`): ``auto`` on the GPU where both graphs
            take tensors on one CUDA device and the trials are exact, else on the host; ``host``; or ``device``,
            forced, on the device where both graphs take tensors, a CPU included (slower than the host there: for
            tests and debugging).
    """

    search: SearchConfig = field(default_factory=SearchConfig)
    stride: int | None = None
    max_patches: int | None = 32
    batch_size: int | None = None
    pad_last_batch: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_margin: int = 16
    jpeg: JpegTrials = "auto"
    prefetch_jpeg: bool = True
    rounds: Rounds = "auto"

    def __post_init__(self) -> None:
        if self.jpeg not in JPEG_TRIALS:
            raise UsageError(f"jpeg trials must be one of {', '.join(JPEG_TRIALS)}, got {self.jpeg!r}")
        if self.rounds not in ROUNDS:
            raise UsageError(f"rounds must be one of {', '.join(ROUNDS)}, got {self.rounds!r}")
        _check_count("batch size", self.batch_size, "a whole number, or None for the backend's preferred size")
        _check_count("max patches", self.max_patches, "a whole number, or None for all")
        _check_count("stride", self.stride, "whole pixels, or None for the patch size")
        _check_count("max pixels", self.max_pixels, "a whole number", optional=False)
        _check_count("JPEG margin", self.jpeg_margin, "whole pixels of context around each patch", optional=False)


def _check_count(name: str, value: object, what: str, *, optional: bool = True) -> None:
    """A whole number >= 1 (or None where ``optional``); booleans and fractions are refused, not truncated."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise UsageError(f"{name} must be at least 1 ({what}), got {value!r}")


@dataclass(frozen=True)
class PatchResult:
    """One patch: its top-left corner and the head's quality q and weight w at the recommended QF."""

    y: int
    x: int
    q: float
    w: float


@dataclass(frozen=True)
class JNDResult:
    """The prediction for one image; ``to_dict`` gives plain JSON types.

    Attributes:
        source: where the image came from.
        width: image width in pixels (after EXIF orientation).
        height: image height in pixels.
        jnd_qf: the highest QF at which compression is still visible; None if even the lowest candidate is
            invisible.
        recommended_qf: the lowest QF judged invisible (the one to use); None if every candidate is visible.
        strategy: the search strategy used.
        scores: S at every evaluated QF (the probability that the JPEG at that QF is perceptually lossless).
        patches: per-patch coordinates with q and w at the recommended QF (or the JND when none is recommended).
        psnr_db: PSNR of the full image's JPEG at the recommended QF, in dB.
        jpeg_bytes: size of that JPEG in bytes.
        encoder_passes: patches run through the encoder (reference plus distorted).
        host_input_bytes: bytes of input the host handed to the backend for this image: every encoder batch on the
            host path (what a GPU backend copies host to device: 1 byte per pixel and channel for a uint8 graph, 4
            for a float32 one), the image once on the device-resident path.
        timings_ms: milliseconds per stage (see STAGES) and in total.
        backend: the backend and device that ran the graphs.
        weights: what the model's weights are (a plain statement from the checkpoint).
        notes: conversions and policies applied to this image.
    """

    source: str
    width: int
    height: int
    jnd_qf: int | None
    recommended_qf: int | None
    strategy: str
    scores: dict[int, float]
    patches: list[PatchResult]
    psnr_db: float | None
    jpeg_bytes: int | None
    encoder_passes: int
    timings_ms: dict[str, float]
    backend: str
    weights: str
    notes: tuple[str, ...] = ()
    host_input_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-serialisable types (QF keys become strings, inf PSNR becomes None)."""
        return {
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "jnd_qf": self.jnd_qf,
            "recommended_qf": self.recommended_qf,
            "strategy": self.strategy,
            "scores": {str(k): round(v, 6) for k, v in self.scores.items()},
            "patches": [{"y": p.y, "x": p.x, "q": round(p.q, 6), "w": round(p.w, 6)} for p in self.patches],
            "psnr_db": None if self.psnr_db is None or not np.isfinite(self.psnr_db) else round(self.psnr_db, 3),
            "jpeg_bytes": self.jpeg_bytes,
            "encoder_passes": self.encoder_passes,
            "host_input_bytes": self.host_input_bytes,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "backend": self.backend,
            "weights": self.weights,
            "notes": list(self.notes),
        }


class _Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] += (time.perf_counter() - start) * 1e3


@dataclass(frozen=True)
class RoundPlan:
    """Where a predictor's JPEG trials are made and its search rounds run, decided once from the backends.

    Attributes:
        trials: ``opencv`` or ``exact`` (see :class:`~sgjnd.runtime.pairs.PairMaker`).
        device: the torch device the exact trials run on; None for OpenCV or numpy.
        on_device: whether whole rounds run there (:mod:`sgjnd.runtime.device_rounds`).
    """

    trials: Trials
    device: str | None
    on_device: bool


def plan_rounds(models: ModelBackends, choice: str, rounds: str = "auto") -> RoundPlan:
    """The :class:`RoundPlan` for ``models`` under ``PredictConfig.jpeg`` = ``choice`` and ``.rounds`` = ``rounds``.

    ``auto`` trials are the exact pipeline on the encoder's CUDA device when it runs on tensors there, else OpenCV;
    ``exact`` runs on that CUDA device, else on numpy (torch's CPU kernels are slower than numpy's for it: measured
    3x). ``auto`` rounds run on the device when both graphs take tensors on that one CUDA device and the trials are
    made there. With ``rounds="device"`` trials and rounds run where both graphs take tensors, a CPU included.

    Raises:
        UsageError: ``rounds="device"`` where the graphs do not take tensors on one device, or with OpenCV trials.
    """
    encoder = tensor_device_of(models.encoder)
    on_cuda = encoder is not None and encoder.startswith("cuda")
    if rounds == "device":
        shared = shared_tensor_device(models)
        if shared is None:
            raise UsageError(
                f"rounds='device' needs both graphs to take torch tensors on one device; {models.encoder.description}"
                f" and {models.head.description} do not (PyTorch does; TensorRT and ONNX Runtime CUDA/CPU do where "
                "torch is installed): use rounds='host' or 'auto'"
            )
        if choice == "opencv":
            raise UsageError("rounds='device' makes its JPEG trials with the exact pipeline on the device: use "
                             "jpeg='exact' or 'auto' with it, not 'opencv'")
        return RoundPlan("exact", shared, on_device=True)
    if choice == "opencv" or (choice == "auto" and not on_cuda):
        return RoundPlan("opencv", None, on_device=False)
    device = encoder if on_cuda else None
    on_device = rounds == "auto" and device is not None and device == shared_tensor_device(models)
    return RoundPlan("exact", device, on_device=on_device)


class JNDPredictor:
    """Predicts the JND of images with one model on one backend.

    Args:
        models: both graphs of the model on a backend, already entered (``with open_model(...) as models``).
        config: prediction settings; None uses the defaults of :class:`PredictConfig`.
    """

    def __init__(self, models: ModelBackends, config: PredictConfig | None = None) -> None:
        self.models = models
        self.config = config or PredictConfig()
        self.spec = models.model
        plan = plan_rounds(models, self.config.jpeg, self.config.rounds)
        self.pairs = PairMaker(self.spec, margin=self.config.jpeg_margin, trials=plan.trials, device=plan.device,
                               prefetch=self.config.prefetch_jpeg)
        self.codec = self.pairs.codec
        self.batch_size = batch_size_for(models.encoder, self.config.batch_size)
        (patches,) = self.spec.encoder_graph().inputs  # one encoder input row: uint8 pixels or float32 patches
        self._patch_bytes = buffer_nbytes(patches, 1, np.dtype(patches.dtype).itemsize)
        self.device_rounds: DeviceRounds | None = None
        if plan.on_device and plan.device is not None:
            self.device_rounds = DeviceRounds(models, self.pairs, plan.device, self.batch_size,
                                              pad=self.config.pad_last_batch)

    # -- public ----------------------------------------------------------------------------------------------
    def predict(self, image: DecodedImage | Path | str | bytes, *, source: str | None = None) -> JNDResult:
        """Predict the JND of one image (a path, encoded bytes, or an already decoded image)."""
        timer = _Timer()
        start = time.perf_counter()
        with timer.stage("decode"):
            decoded = (
                image if isinstance(image, DecodedImage) else decode_image(image, max_pixels=self.config.max_pixels)
            )
        notes = list(decoded.notes)
        pad = self.config.pad_last_batch
        infer = lambda: timer.stage("inference")  # noqa: E731 - a timing context per call
        on_device = self.device_rounds
        with timer.stage("patches"):
            gridded = self.pairs.grid(decoded.bgr, stride=self.config.stride, max_patches=self.config.max_patches)
            if gridded.note:
                notes.append(gridded.note)
            if on_device is not None:
                image_on_device, ref_pixels = on_device.upload(gridded)
            else:
                ref = self.pairs.reference(gridded)
        grid = gridded.grid
        if on_device is not None:
            f_ref_on_device = on_device.encode(ref_pixels, infer)
        else:
            f_ref = encode(self.models, ref, self.batch_size, pad=pad, stage=infer)
        passes = len(grid)
        per_qf: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        def timed(parts: Iterator[_T]) -> Iterator[_T]:
            """``parts`` with the time to make each one booked to the JPEG stage."""
            while True:
                with timer.stage("jpeg"):
                    part = next(parts, None)
                if part is None:
                    return
                yield part

        def round_on_device(qfs: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
            rounds = cast(DeviceRounds, on_device)  # only called when there is one
            # As on the host, the round streams through encoder batches (one chunk of QFs and one batch held).
            f_dis = rounds.encode(timed(iter(rounds.rounds(gridded, image_on_device, qfs))), infer)
            q, w = rounds.score(f_ref_on_device, f_dis, infer)
            return q, w, len(f_dis)

        def round_on_host(qfs: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
            # The round's distorted patches stream through the encoder: one QF's patches and one batch are held
            # at a time, never the whole round.
            f_dis = encode(self.models, timed(iter(self.pairs.distorted_stream(gridded, qfs))), self.batch_size,
                           pad=pad, stage=infer)
            q, w = score_pairs(self.models, np.tile(f_ref, (len(qfs), 1)), f_dis, pad=pad, stage=infer)
            return q, w, len(f_dis)

        def score(qfs: Sequence[int]) -> Mapping[int, float]:
            nonlocal passes
            q, w, encoded = (round_on_device if on_device is not None else round_on_host)(qfs)
            if not (np.isfinite(q).all() and np.isfinite(w).all()):
                # NaN >= threshold is False: without this check a broken graph reads as "visible at every QF"
                raise BackendError(
                    f"{self.models.head.description} returned non-finite q or w for {source or decoded.source} "
                    f"(QFs {qfs[0]}..{qfs[-1]}): the graph or engine is broken for these inputs; check it with "
                    "`sgjnd compare` against the PyTorch reference"
                )
            passes += encoded
            n = len(grid)
            out: dict[int, float] = {}
            for k, qf in enumerate(qfs):
                qk, wk = q[k * n : (k + 1) * n], w[k * n : (k + 1) * n]
                per_qf[qf] = (qk, wk)
                out[qf] = float(np.sum(wk * qk) / np.sum(wk))
            return out

        # "search" is the time of the search logic itself: the round's JPEG and inference time is booked there.
        inner_before = timer.ms["jpeg"] + timer.ms["inference"]
        search_start = time.perf_counter()
        outcome = run_search(self.config.search, score)
        elapsed = (time.perf_counter() - search_start) * 1e3
        timer.ms["search"] = max(elapsed - (timer.ms["jpeg"] + timer.ms["inference"] - inner_before), 0.0)

        with timer.stage("report"):
            psnr_db, nbytes = None, None
            if outcome.recommended_qf is not None:
                # The user's image, not the padded one the patches came from.
                data = self.codec.encode(decoded.bgr, outcome.recommended_qf)
                nbytes = len(data)
                psnr_db = psnr(decoded.bgr, self.codec.decode(data))
            at = outcome.recommended_qf if outcome.recommended_qf is not None else outcome.jnd_qf
            qk, wk = per_qf[at] if at in per_qf else (np.full(len(grid), np.nan), np.full(len(grid), np.nan))
            patches = [
                PatchResult(int(y), int(x), float(qv), float(wv))
                for (y, x), qv, wv in zip(grid.coords.tolist(), qk.tolist(), wk.tolist(), strict=True)
            ]
        timer.ms["total"] = (time.perf_counter() - start) * 1e3
        return JNDResult(
            source=source or decoded.source,
            width=int(decoded.bgr.shape[1]),
            height=int(decoded.bgr.shape[0]),
            jnd_qf=outcome.jnd_qf,
            recommended_qf=outcome.recommended_qf,
            strategy=self.config.search.strategy,
            scores=outcome.scores,
            patches=patches,
            psnr_db=psnr_db,
            jpeg_bytes=nbytes,
            encoder_passes=passes,
            timings_ms=timer.ms,
            host_input_bytes=int(gridded.bgr.nbytes) if on_device is not None else passes * self._patch_bytes,
            backend=self.models.encoder.description,
            weights=self.models.weights,
            notes=tuple(notes),
        )
