"""JSON/CSV/Markdown outputs and --compare, on a synthetic run with known figures."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest

from sgjnd.bench.report import (
    compare_markdown,
    compare_runs,
    csv_text,
    markdown_report,
    regressions,
    speedup_rows,
    strategy_summary,
    target_checks,
)
from sgjnd.bench.results import COLUMNS, BenchRun, read_run
from sgjnd.errors import UsageError


def _section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end > 0 else None]


def test_speedup_table_has_one_row_per_target_with_the_ratios(synthetic_run):
    rows = {r[0].strip("`"): r for r in speedup_rows(synthetic_run)}
    assert list(rows) == ["torch/fp32", "ort-cpu/fp32", "ort-cpu/int8-ort", "ort-cpu/fp16", "ov-cpu/fp32",
                          "ov-cpu/bf16", "ov-cpu/int8-ort", "ov-cpu/int8", "torch-cuda/fp32", "ort-cuda/fp32",
                          "ort-cuda/fp16", "trt/fp32", "trt/fp16", "trt/int8",
                          "trt-rtx/fp16", "trt-rtx/int8",
                          "ort-trt-ep/fp32"]
    assert rows["torch/fp32"][4] == "1.00×"
    assert rows["ort-cpu/fp32"][4] == "2.00×" and rows["ort-cpu/fp32"][7] == "2.00×"  # per patch and per image
    assert rows["ort-cpu/int8-ort"][4] == "2.22×"
    assert rows["trt/fp16"][2] == "SKIPPED"
    assert rows["torch/fp32"][2].startswith("ok (OOM")


def test_markdown_sections_and_rows(synthetic_run):
    md = markdown_report(synthetic_run)
    for title in ("Speed-ups over the PyTorch reference", "Targets", "Latency: encoder", "Latency: head",
                  "End to end per photo", "Search strategies against `full`", "Drift against the reference",
                  "Frame", "Skipped, out of memory and failed", "Notes"):
        assert f"## {title}" in md
    speedups = _section(md, "Speed-ups")
    assert speedups.count("\n| `") == 17 + 2  # every target, then the by-batch table of the two measured ones
    encoder = _section(md, "Latency: encoder")
    assert encoder.count("\n| `") == 12  # 3 targets x 4 batches; the OOM row is listed with the problems
    problems = _section(md, "Skipped, out of memory")
    assert "| `torch/fp32` | latency | encoder b64 | OOM |" in problems
    assert problems.count("SKIPPED") == 3 and "tensorrt: not installed" in problems
    drift = _section(md, "Drift against the reference")
    assert "| `ort-cpu/int8-ort` | PASS |" in drift and "| 2.00 | 2 | 0% | 2 |" in drift
    assert "UNTRAINED" in md and "VNNI: no" in md


def test_target_checks(synthetic_run):
    checks = {c[0].split(" ")[0] + c[0].split(" ")[1]: c for c in target_checks(synthetic_run)}
    assert checks["ORTFP32"][1:] == ["2.00×", "PASS"]
    assert checks["coarse-to-fine≥"][2] == "PASS"  # 202/24 = 8.4x fewer passes, same JND on both photos
    assert checks["ORTINT8"][2].startswith("not applicable: this CPU has no VNNI")


def test_strategy_summary(synthetic_run):
    c2f = next(s for s in strategy_summary(synthetic_run)
               if s["target"] == "ort-cpu/fp32" and s["strategy"] == "coarse-to-fine")
    assert c2f["reduction"] == pytest.approx(202 / 24)
    assert (c2f["same_jnd"], c2f["compared"], c2f["max_dqf"]) == (2, 2, 0)


def test_csv_has_every_row_and_column(synthetic_run):
    table = list(csv.reader(io.StringIO(csv_text(synthetic_run.rows))))
    assert tuple(table[0]) == COLUMNS
    assert len(table) == len(synthetic_run.rows) + 1
    oom = next(r for r in table[1:] if r[COLUMNS.index("status")] == "oom")
    assert oom[COLUMNS.index("batch")] == "64" and oom[COLUMNS.index("p50_ms")] == ""


def test_json_round_trip(synthetic_run, tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(synthetic_run.to_dict()))
    again = read_run(path)
    assert again.rows == synthetic_run.rows
    assert again.environment == synthetic_run.environment
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(UsageError, match="not an sgjnd bench result"):
        read_run(tmp_path / "other.json")


def _slower(run: BenchRun, target: str, factor: float) -> BenchRun:
    rows = []
    for r in run.rows:
        if r.target == target and r.suite in ("latency", "e2e") and r.status == "ok":
            r = dataclasses.replace(r, p50_ms=r.p50_ms * factor if r.p50_ms else None,
                                    total_ms=r.total_ms * factor if r.total_ms else None)
        rows.append(r)
    return dataclasses.replace(run, rows=rows)


def test_compare_flags_regressions_and_improvements(synthetic_run):
    new = _slower(_slower(synthetic_run, "ort-cpu/fp32", 1.5), "torch/fp32", 0.5)
    new.rows = [r for r in new.rows if not (r.target == "ort-cpu/int8-ort" and r.graph == "head" and r.batch == 1)]
    changes = compare_runs(synthetic_run, new, threshold=0.10)
    by_label = {c.label: c for c in changes}
    slow = by_label["latency ort-cpu/fp32 encoder b16"]
    assert (slow.verdict, slow.metric) == ("regression", "p50_ms") and slow.ratio == pytest.approx(1.5)
    assert by_label["e2e ort-cpu/fp32 coarse-to-fine a.png"].verdict == "regression"
    assert by_label["latency torch/fp32 encoder b16"].verdict == "improvement"
    assert by_label["latency ort-cpu/int8-ort encoder b16"].verdict == "same"
    assert by_label["latency ort-cpu/int8-ort head b1"].verdict == "missing"
    assert len(regressions(changes)) == 4 * 2 + 4  # encoder+head at 4 batches, 4 e2e rows
    md = compare_markdown(changes, 0.10, "old.json", "new.json")
    assert "Regressions: 12" in md and "| latency ort-cpu/fp32 encoder b16 | p50_ms |" in md


def test_compare_within_threshold_and_status_change(synthetic_run):
    assert not regressions(compare_runs(synthetic_run, _slower(synthetic_run, "ort-cpu/fp32", 1.05), 0.10))
    new = dataclasses.replace(synthetic_run, rows=[
        dataclasses.replace(r, status="oom", p50_ms=None) if r.target == "ort-cpu/fp32" and r.batch == 32
        and r.graph == "encoder" else r for r in synthetic_run.rows])
    flagged = regressions(compare_runs(synthetic_run, new, 0.10))
    assert [(c.label, c.verdict, c.detail) for c in flagged] == [
        ("latency ort-cpu/fp32 encoder b32", "status", "ok -> oom")]


def test_speedup_at_every_batch_and_peak_share_only_for_fp32(synthetic_run):
    md = markdown_report(synthetic_run)
    assert "| target | b1 | b8 | b16 | b32 |" in md
    assert "| `ort-cpu/fp32` | 2.00× | 2.00× | 2.00× | 2.00× |" in md
    encoder = _section(md, "Latency: encoder")
    int8_row = next(line for line in encoder.splitlines() if line.startswith("| `ort-cpu/int8-ort` | 16 |"))
    fp32_row = next(line for line in encoder.splitlines() if line.startswith("| `ort-cpu/fp32` | 16 |"))
    assert int8_row.split("|")[10].strip() == "–" and fp32_row.split("|")[10].strip() == "100 %"
