"""Writing a run: ``bench.json`` (everything), ``bench.csv`` (the rows), ``bench.md`` (the tables); and ``--compare``.

The Markdown report has, in order: the speed-ups over the PyTorch reference (per patch at the speed-up batch and
per image end to end), the checks of the project's performance targets, the latency tables, the end-to-end stage
breakdown, the search strategies against ``full``, the drift against the reference, the physical frame, every
SKIPPED/OOM/error row with its reason, and the notes.

:func:`compare_runs` matches the rows of two runs by :meth:`Measurement.key` and flags every timing that moved
beyond a threshold, and every row whose status got worse.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sgjnd.bench.config import REFERENCE
from sgjnd.bench.results import COLUMNS, BenchRun, Measurement
from sgjnd.fileio import write_atomic

STAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("decode", "decode_ms"),
    ("patches", "patches_ms"),
    ("jpeg", "jpeg_ms"),
    ("inference", "inference_ms"),
    ("search", "search_ms"),
    ("report", "report_ms"),
)
"""Predictor stages in pipeline order, with the row field that holds each."""

E2E_STRATEGY = "coarse-to-fine"
"""The strategy whose per-image time is compared across targets (every target runs it)."""


# -- files --------------------------------------------------------------------------------------------------------


def write_json(run: BenchRun, path: Path) -> Path:
    """Write the whole run (environment, config, notes, rows) as JSON, atomically."""
    write_atomic(path, (json.dumps(run.to_dict(), indent=1) + "\n").encode())
    return path


def csv_text(rows: Iterable[Measurement]) -> str:
    """The rows as CSV with the columns of :data:`COLUMNS`; None is an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        values = row.to_dict()
        writer.writerow([_csv_cell(values[c]) for c in COLUMNS])
    return buffer.getvalue()


def write_csv(run: BenchRun, path: Path) -> Path:
    """Write one CSV row per measurement, atomically."""
    write_atomic(path, csv_text(run.rows).encode())
    return path


def write_markdown(run: BenchRun, path: Path) -> Path:
    """Write the Markdown report, atomically."""
    write_atomic(path, markdown_report(run).encode())
    return path


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# -- tables -------------------------------------------------------------------------------------------------------


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are converted with ``str`` and ``|`` is escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |")
    return "\n".join(lines)


def _f(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}{suffix}"


def _x(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.2f}×"


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _targets(run: BenchRun) -> list[str]:
    names = [t["name"] for t in run.config.get("targets", [])]
    for row in run.rows:
        if row.suite not in ("frame", "jpeg") and row.target not in names:
            names.append(row.target)
    return names


def _labels(run: BenchRun) -> dict[str, str]:
    return {t["name"]: t.get("label") or t["name"] for t in run.config.get("targets", [])}


def _status(run: BenchRun, target: str) -> str:
    rows = [r for r in run.rows if r.target == target and r.suite in ("latency", "e2e", "drift")]
    if rows and all(r.status == "skipped" for r in rows):
        return "SKIPPED"
    bad = sorted({r.status.upper() for r in rows if r.status in ("oom", "error")})
    return "ok" + (f" ({', '.join(bad)} in part)" if bad else "") if rows else "–"


def _peak_share(row: Measurement | None, run: BenchRun | None = None) -> float | None:
    """Achieved share in % of the peak of the target's own arithmetic: the FP32 sgemm peak for FP32 targets, and for
    INT8 and BF16 targets the int8 or bf16 matrix-engine peak when ``run`` measured it (``openvino-int8-gemm``,
    ``openvino-bf16-gemm`` frame rows).

    Without that peak an INT8 or BF16 share is not shown (an FP32 peak does not bound integer or bf16 kernels), nor is
    one for the FP16 graph, which mixes precisions; their achieved FP32-equivalent GFLOP/s is still shown.
    """
    if row is None or row.peak_fraction is None:
        return None
    if row.precision == "fp32":
        return row.peak_fraction * 100
    kind = "int8" if row.precision.startswith("int8") else row.precision
    if run is not None and kind in ("int8", "bf16") and run.select("frame", target=f"openvino-{kind}-gemm",
                                                                    status="ok"):
        return row.peak_fraction * 100
    return None


