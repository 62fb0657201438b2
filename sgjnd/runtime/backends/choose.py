"""Choose a CPU backend and precision for a model directory: what ``--backend auto`` runs.

The rule (:func:`choose_cpu_backend`, pure):

1. **Candidates** are backend × precision pairs on the CPU: ``openvino`` and ``onnxruntime`` (torch needs a
   checkpoint and is the slow reference; TensorRT needs a GPU). A pair counts only when its backend is installed and
   its graphs are in the model directory (``bf16`` runs the fp32 graphs, on ``openvino`` only, and only on a CPU with
   AVX-512-BF16 or AMX).
2. **Accuracy gate**: ``fp32`` always passes (it is the reference, checked against PyTorch at export). Every other
   precision passes only when ``sgjnd calibrate`` recorded a passing report for it in the model directory
   (``calibration.<precision>.json`` with ``"passed": true``) for the graphs that are there now.
3. **Speed**: the first eligible pair in the order measured for this kind of CPU (:data:`CPU_ORDER`): with AMX,
   OpenVINO INT8 and BF16 lead (about 4× ONNX Runtime FP32 on a 2-core Xeon, issue 19); with VNNI, OpenVINO INT8,
   then ONNX Runtime INT8, then BF16 where the CPU has it; without VNNI, FP32 only (INT8 gains little there and
   ONNX Runtime's U8S8 kernels may saturate), ONNX Runtime first.

:func:`choose_for_model_dir` gathers the facts (installed backends, graphs, reports, CPU flags) and applies the rule.
Imports nothing heavy.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgjnd.errors import UsageError
from sgjnd.runtime.modeldir import INFERENCE_ONLY_PRECISIONS, PRECISIONS, available_precisions

CpuKind = Literal["amx", "vnni", "plain"]
Pair = tuple[str, str]
"""(backend, precision)."""

CPU_ORDER: dict[CpuKind, tuple[Pair, ...]] = {
    "amx": (("openvino", "int8-ort"), ("openvino", "bf16"), ("openvino", "int8"), ("onnxruntime", "int8-ort"),
            ("onnxruntime", "fp32"), ("openvino", "fp32")),
    "vnni": (("openvino", "int8-ort"), ("openvino", "int8"), ("onnxruntime", "int8-ort"), ("openvino", "bf16"),
             ("openvino", "fp32"), ("onnxruntime", "fp32")),
    "plain": (("onnxruntime", "fp32"), ("openvino", "fp32")),
}
"""Backend × precision pairs from fastest to slowest, per kind of CPU (see benchmarks/results/2026-12-07-openvino-cpu
and 2026-11-26-h200-host-vnni)."""

BACKEND_MODULES: dict[str, str] = {"openvino": "openvino", "onnxruntime": "onnxruntime"}
"""Candidate backends -> the module whose presence means the backend is installed."""


@dataclass(frozen=True)
class Gate:
    """The accuracy gate of one precision, as recorded in the model directory.

    Attributes:
        passed: whether the recorded report passed for the graphs present.
        note: a short reason (``worst |ΔQF| 2``, ``no calibration.int8.json``, ...).
    """

    passed: bool
    note: str


@dataclass(frozen=True)
class Choice:
    """What :func:`choose_cpu_backend` picked, and why.

    Attributes:
        backend: the backend to run.
        precision: the precision to run (a model-directory precision, or ``bf16``).
        reason: one line saying why this pair.
        ranked: every eligible pair, best first (the pick is the first).
        passed_over: faster pairs that were not eligible -> why not.
    """

    backend: str
    precision: str
    reason: str
    ranked: tuple[Pair, ...] = ()
    passed_over: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """``auto: openvino int8-ort (...)``, for the console."""
        return f"auto: {self.backend} {self.precision}: {self.reason}"


def cpu_kind(flags: Collection[str]) -> CpuKind:
    """``amx`` (AMX tiles), ``vnni`` (AVX-512 VNNI or AVX-VNNI) or ``plain`` from the CPU's flags."""
    present = set(flags)
    if present & {"amx_int8", "amx_bf16"}:
        return "amx"
    if present & {"avx512_vnni", "avx_vnni"}:
        return "vnni"
    return "plain"


