"""PNG plots of a run: latency against batch size per target (log-log) and the per-photo stage breakdown.

matplotlib is imported inside the functions (with the non-interactive Agg backend), so importing this module costs
nothing and a machine without matplotlib still gets every other output (``pip install 'sgjnd[bench]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sgjnd.bench.report import STAGE_FIELDS
from sgjnd.bench.results import BenchRun, Measurement
from sgjnd.errors import UsageError
from sgjnd.fileio import atomic_output

_MAX_PANELS = 12


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise UsageError("plots need matplotlib, which is not installed: pip install 'sgjnd[bench]' "
                         "(or pass --no-plots)") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    tmp = atomic_output(path)
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def plot_latency(run: BenchRun, path: Path) -> Path:
    """Median latency per call against batch size, per target, log-log; one panel per graph.

    An out-of-memory or failed point is marked with an ``x`` at the top of its panel.

    Raises:
        UsageError: matplotlib is not installed.
    """
    plt = _pyplot()
    graphs = [g for g in ("encoder", "head") if run.select("latency", graph=g)]
    fig, axes = plt.subplots(1, max(len(graphs), 1), figsize=(6.2 * max(len(graphs), 1), 4.6), squeeze=False)
    for ax, graph in zip(axes[0], graphs, strict=False):
        series: dict[str, list[Measurement]] = {}
        for r in run.select("latency", graph=graph, variant=""):
            series.setdefault(r.target, []).append(r)
        for target, rows in series.items():
            ok = sorted((r for r in rows if r.status == "ok" and r.p50_ms), key=lambda r: r.batch or 0)
            if not ok:
                continue
            line = ax.plot([r.batch for r in ok], [r.p50_ms for r in ok], marker="o", label=target)[0]
            for r in rows:
                if r.status in ("oom", "error") and r.batch:
                    ax.plot([r.batch], [max(x.p50_ms or 0 for x in ok)], marker="x", markersize=10,
                            color=line.get_color(), linestyle="none")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (patches)")
        ax.set_ylabel("p50 latency per call (ms)")
        ax.set_title(f"{graph}: latency vs batch ({run.model.get('name', '?')})")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not graphs:
        axes[0][0].text(0.5, 0.5, "no latency measured", ha="center", va="center")
    fig.suptitle(f"sgjnd bench, profile {run.profile}: x = out of memory / failed", fontsize=9)
    path = _save(fig, Path(path))
    plt.close(fig)
    return path


def plot_stages(run: BenchRun, path: Path) -> Path:
    """Stacked bars of the predictor's stage times per photo; one panel per (target, strategy), at most 12.

    Raises:
        UsageError: matplotlib is not installed.
    """
    plt = _pyplot()
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for r in run.select("e2e", status="ok", variant=""):
        groups.setdefault((r.target, str(r.strategy)), []).append(r)
    panels = list(groups.items())[:_MAX_PANELS]
    cols = min(3, max(len(panels), 1))
    rows_n = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.0 * cols, 3.8 * rows_n), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, ((target, strategy), rows) in zip(axes.flat, panels, strict=False):
        names = [str(r.image) for r in rows]
        bottom = [0.0] * len(rows)
        for i, (stage, attr) in enumerate(STAGE_FIELDS):
            values = [float(getattr(r, attr) or 0.0) for r in rows]
            ax.bar(range(len(rows)), values, bottom=bottom, label=stage, color=colours(i))
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for x, (r, top) in enumerate(zip(rows, bottom, strict=True)):
            ax.text(x, top, f"{r.encoder_passes}p", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([n.rsplit(".", 1)[0][:12] for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("ms per photo")
        ax.set_title(f"{target}, {strategy}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if panels:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(STAGE_FIELDS),
                   fontsize=8)
    else:
        axes[0][0].text(0.5, 0.5, "no end-to-end rows", ha="center", va="center")
    fig.tight_layout()
    fig.suptitle(f"stage breakdown per photo (Np = encoder passes), profile {run.profile}", fontsize=9, y=1.07)
    path = _save(fig, Path(path))
    plt.close(fig)
    return path