def latency_at(run: BenchRun, target: str, batch: int, graph: str = "encoder") -> Measurement | None:
    """The ok latency row of ``target``/``graph`` at ``batch`` (no variant), or None."""
    for r in run.select("latency", target=target, graph=graph, batch=batch, variant="", status="ok"):
        return r
    return None


def e2e_mean_ms(run: BenchRun, target: str, strategy: str = E2E_STRATEGY) -> float | None:
    """Mean total milliseconds per image of ``target`` with ``strategy`` (ok rows)."""
    return _mean(r.total_ms for r in run.select("e2e", target=target, strategy=strategy, status="ok", variant=""))


def speedup_rows(run: BenchRun) -> list[list[str]]:
    """Rows of the speed-up table (see :func:`markdown_report`)."""
    batch = int(run.config.get("speedup_batch", 16))
    ref = latency_at(run, REFERENCE, batch)
    ref_e2e = e2e_mean_ms(run, REFERENCE)
    out = []
    labels = _labels(run)
    for target in _targets(run):
        row = latency_at(run, target, batch)
        e2e = e2e_mean_ms(run, target)
        per_patch = row.per_patch_ms if row else None
        speed = ref.per_patch_ms / per_patch if ref and ref.per_patch_ms and per_patch else None
        e2e_speed = ref_e2e / e2e if ref_e2e and e2e else None
        out.append([
            f"`{target}`", labels.get(target, target), _status(run, target), _f(per_patch, 2), _x(speed),
            _f(row.throughput_per_s if row else None, 1), _f(e2e, 0), _x(e2e_speed),
            _f(row.achieved_gflops if row else None, 1),
            _f(_peak_share(row, run), 0, " %"),
        ])
    return out


def _speedup_by_batch(run: BenchRun) -> str:
    """Encoder speed-up over the reference at every batch both ran (one batch alone is noisy on a shared machine)."""
    batches = sorted({int(r.batch) for r in run.select("latency", graph="encoder", status="ok") if r.batch})
    table = []
    for target in _targets(run):
        if target == REFERENCE or not run.select("latency", target=target, graph="encoder", status="ok"):
            continue
        cells = []
        for batch in batches:
            ref, row = latency_at(run, REFERENCE, batch), latency_at(run, target, batch)
            if ref and row and ref.per_patch_ms and row.per_patch_ms:
                cells.append(_x(ref.per_patch_ms / row.per_patch_ms))
            else:
                cells.append("–")
        table.append([f"`{target}`", *cells])
    if not table:
        return ""
    return ("Encoder speed-up over the reference at every batch (median call per patch, same run):\n\n"
            + md_table(["target", *[f"b{b}" for b in batches]], table))


def _speedup(run: BenchRun, target: str) -> float | None:
    batch = int(run.config.get("speedup_batch", 16))
    ref, row = latency_at(run, REFERENCE, batch), latency_at(run, target, batch)
    if ref is None or row is None or not ref.per_patch_ms or not row.per_patch_ms:
        return None
    return ref.per_patch_ms / row.per_patch_ms


def strategy_summary(run: BenchRun) -> list[dict[str, Any]]:
    """Per target and strategy: mean passes, passes of ``full`` over them, photos whose JND equals ``full``'s."""
    out = []
    for target in _targets(run):
        by_strategy: dict[str, list[Measurement]] = {}
        for r in run.select("e2e", target=target, status="ok", variant=""):
            by_strategy.setdefault(str(r.strategy), []).append(r)
        full = {r.image: r for r in by_strategy.get("full", [])}
        for strategy, rows in by_strategy.items():
            passes = _mean(float(r.encoder_passes) for r in rows if r.encoder_passes is not None)
            matched = [r for r in rows if r.image in full]
            same = sum(1 for r in matched if r.jnd_qf == full[r.image].jnd_qf)
            full_passes = _mean(float(full[r.image].encoder_passes or 0) for r in matched)
            out.append({
                "target": target, "strategy": strategy, "images": len(rows), "passes": passes,
                "reduction": full_passes / passes if full_passes and passes and matched else None,
                "same_jnd": same, "compared": len(matched), "total_ms": _mean(r.total_ms for r in rows),
                "max_dqf": max((abs((r.jnd_qf or 0) - (full[r.image].jnd_qf or 0)) for r in matched), default=None),
            })
    return out