def choose_cpu_backend(
    *,
    installed: Collection[str],
    precisions: Collection[str],
    gates: Mapping[str, Gate],
    cpu_flags: Collection[str],
    precision: str | None = None,
) -> Choice:
    """Pick the fastest installed CPU backend × precision whose graphs passed the accuracy gate.

    Args:
        installed: backend names that are installed (``openvino``, ``onnxruntime``).
        precisions: model-directory precisions whose graphs exist (``fp32``, ``int8-ort``, ...).
        gates: precision -> its recorded accuracy gate; fp32 needs none (it is the reference).
        cpu_flags: the CPU's instruction-set flags (``/proc/cpuinfo`` names).
        precision: consider only pairs of this precision (in this CPU's order, then the pairs other CPUs rank);
            None chooses the precision too.

    Returns:
        The pick with a one-line reason, every eligible pair in order, and the faster pairs passed over.

    Raises:
        UsageError: nothing is eligible (no CPU backend installed, or no fp32 graphs).
    """
    kind = cpu_kind(cpu_flags)
    bf16_cpu = bool(set(cpu_flags) & {"avx512_bf16", "amx_bf16"})
    order = list(CPU_ORDER[kind])
    if precision is not None:
        others = [pair for pairs in CPU_ORDER.values() for pair in pairs if pair not in order]
        order = [pair for pair in (*order, *dict.fromkeys(others)) if pair[1] == precision]
    ranked: list[Pair] = []
    passed_over: dict[str, str] = {}
    for pair in order:
        why_not = _why_not(*pair, installed, precisions, gates, bf16_cpu)
        if why_not:
            if not ranked:  # only what would have been faster than the pick is worth saying
                passed_over[" ".join(pair)] = why_not
            continue
        ranked.append(pair)
    if not ranked:
        tried = "; ".join(f"{k}: {v}" for k, v in passed_over.items()) or f"no CPU backend runs {precision}"
        raise UsageError(
            f"--backend auto found nothing to run{f' at precision {precision}' if precision else ''} ({tried}). It "
            "needs openvino or onnxruntime installed (pip install 'sgjnd[openvino]' or 'sgjnd[ort]'), the fp32 "
            "graphs of `sgjnd export`, and for other precisions a passing `sgjnd calibrate` report"
        )
    backend, chosen = ranked[0]
    gate = gates.get(chosen) if chosen != "fp32" else None
    accuracy = f"accuracy gate passed ({gate.note})" if gate else "the fp32 reference"
    skipped = "; passed over: " + "; ".join(f"{k} ({v})" for k, v in passed_over.items()) if passed_over else ""
    reason = f"fastest eligible pair on a {_kind_text(kind)} CPU, {accuracy}{skipped}"
    return Choice(backend, chosen, reason, tuple(ranked), passed_over)


def _why_not(backend: str, precision: str, installed: Collection[str], precisions: Collection[str],
             gates: Mapping[str, Gate], bf16_cpu: bool) -> str:
    if backend not in installed:
        return f"{backend} is not installed"
    graphs = INFERENCE_ONLY_PRECISIONS.get(precision, precision)
    if graphs not in precisions:
        return f"no {graphs} graphs"
    if precision == "bf16" and not bf16_cpu:
        return "the CPU lacks AVX-512-BF16 and AMX"
    if precision == "fp32":
        return ""
    gate = gates.get(precision)
    if gate is None:
        how = {"bf16": "--precision bf16", "int8-ort": "--precision int8 --target ort-cpu",
               "int8": "--precision int8"}.get(precision, f"--precision {precision}")
        return f"no accuracy report calibration.{precision}.json (sgjnd calibrate DIR {how} records it)"
    return "" if gate.passed else f"accuracy gate failed: {gate.note}"


def _kind_text(kind: CpuKind) -> str:
    return {"amx": "AMX", "vnni": "VNNI (no AMX)", "plain": "no-VNNI"}[kind]


# -- facts from a model directory ------------------------------------------------------------------------------------


