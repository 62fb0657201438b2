"""One call per CLI mode: :func:`benchmark` (measure, write everything, optionally compare) and :func:`compare_files`.

Files written to the output directory:

- ``bench.json``: the run (environment, model, config, notes, rows); the input of a later ``--compare``;
- ``bench.csv``: one row per measurement;
- ``bench.md``: the report;
- ``latency_vs_batch.png`` and ``stages_per_image.png`` (unless plots are off);
- ``compare.md`` and ``compare.json`` when compared with an earlier run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sgjnd.bench.config import BenchConfig
from sgjnd.bench.report import (
    Change,
    compare_markdown,
    compare_runs,
    regressions,
    write_csv,
    write_json,
    write_markdown,
)
from sgjnd.bench.results import COLUMNS, BenchRun, read_run
from sgjnd.fileio import OursTest, is_json_object_file, matplotlib_png, starts_with, write_atomic

FILES = {"json": "bench.json", "csv": "bench.csv", "markdown": "bench.md", "latency_plot": "latency_vs_batch.png",
         "stages_plot": "stages_per_image.png", "compare_markdown": "compare.md", "compare_json": "compare.json"}
"""Output file names, by role."""


def output_files() -> dict[str, OursTest]:
    """Every file ``sgjnd bench -o DIR`` may write into DIR, with how to tell one that sgjnd wrote (for
    :func:`sgjnd.fileio.check_output_files`: a file of the same name that is not ours is never replaced)."""
    md = starts_with(b"# sgjnd bench")
    tests: dict[str, OursTest] = {
        "json": lambda p: is_json_object_file(p, ("format", "tool", "rows")),
        "csv": starts_with(",".join(COLUMNS).encode()),
        "markdown": md,
        "latency_plot": matplotlib_png,
        "stages_plot": matplotlib_png,
        "compare_markdown": md,
        "compare_json": lambda p: is_json_object_file(p, ("old", "new", "changes")),
    }
    return {FILES[role]: test for role, test in tests.items()}


@dataclass
class BenchOutcome:
    """What :func:`benchmark` produced.

    Attributes:
        run: the measurements.
        files: role -> path of every file written.
        changes: the comparison with the earlier run (empty without one).
    """

    run: BenchRun
    files: dict[str, Path] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        """Changes flagged as regressions (timing or status)."""
        return regressions(self.changes)


def write_outputs(run: BenchRun, out_dir: Path, *, plots: bool = True) -> dict[str, Path]:
    """Write JSON, CSV, Markdown and (optionally) the PNG plots of ``run`` into ``out_dir``.

    The file list is recorded in the run (``run.files``) before the JSON and Markdown are written.

    Raises:
        UsageError: plots were asked for but matplotlib is not installed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if plots:
        from sgjnd.bench.plots import plot_latency, plot_stages

        files["latency_plot"] = plot_latency(run, out_dir / FILES["latency_plot"])
        files["stages_plot"] = plot_stages(run, out_dir / FILES["stages_plot"])
    files.update({role: out_dir / FILES[role] for role in ("json", "csv", "markdown")})
    run.files = {role: path.name for role, path in sorted(files.items())}
    write_csv(run, files["csv"])
    write_json(run, files["json"])
    write_markdown(run, files["markdown"])
    return files


def compare_files(old: Path | BenchRun, new: BenchRun, out_dir: Path, *, threshold: float,
                  old_name: str | None = None, new_name: str = "this run") -> tuple[list[Change], dict[str, Path]]:
    """Compare ``new`` with an earlier run (a path to its bench.json, or the run) and write compare.md/.json.

    Args:
        old: the baseline: a ``bench.json`` path or a loaded run.
        new: the run to judge.
        out_dir: where compare.md and compare.json go.
        threshold: relative change that counts (0.10 = 10 %).
        old_name: how the baseline is named in the report; None: its path, or "baseline".
        new_name: how ``new`` is named in the report.

    Raises:
        UsageError: ``old`` is not a readable bench result.
    """
    old_run = read_run(old) if isinstance(old, Path) else old
    old_name = old_name or (str(old) if isinstance(old, Path) else "baseline")
    changes = compare_runs(old_run, new, threshold)
    out_dir = Path(out_dir)
    paths = {"compare_markdown": out_dir / FILES["compare_markdown"], "compare_json": out_dir / FILES["compare_json"]}
    write_atomic(paths["compare_markdown"], compare_markdown(changes, threshold, old_name, new_name).encode())
    payload = {"old": old_name, "new": new_name, "threshold": threshold, "changes": [c.to_dict() for c in changes]}
    write_atomic(paths["compare_json"], (json.dumps(payload, indent=1) + "\n").encode())
    return changes, paths


def benchmark(
    config: BenchConfig,
    out_dir: Path,
    *,
    weights: Path | None = None,
    model_dir: Path | None = None,
    compare_with: Path | None = None,
    plots: bool = True,
    show_progress: bool = True,
) -> BenchOutcome:
    """Run the suites of ``config`` and write every output into ``out_dir``.

    Args:
        config: what to measure (a profile from :data:`sgjnd.bench.config.PROFILES` or a loaded config).
        out_dir: where the prepared model and all outputs go.
        weights: benchmark this checkpoint instead of a seeded, untrained one.
        model_dir: benchmark this model directory as it is (read only).
        compare_with: an earlier ``bench.json`` to compare against.
        plots: write the PNG plots (needs matplotlib).
        show_progress: progress on stderr.

    Raises:
        UsageError: a bad argument, an unreadable ``compare_with``, or plots without matplotlib.
    """
    from sgjnd.bench.suite import run_suite

    old = read_run(compare_with) if compare_with is not None else None  # fail before an hour of measuring
    run = run_suite(config, out_dir, weights=weights, model_dir=model_dir, show_progress=show_progress)
    files = write_outputs(run, out_dir, plots=plots)
    changes: list[Change] = []
    if old is not None:
        changes, paths = compare_files(old, run, out_dir, threshold=config.compare_threshold,
                                       old_name=str(compare_with), new_name=str(files["json"]))
        files.update(paths)
    return BenchOutcome(run, files, changes)