def drift_summary(run: BenchRun) -> list[dict[str, Any]]:
    """Per target: tensor cosines and errors, PASS/FAIL, and the JND QF differences to the reference."""
    out = []
    for target in _targets(run):
        if target == REFERENCE:
            continue
        rows = run.select("drift", target=target)
        if not rows:
            continue
        tensors = {r.output: r for r in rows if r.output in ("features", "q", "w") and r.status == "ok"}
        diffs = [r.qf_diff for r in rows if r.output == "jnd_qf" and r.qf_diff is not None]
        problem = next((r for r in rows if r.status != "ok"), None)
        out.append({
            "target": target,
            "status": problem.status.upper() if problem and not tensors else "ok",
            "reason": problem.reason if problem and not tensors else "",
            "tensors": tensors,
            "passed": all(bool(r.passed) for r in tensors.values()) if tensors else None,
            "mean_abs_dqf": _mean(float(abs(d)) for d in diffs),
            "max_abs_dqf": max((abs(d) for d in diffs), default=None),
            "within_1": sum(1 for d in diffs if abs(d) <= 1) / len(diffs) if diffs else None,
            "images": len(diffs),
        })
    return out


def target_checks(run: BenchRun) -> list[list[str]]:
    """The project's performance targets, each with the measured figure and PASS / FAIL / not measured."""
    checks = []
    ort = _speedup(run, "ort-cpu/fp32")
    checks.append(["ORT FP32 ≥ 1.3× PyTorch eager per patch at batch "
                   f"{run.config.get('speedup_batch', 16)}", _x(ort),
                   "not measured" if ort is None else ("PASS" if ort >= 1.3 else "FAIL")])
    c2f = [s for s in strategy_summary(run) if s["strategy"] == "coarse-to-fine" and s["compared"]]
    if c2f:
        s = c2f[0]
        ok = s["reduction"] is not None and s["reduction"] >= 4 and s["same_jnd"] == s["compared"]
        checks.append([f"coarse-to-fine ≥ 4× fewer encoder passes than full, same JND QF (`{s['target']}`)",
                       f"{_x(s['reduction'])} fewer; same JND on {s['same_jnd']}/{s['compared']} photos",
                       "PASS" if ok else "FAIL"])
    else:
        checks.append(["coarse-to-fine ≥ 4× fewer encoder passes than full, same JND QF", "–",
                       "not measured (needs full and coarse-to-fine on one target)"])
    int8 = _speedup(run, "ort-cpu/int8-ort")
    vnni = bool(run.environment.get("cpu", {}).get("vnni"))
    verdict = ("not measured" if int8 is None else ("PASS" if int8 >= 5 else "FAIL")) if vnni else (
        "not applicable: this CPU has no VNNI (AVX2 only); the target is for VNNI/AMX CPUs")
    checks.append(["ORT INT8 ≥ 5× PyTorch eager per patch (VNNI CPUs only)", _x(int8), verdict])
    checks.append(_best_cpu_check(run, vnni))
    return checks


def _best_cpu_check(run: BenchRun, vnni: bool) -> list[str]:
    """Issue 19's target: the best CPU path ≥ 7× PyTorch eager on VNNI/AMX CPUs, else at least ORT FP32's speed."""
    targets = {r.target for r in run.rows if r.suite == "latency" and r.device == "cpu" and r.target != REFERENCE}
    speeds = {t: _speedup(run, t) for t in sorted(targets)}
    measured = {t: s for t, s in speeds.items() if s is not None}
    if not measured:
        return ["best CPU path ≥ 7× PyTorch eager per patch (VNNI/AMX), else ≥ ORT FP32", "–", "not measured"]
    best = max(measured, key=lambda t: measured[t])
    figure = f"{_x(measured[best])} (`{best}`; JND drift: see the drift table)"
    if vnni:
        return ["best CPU path ≥ 7× PyTorch eager per patch (VNNI/AMX CPUs)", figure,
                "PASS" if measured[best] >= 7 else "FAIL"]
    ort = measured.get("ort-cpu/fp32")
    verdict = "not measured (no ort-cpu/fp32)" if ort is None else ("PASS" if measured[best] >= ort else "FAIL")
    return ["best CPU path ≥ ORT FP32 per patch (CPUs without VNNI)", figure, verdict]