def report_path(model_dir: Path, precision: str) -> Path:
    """Where ``sgjnd calibrate`` records the accuracy report of ``precision``: ``calibration.<precision>.json``."""
    return Path(model_dir) / f"calibration.{precision}.json"


def gate_from_report(data: Mapping[str, Any], graph_sha256: Mapping[str, str] | None = None) -> Gate:
    """The gate a calibration report records.

    Args:
        data: the report's JSON (``sgjnd.calibration.report.CalibrationReport.to_dict``).
        graph_sha256: graph -> sha256 of the graphs present now; a report that records other hashes does not vouch
            for them. None skips the check.

    Returns:
        Passed or not, with the task-level figures or the reason.
    """
    recorded = (data.get("calibration") or {}).get("graph_sha256") or {}
    if graph_sha256 is not None and recorded:
        stale = [g for g, sha in recorded.items() if graph_sha256.get(g) not in (None, sha)]
        if stale:
            return Gate(False, f"the report is for other {'/'.join(stale)} graphs: run sgjnd calibrate again")
    targets = (data.get("comparison") or {}).get("targets") or [{}]
    task = targets[0].get("task") or {}
    figures = f"worst |ΔQF| {task['worst_qf']}, mean {float(task.get('mean_abs_qf', 0)):.2f}" if "worst_qf" in task \
        else ""
    if not data.get("passed"):
        return Gate(False, f"the recorded report failed{f' ({figures})' if figures else ''}")
    return Gate(True, figures or "report passed")


def gates_from_model_dir(model_dir: Path, precisions: Sequence[str]) -> dict[str, Gate]:
    """precision -> the gate recorded in ``model_dir`` (precisions without a readable report are left out)."""
    from sgjnd.spec import read_sidecar

    gates: dict[str, Gate] = {}
    for precision in precisions:
        path = report_path(model_dir, precision)
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            gates[precision] = Gate(False, f"{path.name} is unreadable ({exc})")
            continue
        graphs = INFERENCE_ONLY_PRECISIONS.get(precision, precision)
        hashes: dict[str, str] = {}
        for graph in ("encoder", "head"):
            sidecar = Path(model_dir) / (f"{graph}.onnx.json" if graphs == "fp32" else f"{graph}.{graphs}.onnx.json")
            if sidecar.is_file():
                hashes[graph] = read_sidecar(sidecar.with_suffix(""), verify_hash=False).artifact.sha256
        gates[precision] = gate_from_report(data if isinstance(data, dict) else {}, hashes)
    return gates


def installed_cpu_backends() -> list[str]:
    """The candidate backends whose library is installed (checked without importing it)."""
    return [name for name, module in BACKEND_MODULES.items() if importlib.util.find_spec(module) is not None]


def choose_for_model_dir(model_dir: Path, *, precision: str | None = None) -> Choice:
    """:func:`choose_cpu_backend` on the facts of ``model_dir`` and this machine.

    Args:
        model_dir: a model directory written by ``sgjnd export`` (and ``sgjnd calibrate``).
        precision: restrict the choice to this precision; None chooses it too.

    Raises:
        UsageError: not a directory, an unknown precision, or nothing eligible.
    """
    from sgjnd.runtime.cpu import cpu_info

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UsageError(f"--backend auto needs a model directory (sgjnd export CKPT -o DIR), got {model_dir}")
    present = available_precisions(model_dir)
    names = (*PRECISIONS, *INFERENCE_ONLY_PRECISIONS)
    if precision is not None and precision not in names:
        raise UsageError(f"unknown precision {precision!r}: expected one of {', '.join(names)}")
    gates = gates_from_model_dir(model_dir, [p for p in names if p != "fp32"])
    return choose_cpu_backend(installed=installed_cpu_backends(), precisions=present, gates=gates,
                              cpu_flags=cpu_info()["flags"], precision=precision)


__all__ = [
    "CPU_ORDER",
    "Choice",
    "Gate",
    "choose_cpu_backend",
    "choose_for_model_dir",
    "cpu_kind",
    "gate_from_report",
    "gates_from_model_dir",
    "installed_cpu_backends",
    "report_path",
]
