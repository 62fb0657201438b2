"""Writing a run's outputs and comparing with a saved run, without measuring."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sgjnd.bench.api import FILES, compare_files, write_outputs
from sgjnd.bench.results import read_run


def test_write_outputs_writes_every_file_and_records_them(synthetic_run, tmp_path):
    pytest.importorskip("matplotlib")
    files = write_outputs(synthetic_run, tmp_path)
    assert set(files) == {"json", "csv", "markdown", "latency_plot", "stages_plot"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in files.values())
    saved = read_run(files["json"])
    assert saved.files == {role: FILES[role] for role in files}
    assert "## Files" in files["markdown"].read_text()


def test_write_outputs_without_plots(synthetic_run, tmp_path):
    files = write_outputs(synthetic_run, tmp_path, plots=False)
    assert set(files) == {"json", "csv", "markdown"}
    assert not list(tmp_path.glob("*.png"))


def test_compare_files_against_a_saved_run(synthetic_run, tmp_path):
    old = write_outputs(synthetic_run, tmp_path / "old", plots=False)["json"]
    rows = [dataclasses.replace(r, p50_ms=r.p50_ms * 2) if r.suite == "latency" and r.p50_ms else r
            for r in synthetic_run.rows]
    changes, paths = compare_files(old, dataclasses.replace(synthetic_run, rows=rows), tmp_path, threshold=0.2)
    assert sum(c.verdict == "regression" for c in changes) == 24  # 3 targets x 2 graphs x 4 batches
    data = json.loads(paths["compare_json"].read_text())
    assert data["old"] == str(old) and data["threshold"] == 0.2 and len(data["changes"]) == len(changes)
    assert str(old) in paths["compare_markdown"].read_text()