def markdown_report(run: BenchRun) -> str:
    """The whole report as Markdown."""
    parts = [_header(run)]
    batch = run.config.get("speedup_batch", 16)
    parts.append(f"## Speed-ups over the PyTorch reference (`{REFERENCE}`)\n\n"
                 f"Encoder per patch at batch {batch} (median latency / batch) and end to end per photo "
                 f"({E2E_STRATEGY} search, mean over photos). Achieved GFLOP/s = GFLOP per patch × patches/s; "
                 "% of peak against this machine's measured peak of the target's arithmetic (CPU targets: sgemm "
                 "for FP32, the int8/bf16 matrix-engine GEMM for INT8/BF16 where measured).\n\n"
                 + md_table(["target", "what", "status", f"ms/patch @{batch}", "speed-up", "patches/s",
                             "ms/image e2e", "speed-up e2e", "GFLOP/s", "% peak"], speedup_rows(run)))
    by_batch = _speedup_by_batch(run)
    if by_batch:
        parts.append(by_batch)
    parts.append("## Targets\n\n" + md_table(["target", "measured", "verdict"], target_checks(run)))
    for graph in ("encoder", "head"):
        rows = [r for r in run.rows if r.suite == "latency" and r.graph == graph]
        if rows:
            parts.append(f"## Latency: {graph}\n\nWarm-up excluded; milliseconds per call; throughput in patches/s"
                         + (" (host↔device copies shown where the backend measures them)" if graph == "encoder"
                            else "") + ".\n\n" + _latency_table(rows))
    e2e = _e2e_table(run)
    if e2e:
        parts.append("## End to end per photo\n\nMean milliseconds per photo and stage (the predictor's own timings), "
                     "encoder passes per photo and the encoder input they make (MiB: what a GPU backend copies host "
                     "to device; 1 byte per pixel and channel for uint8-input graphs, 4 for float32 ones). `jpeg` is "
                     "the time the encoder waited for JPEG trials: with OpenCV "
                     "they are made on a worker thread while the encoder runs; the `serial-jpeg` row of the same "
                     "target and strategy makes them in line, before and after side by side.\n\n" + e2e)
    jpeg = _jpeg_table(run)
    if jpeg:
        parts.append("## JPEG trials\n\nOne photo's trials for a whole `full` search, made each way the runtime "
                     "can, same pixels (`tests/runtime/test_jpeg_exact.py`).\n\n" + jpeg)
    strategies = strategy_summary(run)
    if strategies:
        parts.append("## Search strategies against `full`\n\n" + md_table(
            ["target", "strategy", "photos", "passes/photo", "full ÷ strategy", "same JND as full", "max |ΔQF|",
             "ms/photo"],
            [[f"`{s['target']}`", s["strategy"], s["images"], _f(s["passes"], 1), _x(s["reduction"]),
              f"{s['same_jnd']}/{s['compared']}" if s["compared"] else "–",
              s["max_dqf"] if s["max_dqf"] is not None else "–", _f(s["total_ms"], 0)] for s in strategies])
            + _jnd_per_photo(run))
    parts.append("## Drift against the reference\n\n" + _drift_table(run))
    parts.append("## Frame\n\n" + _frame_table(run))
    problems = [r for r in run.rows if r.status != "ok"]
    if problems:
        parts.append("## Skipped, out of memory and failed\n\n" + md_table(
            ["target", "suite", "graph / batch", "status", "reason"],
            [[f"`{r.target}`", r.suite, _where(r), r.status.upper(), r.reason] for r in problems]))
    if run.notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in run.notes))
    if run.files:
        parts.append("## Files\n\n" + "\n".join(f"- {k}: `{v}`" for k, v in run.files.items()))
    return "\n\n".join(parts) + "\n"


