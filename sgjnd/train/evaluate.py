"""Evaluation of a model on a JND dataset, through the runtime (any backend), and the metrics of method notes §5.2.

The model runs exactly as in deployment: ``open_model`` + :class:`sgjnd.runtime.predictor.JNDPredictor` (decode,
patch grid, exact-crop JPEG trials with the runtime codec, batching, search, sliding window), so a PyTorch
checkpoint, an ONNX model directory and an INT8 graph are scored the same way. Metrics over the M images:

- **pair accuracy**: share of evaluated (image, QF) pairs with ``1[S(QF) >= τ] == 1[QF > J]``;
- **MAE (QF)**: mean ``|Ĵ - J|``; **RMSE**; **within ±k**: share with ``|Ĵ - J| <= k`` for k in 1, 3, 5, 10;
- **ΔPSNR (dB)**: mean ``|PSNR(I, I_Ĵ) - PSNR(I, I_J)|``, RGB PSNR of the full image's JPEG at the QFs;
- **PLCC / SRCC** of Ĵ against J, and of the PSNR at Ĵ against the PSNR at J;
- a **95 % bootstrap interval** of the MAE (images resampled with replacement, seeded), and, given a constant guess
  (``sgjnd train`` records its training labels' median in the checkpoint's sidecar), the guess's MAE on the same
  images, the ratio of the model's MAE to it, and that ratio's paired bootstrap interval.

A prediction of "even the lowest candidate is invisible" counts as Ĵ = lowest candidate - 1 (the label
convention); for PSNR a QF is clamped to 1..100. This module needs numpy only; plots need matplotlib.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sgjnd.data.datasets import JNDDataset, Source
from sgjnd.data.labels import LabelConfig
from sgjnd.errors import SgjndError, UsageError
from sgjnd.fileio import OursTest, is_json_object_file, matplotlib_png, starts_with, write_atomic
from sgjnd.progress import Progress
from sgjnd.runtime.backends.base import ModelBackends
from sgjnd.runtime.decode import decode_image
from sgjnd.runtime.jpeg import JpegCodec, psnr
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig

WITHIN_K: tuple[int, ...] = (1, 3, 5, 10)
BOOTSTRAP_RESAMPLES = 5000
"""Resamples of the bootstrap intervals (seeded: the same images give the same interval)."""


@dataclass(frozen=True)
class ImageEval:
    """One image's prediction against its label.

    Attributes:
        name: source name.
        group: split group.
        true_jnd: the label J.
        pred_jnd: the prediction Ĵ.
        recommended_qf: the runtime's recommended QF (Ĵ's successor), None if every candidate is visible.
        scores: S at every QF the search evaluated.
        psnr_true: PSNR of the JPEG at J (dB).
        psnr_pred: PSNR of the JPEG at Ĵ (dB).
        pairs_correct: evaluated QFs whose decision agrees with the label.
        pairs_total: evaluated QFs.
    """

    name: str
    group: str
    true_jnd: float
    pred_jnd: float
    recommended_qf: int | None
    scores: dict[int, float]
    psnr_true: float
    psnr_pred: float
    pairs_correct: int
    pairs_total: int

    @property
    def abs_error(self) -> float:
        """|Ĵ - J| in QF."""
        return abs(self.pred_jnd - self.true_jnd)


@dataclass(frozen=True)
class EvalResult:
    """An evaluation run: per-image results, metrics, and what was evaluated on what.

    Attributes:
        images: per-image results, in dataset order.
        metrics: see :func:`compute_metrics`.
        dataset: the dataset's description (says whether labels are human data).
        human: whether the labels are human data.
        model: model name from the spec.
        backend: backend description.
        weights: the model's weights statement.
        search: the search settings, in words.
        failures: images that could not be evaluated, with the reason.
    """

    images: list[ImageEval]
    metrics: dict[str, float]
    dataset: str
    human: bool
    model: str
    backend: str
    weights: str
    search: str
    failures: list[tuple[str, str]] = field(default_factory=list)


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson's linear correlation; NaN for fewer than 2 points or a constant input."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.size < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson on average ranks); NaN when undefined."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.size < 2:
        return float("nan")
    return pearson(_ranks(x).tolist(), _ranks(y).tolist())


def pair_counts(scores: Mapping[int, float], jnd: float, threshold: float = 0.5) -> tuple[int, int]:
    """(agreeing, total) evaluated QFs: the decision ``S >= threshold`` against the label ``QF > J``."""
    correct = sum(int((s >= threshold) == (qf > jnd)) for qf, s in scores.items())
    return correct, len(scores)


def compute_metrics(
    true: Sequence[float],
    pred: Sequence[float],
    *,
    psnr_true: Sequence[float] | None = None,
    psnr_pred: Sequence[float] | None = None,
    pairs: tuple[int, int] | None = None,
    ks: Sequence[int] = WITHIN_K,
    baseline: float | None = None,
) -> dict[str, float]:
    """The metrics of the module docstring from per-image values.

    Args:
        true: label JNDs J.
        pred: predicted JNDs Ĵ, same length.
        psnr_true: PSNR at J per image (dB); with ``psnr_pred`` gives ``dpsnr_db``, ``psnr_plcc``, ``psnr_srcc``.
        psnr_pred: PSNR at Ĵ per image.
        pairs: (agreeing, total) pair decisions over all images; gives ``pair_acc``.
        ks: the k of ``within_<k>``.
        baseline: a constant guess of the JND, scored on the same images.

    Returns:
        ``n``, ``mae_qf``, ``mae_ci_low``/``mae_ci_high`` (95 % bootstrap), ``rmse_qf``, ``bias_qf`` (mean Ĵ - J),
        ``within_<k>``, ``plcc``, ``srcc`` and, when given the inputs, ``dpsnr_db``, ``psnr_plcc``, ``psnr_srcc``,
        ``pair_acc``, and ``baseline_jnd``, ``baseline_mae_qf`` (its interval ``baseline_mae_ci_low``/``_high``),
        ``mae_vs_baseline`` (model MAE / baseline MAE) with its paired interval ``mae_vs_baseline_ci_low``/``_high``.

    Raises:
        UsageError: no images, or sequences of different lengths.
    """
    t, p = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    if t.size == 0 or t.shape != p.shape:
        raise UsageError(f"need equally long, non-empty label and prediction lists, got {t.size} and {p.size}")
    err = p - t
    out: dict[str, float] = {
        "n": float(t.size),
        "mae_qf": float(np.mean(np.abs(err))),
        "rmse_qf": float(np.sqrt(np.mean(err**2))),
        "bias_qf": float(np.mean(err)),
    }
    draws = np.random.default_rng(0).integers(0, t.size, (BOOTSTRAP_RESAMPLES, t.size))
    model_maes = np.abs(err)[draws].mean(axis=1)
    out["mae_ci_low"], out["mae_ci_high"] = (float(v) for v in np.percentile(model_maes, [2.5, 97.5]))
    if baseline is not None:
        guess = np.abs(baseline - t)
        guess_maes = guess[draws].mean(axis=1)
        out["baseline_jnd"] = float(baseline)
        out["baseline_mae_qf"] = float(guess.mean())
        out["baseline_mae_ci_low"], out["baseline_mae_ci_high"] = (float(v) for v in
                                                                   np.percentile(guess_maes, [2.5, 97.5]))
        with np.errstate(divide="ignore", invalid="ignore"):  # a perfect guess: the ratio is inf or NaN
            ratios = model_maes / guess_maes
            out["mae_vs_baseline"] = float(out["mae_qf"] / guess.mean()) if guess.mean() else float("nan")
        low, high = np.nanpercentile(ratios, [2.5, 97.5]) if np.isfinite(ratios).any() else (np.nan, np.nan)
        out["mae_vs_baseline_ci_low"], out["mae_vs_baseline_ci_high"] = float(low), float(high)
    for k in ks:
        out[f"within_{k}"] = float(np.mean(np.abs(err) <= k))
    out["plcc"] = pearson(t.tolist(), p.tolist())
    out["srcc"] = spearman(t.tolist(), p.tolist())
    if psnr_true is not None and psnr_pred is not None:
        a, b = np.asarray(psnr_true, np.float64), np.asarray(psnr_pred, np.float64)
        if a.shape != t.shape or b.shape != t.shape:
            raise UsageError("PSNR lists must have one value per image")
        out["dpsnr_db"] = float(np.mean(np.abs(b - a)))
        out["psnr_plcc"] = pearson(a.tolist(), b.tolist())
        out["psnr_srcc"] = spearman(a.tolist(), b.tolist())
    if pairs is not None:
        out["pair_acc"] = float(pairs[0] / pairs[1]) if pairs[1] else float("nan")
    return out


def _psnr_at(bgr: np.ndarray, qf: float, source: Source, codec: JpegCodec) -> float:
    q = int(min(max(round(qf), 1), 100))
    coded = source.distorted.get(q)
    if coded is not None:  # what the subjects saw: the dataset's own file
        dis = decode_image(coded).bgr
        if dis.shape == bgr.shape:
            return psnr(bgr, dis)
    return psnr(bgr, codec.roundtrip(bgr, q))


def evaluate_dataset(
    models: ModelBackends,
    dataset: JNDDataset,
    config: PredictConfig | None = None,
    label: LabelConfig | None = None,
    *,
    progress: bool = True,
    baseline: float | None = None,
) -> EvalResult:
    """Predict every source of ``dataset`` with ``models`` and score the predictions against the labels.

    Args:
        models: both graphs on a backend, already entered (``with open_model(...) as models``).
        dataset: the sources and labels.
        config: prediction settings (search strategy, candidates, patches); None uses the runtime defaults.
        label: label aggregation for human datasets.
        progress: progress lines on stderr.
        baseline: a constant JND guess scored beside the model (e.g. the training labels' median).

    Raises:
        UsageError: no source could be evaluated.
    """
    config = config or PredictConfig()
    predictor = JNDPredictor(models, config)
    codec = JpegCodec(models.model.jpeg)
    qfs = config.search.qfs
    images: list[ImageEval] = []
    failures: list[tuple[str, str]] = []
    bar = Progress(len(dataset.sources), "evaluate", enabled=progress)
    for source in dataset.sources:
        try:
            decoded = decode_image(source.reference, max_pixels=config.max_pixels)
            result = predictor.predict(decoded, source=str(source.reference))
            true = source.jnd_label(label)
            pred = float(result.jnd_qf) if result.jnd_qf is not None else float(qfs[0] - 1)
            correct, total = pair_counts(result.scores, true, config.search.threshold)
            images.append(ImageEval(
                name=source.name, group=source.group, true_jnd=true, pred_jnd=pred,
                recommended_qf=result.recommended_qf, scores=dict(result.scores),
                psnr_true=_psnr_at(decoded.bgr, true, source, codec),
                psnr_pred=_psnr_at(decoded.bgr, pred, source, codec),
                pairs_correct=correct, pairs_total=total,
            ))
            bar.step(f"{source.name}: J {true:g} Ĵ {pred:g}")
        except SgjndError as exc:
            failures.append((source.name, str(exc)))
            bar.step(f"{source.name}: failed")
    if not images:
        raise UsageError(f"no source of {dataset.root} could be evaluated: {failures[0][1] if failures else 'none'}")
    metrics = compute_metrics(
        [i.true_jnd for i in images], [i.pred_jnd for i in images],
        psnr_true=[i.psnr_true for i in images], psnr_pred=[i.psnr_pred for i in images],
        pairs=(sum(i.pairs_correct for i in images), sum(i.pairs_total for i in images)), baseline=baseline,
    )
    s = config.search
    search = (f"{s.strategy} search over QF {s.qfs[0]}..{s.qfs[-1]}, window {s.window}, τ {s.threshold:g}, "
              f"max {config.max_patches} patches")
    return EvalResult(images, metrics, dataset.description, dataset.human, models.model.name,
                      models.encoder.description, models.weights, search, failures)


# -- reports --------------------------------------------------------------------------------------------------

CSV_COLUMNS = ("image", "group", "true_jnd", "pred_jnd", "abs_error", "recommended_qf", "psnr_true_db",
               "psnr_pred_db", "dpsnr_db", "pairs_correct", "pairs_total")


def per_image_csv(result: EvalResult) -> str:
    """The per-image table as CSV text."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i in result.images:
        writer.writerow([i.name, i.group, f"{i.true_jnd:g}", f"{i.pred_jnd:g}", f"{i.abs_error:g}",
                         "" if i.recommended_qf is None else i.recommended_qf, f"{i.psnr_true:.3f}",
                         f"{i.psnr_pred:.3f}", f"{abs(i.psnr_pred - i.psnr_true):.3f}", i.pairs_correct,
                         i.pairs_total])
    return buf.getvalue()


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def summary_markdown(result: EvalResult) -> str:
    """A Markdown summary: what was evaluated, on which labels, and the metrics."""
    m = result.metrics
    warning = "" if result.human else (
        "\n> **Proxy labels, not human data.** These figures measure agreement with an oracle metric, not with "
        "what people see.\n")
    within = ", ".join(f"±{k}: {_fmt(100 * m[f'within_{k}'], 1)} %" for k in WITHIN_K if f"within_{k}" in m)
    lines = [
        "# JND evaluation",
        warning,
        f"- model: `{result.model}`; weights: {result.weights or 'not stated'}",
        f"- backend: {result.backend}",
        f"- labels: {result.dataset}",
        f"- prediction: {result.search}",
        f"- images: {int(m['n'])}" + (f" ({len(result.failures)} failed)" if result.failures else ""),
        "",
        "| metric | value |",
        "|---|---|",
        f"| JND MAE (QF) | {_fmt(m['mae_qf'], 2)} (95 % interval {_fmt(m['mae_ci_low'], 2)}–"
        f"{_fmt(m['mae_ci_high'], 2)}) |",
        *([f"| constant guess {m['baseline_jnd']:g}: MAE (QF) | {_fmt(m['baseline_mae_qf'], 2)} (95 % interval "
           f"{_fmt(m['baseline_mae_ci_low'], 2)}–{_fmt(m['baseline_mae_ci_high'], 2)}) |",
           f"| model MAE / constant guess MAE | {_fmt(m['mae_vs_baseline'], 2)}× (95 % interval "
           f"{_fmt(m['mae_vs_baseline_ci_low'], 2)}–{_fmt(m['mae_vs_baseline_ci_high'], 2)}) |"]
          if "baseline_mae_qf" in m else []),
        f"| JND RMSE (QF) | {_fmt(m['rmse_qf'], 2)} |",
        f"| bias Ĵ - J (QF) | {_fmt(m['bias_qf'], 2)} |",
        f"| within ±k QF | {within} |",
        f"| PLCC / SRCC (Ĵ vs J) | {_fmt(m['plcc'])} / {_fmt(m['srcc'])} |",
        f"| ΔPSNR at the JND (dB) | {_fmt(m.get('dpsnr_db', float('nan')), 3)} |",
        f"| PLCC / SRCC (PSNR at Ĵ vs at J) | {_fmt(m.get('psnr_plcc', float('nan')))} / "
        f"{_fmt(m.get('psnr_srcc', float('nan')))} |",
        f"| pair accuracy | {_fmt(100 * m.get('pair_acc', float('nan')), 1)} % |",
        "",
    ]
    if result.failures:
        lines += ["## Failures", ""] + [f"- {name}: {why}" for name, why in result.failures] + [""]
    return "\n".join(lines)


def report_files() -> dict[str, OursTest]:
    """Every file :func:`write_report` may write, with how to tell one that sgjnd wrote (for
    :func:`sgjnd.fileio.check_output_files`)."""
    return {
        "per_image.csv": starts_with(",".join(CSV_COLUMNS).encode()),
        "summary.md": starts_with(b"# JND evaluation"),
        "metrics.json": lambda p: is_json_object_file(p, ("metrics", "dataset", "search")),
        "pred_vs_true.png": matplotlib_png,
        "s_curves.png": matplotlib_png,
    }


def write_report(result: EvalResult, out_dir: Path, *, plots: bool = True) -> list[Path]:
    """Write ``per_image.csv``, ``summary.md``, ``metrics.json`` and (with matplotlib) the plots into ``out_dir``.

    Returns:
        The files written.
    """
    import json

    out_dir = Path(out_dir)
    files = [out_dir / "per_image.csv", out_dir / "summary.md", out_dir / "metrics.json"]
    write_atomic(files[0], per_image_csv(result).encode())
    write_atomic(files[1], summary_markdown(result).encode())
    meta = {"metrics": result.metrics, "dataset": result.dataset, "human": result.human, "model": result.model,
            "backend": result.backend, "weights": result.weights, "search": result.search,
            "failures": [list(f) for f in result.failures]}
    write_atomic(files[2], (json.dumps(meta, indent=2, sort_keys=True, allow_nan=True) + "\n").encode())
    if plots:
        files += plot_results(result, out_dir)
    return files


def plot_results(result: EvalResult, out_dir: Path, *, max_curves: int = 16) -> list[Path]:
    """``pred_vs_true.png`` (scatter with the ±5 QF band) and ``s_curves.png`` (S over QF with J and Ĵ).

    Returns:
        The PNG files; empty when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    tag = "" if result.human else " (proxy labels)"
    t = np.array([i.true_jnd for i in result.images])
    p = np.array([i.pred_jnd for i in result.images])
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = float(min(t.min(), p.min()) - 5), float(max(t.max(), p.max()) + 5)
    ax.fill_between([lo, hi], [lo - 5, hi - 5], [lo + 5, hi + 5], color="0.9", label="±5 QF")
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1)
    ax.scatter(t, p, s=18)
    for i in result.images:
        ax.annotate(i.name[:14], (i.true_jnd, i.pred_jnd), fontsize=6, alpha=0.7)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="true JND (QF)" + tag, ylabel="predicted JND (QF)",
           title=f"MAE {result.metrics['mae_qf']:.2f} QF, PLCC {_fmt(result.metrics['plcc'], 2)}")
    if "baseline_jnd" in result.metrics:
        ax.axhline(result.metrics["baseline_jnd"], color="0.5", lw=1, ls=":",
                   label=f"constant guess {result.metrics['baseline_jnd']:g} "
                         f"(MAE {result.metrics['baseline_mae_qf']:.2f})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = out_dir / "pred_vs_true.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    files.append(path)

    shown = result.images[:max_curves]
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, i in zip(axes.ravel(), shown, strict=False):
        qs = sorted(i.scores)
        ax.plot(qs, [i.scores[q] for q in qs], ".-", ms=3, lw=0.8)
        ax.axvline(i.true_jnd, color="green", lw=1, label="label")
        ax.axvline(i.pred_jnd, color="red", lw=1, ls="--", label="predicted")
        ax.axhline(0.5, color="0.7", lw=0.5)
        ax.set(ylim=(-0.02, 1.02), xlim=(0, 101), title=i.name[:24])
        ax.tick_params(labelsize=6)
        ax.title.set_fontsize(8)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("S(QF)" + tag, fontsize=9)
    fig.tight_layout()
    path = out_dir / "s_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path)
    return files


def metrics_line(metrics: Mapping[str, Any]) -> str:
    """A one-line rendering of the main metrics for logs."""
    versus = (f" ({metrics['mae_vs_baseline']:.2f}x the constant guess {metrics['baseline_jnd']:g})"
              if "mae_vs_baseline" in metrics else "")
    return (f"MAE {metrics['mae_qf']:.2f} QF{versus}, within±5 {100 * metrics['within_5']:.0f} %, "
            f"PLCC {_fmt(metrics['plcc'], 3)}, SRCC {_fmt(metrics['srcc'], 3)}, "
            f"ΔPSNR {_fmt(metrics.get('dpsnr_db', float('nan')), 2)} dB, "
            f"pair acc {_fmt(100 * metrics.get('pair_acc', float('nan')), 1)} %")