def _header(run: BenchRun) -> str:
    env, model = run.environment, run.model
    cpu = env.get("cpu", {})
    gpu = env.get("gpu", {})
    libs = env.get("libraries", {})
    threads = env.get("threads", {})
    devices = ", ".join(f"{d['name']} (cc {d['compute_capability']})" for d in gpu.get("devices", []))
    gpu_text = devices or f"none ({gpu.get('reason', 'not found')})"
    if gpu.get("cuda"):
        gpu_text += f"; CUDA driver {gpu['cuda'].get('cuda_driver')}, runtime {gpu['cuda'].get('cuda_runtime')}"
    versions = ", ".join(f"{k} {v}" for k, v in libs.items() if v)
    macs = [r for r in run.rows if r.suite == "frame" and r.gmac is not None]
    gflop = model.get("encoder_gflop_per_patch")
    lines = [
        f"# sgjnd bench: profile `{run.profile}`",
        "",
        f"- **Model**: `{model.get('name')}` (patch {model.get('patch_size')} px, features {model.get('feature_dim')});"
        f" encoder {_f(gflop, 2)} GFLOP per patch"
        + (f" ({', '.join(f'{r.gmac:.3f} GMAC by {r.library}' for r in macs)})" if macs else ""),
        f"- **Weights**: {model.get('weights') or '?'}"
        + (" — **untrained**: speeds are real, JND values are not perceptual." if model.get("untrained") else ""),
        f"- **CPU**: {cpu.get('model', '?')}, {cpu.get('cores', '?')} logical CPUs, flags "
        f"{', '.join(cpu.get('flags', [])) or 'none of interest'}; VNNI: {'yes' if cpu.get('vnni') else 'no'}",
        (f"- **Threads**: {threads['configured']} intra-op thread(s) for every backend and for the sgemm peak "
         f"(configured); {threads.get('logical_cpus', '?')} logical CPUs"
         if threads.get("configured") else
         f"- **Threads**: library defaults: torch {threads.get('torch', {}).get('intra_op', '?')}, ONNX Runtime "
         f"{threads.get('onnxruntime', {}).get('intra_op', '?')}, numpy BLAS "
         f"{threads.get('numpy_blas', {}).get('threads', '?')}"),
        f"- **GPU**: {gpu_text}",
        f"- **Libraries**: {versions}; sgjnd {env.get('sgjnd', '?')}; Python {env.get('python', '?')}",
        f"- **Run**: started {run.started}, {run.duration_s / 60:.1f} min; photos: "
        f"{', '.join(model.get('images', [])) or 'none'}",
    ]
    return "\n".join(lines)


def _where(r: Measurement) -> str:
    if r.suite == "latency":
        return f"{r.graph or ''} {('b' + str(r.batch)) if r.batch else ''} {r.variant}".strip()
    if r.suite == "e2e":
        return f"{r.strategy or ''} {r.image or ''} {r.variant}".strip()
    return r.output or ""


def _latency_table(rows: Sequence[Measurement]) -> str:
    copies = any(r.h2d_ms is not None or r.d2h_ms is not None for r in rows)
    header = ["target", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "ms/patch", "patches/s", "GFLOP/s",
              "% peak", "n"]
    if copies:
        header[8:8] = ["H2D ms", "compute ms", "D2H ms"]
    table = []
    for r in rows:
        if r.status != "ok":
            continue
        cells: list[Any] = [f"`{r.target}`" + (f" ({r.variant})" if r.variant else ""), r.batch, _f(r.p50_ms, 2),
                            _f(r.p90_ms, 2), _f(r.p99_ms, 2), _f(r.mean_ms, 2), _f(r.per_patch_ms, 3),
                            _f(r.throughput_per_s, 1), _f(r.achieved_gflops, 1),
                            _f(_peak_share(r), 0, " %"), r.n]
        if copies:
            cells[8:8] = [_f(r.h2d_ms, 3), _f(r.compute_ms, 3), _f(r.d2h_ms, 3)]
        table.append(cells)
    return md_table(header, table) if table else "No latency measured."


def _e2e_table(run: BenchRun) -> str:
    groups: dict[tuple[str, str, str], list[Measurement]] = {}
    for r in run.select("e2e", status="ok"):
        groups.setdefault((r.target, str(r.strategy), r.variant), []).append(r)
    if not groups:
        return ""
    table = []
    for (target, strategy, variant), rows in groups.items():
        stages = [_f(_mean(getattr(r, f) for r in rows), 1) for _, f in STAGE_FIELDS]
        mib = _mean(None if r.h2d_bytes is None else r.h2d_bytes / 2**20 for r in rows)
        table.append([f"`{target}`" + (f" ({variant})" if variant else ""), strategy, len(rows),
                      _f(_mean(float(r.encoder_passes or 0) for r in rows), 1), _f(mib, 1), *stages,
                      _f(_mean(r.total_ms for r in rows), 1)])
    return md_table(["target", "strategy", "photos", "passes", "input MiB", *[s for s, _ in STAGE_FIELDS],
                     "total ms"], table)


def _jpeg_table(run: BenchRun) -> str:
    rows = run.select("jpeg")
    if not rows:
        return ""
    base = next((r.trial_ms for r in rows if r.target == "jpeg/opencv" and r.status == "ok"), None)
    table = []
    for r in rows:
        if r.status != "ok":
            table.append([f"`{r.target}`", r.device, "–", "–", "–", "–", f"{r.status.upper()}: {r.reason}"])
            continue
        ratio = f"{base / r.trial_ms:.2f}x" if base and r.trial_ms else "–"
        table.append([f"`{r.target}`", r.device, str(r.n), _f(r.trial_ms, 3), _f(r.total_ms, 0), ratio, r.note])
    return md_table(["method", "device", "trials", "ms/trial", "ms/photo", "speed vs opencv", "note"], table)


def _jnd_per_photo(run: BenchRun) -> str:
    """JND QF and encoder passes per photo and strategy, on each target that ran ``full`` (blank when none did)."""
    parts = []
    for target in _targets(run):
        rows = run.select("e2e", target=target, status="ok", variant="")
        strategies = list(dict.fromkeys(str(r.strategy) for r in rows))
        if "full" not in strategies:
            continue
        cell = {(r.image, r.strategy): r for r in rows}
        images = list(dict.fromkeys(str(r.image) for r in rows))
        table = [[image, *[
            f"{_qf(cell[(image, st)].jnd_qf)} ({cell[(image, st)].encoder_passes})" if (image, st) in cell else "–"
            for st in strategies]] for image in images]
        parts.append(f"JND QF (encoder passes) per photo on `{target}`:\n\n" + md_table(["photo", *strategies], table))
    return "\n\n" + "\n\n".join(parts) if parts else ""


def _qf(value: int | None) -> str:
    return "none" if value is None else str(value)


def _drift_table(run: BenchRun) -> str:
    table = []
    for d in drift_summary(run):
        t = d["tensors"]
        if not t:
            table.append([f"`{d['target']}`", d["status"], *["–"] * 8, d["reason"][:120]])
            continue

        def cos(name: str, t: dict[str, Measurement] = t) -> str:
            return f"{t[name].cosine:.6f}" if name in t and t[name].cosine is not None else "–"

        q = t.get("q")
        table.append([
            f"`{d['target']}`", "PASS" if d["passed"] else "FAIL", cos("features"), cos("q"), cos("w"),
            f"{q.max_abs:.2g}" if q and q.max_abs is not None else "–",
            _f(d["mean_abs_dqf"], 2), d["max_abs_dqf"] if d["max_abs_dqf"] is not None else "–",
            f"{d['within_1']:.0%}" if d["within_1"] is not None else "–", d["images"],
            "; ".join(f"{k}: {v.tolerance}" for k, v in t.items()),
        ])
    header = ["target", "tensors", "cos features", "cos q", "cos w", "max |Δq|", "mean |ΔQF|", "max |ΔQF|",
              "within ±1 QF", "photos", "tolerance (per precision)"]
    intro = ("Tensors: the fixed drift batch through each target against the reference (cosine is the smallest "
             "per-patch value). JND QF: the same photos, patches and search as the reference.\n\n")
    return intro + (md_table(header, table) if table else "No drift measured.")


def _frame_table(run: BenchRun) -> str:
    table = []
    for r in run.select("frame"):
        if r.gflops is not None:
            unit = "GOP/s" if "int8" in r.target else "GFLOP/s"
            table.append([f"`{r.target}`", f"{r.gflops:.1f} {unit}", r.threads, r.note])
        elif r.gmac is not None:
            table.append([f"`{r.target}`", f"{r.gmac:.3f} GMAC = {2 * r.gmac:.3f} GFLOP/patch", "–", r.note])
        else:
            table.append([f"`{r.target}`", r.status.upper(), "–", r.reason])
    batch = int(run.config.get("speedup_batch", 16))
    for target in _targets(run):
        row = latency_at(run, target, batch)
        if row is not None and row.achieved_gflops is not None:
            share = _peak_share(row, run)
            kind = "FP32 sgemm" if row.precision == "fp32" else (
                "int8 GEMM" if row.precision.startswith("int8") else f"{row.precision} GEMM")
            share_text = f", {share:.0f}% of the {kind} peak" if share is not None else (
                ", integer kernels: not bounded by the FP32 peak" if row.precision.startswith("int8") else "")
            table.append([f"`{target}` encoder @{batch}", f"{row.achieved_gflops:.1f} GFLOP/s{share_text}", "–",
                          "achieved = FP32-equivalent GFLOP per patch × patches/s"])
    note = "For orientation: ResNet-50 at 224 px is about 4.1 GMAC (8.2 GFLOP) per image.\n\n"
    return note + md_table(["measurement", "value", "threads", "note"], table)


# -- compare ------------------------------------------------------------------------------------------------------

Direction = Literal["lower", "higher"]
Verdict = Literal["regression", "improvement", "same", "new", "missing", "status"]

METRICS: dict[str, tuple[str, Direction]] = {
    "latency": ("p50_ms", "lower"),
    "e2e": ("total_ms", "lower"),
    "frame": ("gflops", "higher"),
}
"""Per suite: the field compared and which direction is better."""

_RANK = {"ok": 0, "skipped": 1, "oom": 2, "error": 3}


@dataclass(frozen=True)
class Change:
    """One row of a comparison.

    Attributes:
        key: the row's identity (suite, target, graph, batch, variant, image, strategy, output, library).
        metric: the compared field.
        old: its value in the old run (None when absent).
        new: its value in the new run.
        ratio: new / old.
        verdict: regression, improvement or same (beyond / within the threshold), new or missing (row in one run
            only), or status (the row's status changed, e.g. ok -> oom).
        detail: status change or remark.
    """

    key: tuple[Any, ...]
    metric: str
    old: float | None
    new: float | None
    ratio: float | None
    verdict: Verdict
    detail: str = ""

    @property
    def label(self) -> str:
        """``latency torch/fp32 encoder b16``: the key's set fields, readable."""
        suite, target, graph, batch, variant, image, strategy, output, _library = self.key
        parts = [suite, target, graph, f"b{batch}" if batch is not None else None, variant, strategy, image, output]
        return " ".join(str(p) for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"row": self.label, "metric": self.metric, "old": self.old, "new": self.new, "ratio": self.ratio,
                "verdict": self.verdict, "detail": self.detail}


def compare_runs(old: BenchRun, new: BenchRun, threshold: float = 0.10) -> list[Change]:
    """Match rows by key and compare their timing (or peak) figures.

    A timing is a regression when it got worse by more than ``threshold`` (new/old > 1 + threshold for times,
    < 1 / (1 + threshold) for throughputs) and an improvement when it got better by as much. A row whose status got
    worse (ok -> skipped/oom/error) is a ``status`` change, and so counted with the regressions.

    Args:
        old: the baseline run.
        new: the run to judge.
        threshold: relative change that counts (0.10 = 10 %).
    """
    old_rows = {r.key(): r for r in old.rows if r.suite in METRICS}
    new_rows = {r.key(): r for r in new.rows if r.suite in METRICS}
    changes: list[Change] = []
    for key, n in new_rows.items():
        metric, direction = METRICS[n.suite]
        o = old_rows.get(key)
        new_value = getattr(n, metric)
        if o is None:
            changes.append(Change(key, metric, None, new_value, None, "new"))
            continue
        old_value = getattr(o, metric)
        if o.status != n.status:
            worse = _RANK.get(n.status, 3) > _RANK.get(o.status, 3)
            verdict: Verdict = "status" if worse else "improvement"
            changes.append(Change(key, metric, old_value, new_value, None, verdict, f"{o.status} -> {n.status}"))
            continue
        if old_value is None or new_value is None or old_value <= 0:
            continue
        ratio = new_value / old_value
        worse_by = ratio if direction == "lower" else 1 / ratio if ratio > 0 else math.inf
        if worse_by > 1 + threshold:
            verdict = "regression"
        elif worse_by < 1 / (1 + threshold):
            verdict = "improvement"
        else:
            verdict = "same"
        changes.append(Change(key, metric, old_value, new_value, ratio, verdict))
    for key, o in old_rows.items():
        if key not in new_rows:
            metric, _ = METRICS[o.suite]
            changes.append(Change(key, metric, getattr(o, metric), None, None, "missing"))
    return changes


def regressions(changes: Iterable[Change]) -> list[Change]:
    """The changes that are regressions or status regressions."""
    return [c for c in changes if c.verdict in ("regression", "status")]


def compare_markdown(changes: Sequence[Change], threshold: float, old_name: str, new_name: str) -> str:
    """A Markdown summary: counts, then the flagged rows (regressions first), then rows in one run only."""
    counts = {v: sum(1 for c in changes if c.verdict == v) for v in
              ("regression", "status", "improvement", "same", "new", "missing")}
    order: dict[str, int] = {"regression": 0, "status": 1, "improvement": 2}
    flagged = sorted((c for c in changes if c.verdict in order),
                     key=lambda c: (order[c.verdict], -(abs(math.log(c.ratio)) if c.ratio else 0)))
    lines = [
        f"# sgjnd bench: `{new_name}` against `{old_name}`",
        "",
        f"Threshold: ±{threshold:.0%}. Regressions: {counts['regression']}, status regressions: {counts['status']}, "
        f"improvements: {counts['improvement']}, unchanged: {counts['same']}, new rows: {counts['new']}, "
        f"missing rows: {counts['missing']}.",
        "",
    ]
    fmt: Callable[[float | None], str] = lambda v: "–" if v is None else f"{v:.4g}"  # noqa: E731
    if flagged:
        lines.append(md_table(["row", "metric", "old", "new", "new ÷ old", "verdict"],
                              [[c.label, c.metric, fmt(c.old), fmt(c.new), _x(c.ratio),
                                c.verdict.upper() + (f" ({c.detail})" if c.detail else "")] for c in flagged]))
    else:
        lines.append("Nothing moved beyond the threshold.")
    one_side = [c for c in changes if c.verdict in ("new", "missing")]
    if one_side:
        table = md_table(["row", "verdict"], [[c.label, c.verdict] for c in one_side])
        lines += ["", "Rows in one run only:", "", table]
    return "\n".join(lines) + "\n"


def compare_text(changes: Sequence[Change], threshold: float) -> str:
    """Plain lines for the terminal: one per flagged row, then a count."""
    lines = []
    for c in changes:
        if c.verdict in ("regression", "status", "improvement"):
            figure = f"{c.old:.4g} -> {c.new:.4g} ({c.ratio:.2f}x)" if c.ratio is not None and c.old is not None \
                and c.new is not None else c.detail
            lines.append(f"{c.verdict.upper():<12} {c.label}: {c.metric} {figure}")
    flagged = len(regressions(changes))
    lines.append(f"{flagged} regression(s), {sum(1 for c in changes if c.verdict == 'improvement')} improvement(s) "
                 f"beyond ±{threshold:.0%} over {sum(1 for c in changes if c.ratio is not None)} matched timings")
    return "\n".join(lines)
