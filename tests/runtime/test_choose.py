"""`--backend auto`: the pure ranking rule, the accuracy gate read from calibration reports, and the CLI wiring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sgjnd.errors import UsageError
from sgjnd.runtime.backends.choose import (
    CPU_ORDER,
    Gate,
    choose_cpu_backend,
    choose_for_model_dir,
    cpu_kind,
    gate_from_report,
    gates_from_model_dir,
)

VNNI = ("avx2", "fma", "avx512f", "avx512_vnni")
ZEN4 = (*VNNI, "avx512_bf16")
AMX = (*VNNI, "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
AVX2 = ("avx2", "fma")
BOTH = ("openvino", "onnxruntime")
ALL_GRAPHS = ("fp32", "int8", "int8-ort")
PASSED = {p: Gate(True, "worst |ΔQF| 1, mean 0.20") for p in ("int8", "int8-ort", "bf16")}


def test_cpu_kinds() -> None:
    assert (cpu_kind(AMX), cpu_kind(ZEN4), cpu_kind(("avx_vnni",)), cpu_kind(AVX2)) == ("amx", "vnni", "vnni",
                                                                                        "plain")


def test_int8_on_openvino_first_on_vnni_and_amx_cpus() -> None:
    for flags in (VNNI, ZEN4, AMX):
        choice = choose_cpu_backend(installed=BOTH, precisions=ALL_GRAPHS, gates=PASSED, cpu_flags=flags)
        assert (choice.backend, choice.precision) == CPU_ORDER[cpu_kind(flags)][0]
        assert choice.backend == "openvino" and choice.precision.startswith("int8")
        assert "accuracy gate passed (worst |ΔQF| 1" in choice.reason and not choice.passed_over
    assert choice.line().startswith("auto: openvino int8")


def test_without_vnni_only_fp32_onnxruntime_first() -> None:
    choice = choose_cpu_backend(installed=BOTH, precisions=ALL_GRAPHS, gates=PASSED, cpu_flags=AVX2)
    assert (choice.backend, choice.precision) == ("onnxruntime", "fp32")
    assert choice.ranked == (("onnxruntime", "fp32"), ("openvino", "fp32"))
    assert "no-VNNI CPU, the fp32 reference" in choice.reason


def test_a_failed_or_missing_gate_is_passed_over_and_said() -> None:
    gates = {"int8-ort": Gate(False, "the recorded report failed")}
    choice = choose_cpu_backend(installed=BOTH, precisions=("fp32", "int8-ort"), gates=gates, cpu_flags=VNNI)
    assert (choice.backend, choice.precision) == ("openvino", "fp32")
    assert choice.passed_over["openvino int8-ort"] == "accuracy gate failed: the recorded report failed"
    assert choice.passed_over["openvino int8"] == "no int8 graphs"
    assert "calibration.bf16.json" not in choice.passed_over["openvino bf16"]  # no bf16 flag: says that instead
    assert choice.passed_over["openvino bf16"] == "the CPU lacks AVX-512-BF16 and AMX"
    choice = choose_cpu_backend(installed=BOTH, precisions=("fp32",), gates={}, cpu_flags=ZEN4)
    assert "no accuracy report calibration.bf16.json (sgjnd calibrate DIR --precision bf16 records it)" in choice.reason


def test_bf16_needs_the_cpu_and_a_gate() -> None:
    gates = {"bf16": PASSED["bf16"]}
    choice = choose_cpu_backend(installed=BOTH, precisions=("fp32",), gates=gates, cpu_flags=ZEN4)
    assert (choice.backend, choice.precision) == ("openvino", "bf16")
    choice = choose_cpu_backend(installed=BOTH, precisions=("fp32",), gates=gates, cpu_flags=VNNI)
    assert choice.precision == "fp32"


def test_only_installed_backends_count() -> None:
    choice = choose_cpu_backend(installed=("onnxruntime",), precisions=ALL_GRAPHS, gates=PASSED, cpu_flags=AMX)
    assert (choice.backend, choice.precision) == ("onnxruntime", "int8-ort")
    assert choice.passed_over["openvino int8-ort"] == "openvino is not installed"
    with pytest.raises(UsageError, match=r"found nothing to run .*pip install 'sgjnd\[openvino\]'"):
        choose_cpu_backend(installed=(), precisions=ALL_GRAPHS, gates=PASSED, cpu_flags=AMX)


def test_a_precision_restricts_the_choice() -> None:
    choice = choose_cpu_backend(installed=BOTH, precisions=ALL_GRAPHS, gates=PASSED, cpu_flags=VNNI,
                                precision="int8-ort")
    assert (choice.backend, choice.precision) == ("openvino", "int8-ort")
    # Not in a no-VNNI CPU's order, but asked for: the pairs other CPUs rank still count.
    choice = choose_cpu_backend(installed=BOTH, precisions=ALL_GRAPHS, gates=PASSED, cpu_flags=AVX2,
                                precision="int8-ort")
    assert choice.precision == "int8-ort"
    with pytest.raises(UsageError, match=r"at precision bf16 .*the CPU lacks AVX-512-BF16 and AMX"):
        choose_cpu_backend(installed=BOTH, precisions=ALL_GRAPHS, gates=PASSED, cpu_flags=VNNI, precision="bf16")


def _report(passed: bool, sha: dict[str, str] | None = None, worst: int = 2) -> dict[str, object]:
    task = {"worst_qf": worst, "mean_abs_qf": 0.4}
    return {"passed": passed, "precision": "int8-ort", "comparison": {"targets": [{"task": task}]},
            "calibration": {"graph_sha256": sha or {}}}


def test_gate_from_report() -> None:
    assert gate_from_report(_report(True)) == Gate(True, "worst |ΔQF| 2, mean 0.40")
    assert not gate_from_report(_report(False)).passed
    now = {"encoder": "a", "head": "b"}
    assert gate_from_report(_report(True, {"encoder": "a", "head": "b"}), now).passed
    stale = gate_from_report(_report(True, {"encoder": "x", "head": "b"}), now)
    assert not stale.passed and "report is for other encoder graphs" in stale.note


def test_gates_and_choice_from_a_model_directory(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(tiny_onnx_dir, tmp_path / "model"))
    fp32_sha = {g: json.loads((model_dir / f"{g}.onnx.json").read_text())["artifact"]["sha256"]
                for g in ("encoder", "head")}
    (model_dir / "calibration.bf16.json").write_text(json.dumps(_report(True, fp32_sha)))
    (model_dir / "calibration.int8.json").write_text("{not json")
    gates = gates_from_model_dir(model_dir, ["int8", "int8-ort", "bf16"])
    assert gates["bf16"].passed and not gates["int8"].passed and "unreadable" in gates["int8"].note
    assert "int8-ort" not in gates
    choice = choose_for_model_dir(model_dir)
    assert choice.backend in ("openvino", "onnxruntime") and choice.precision in ("fp32", "bf16")
    with pytest.raises(UsageError, match="needs a model directory"):
        choose_for_model_dir(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="unknown precision 'fp8'"):
        choose_for_model_dir(model_dir, precision="fp8")


def test_cli_auto_prints_the_pick(tiny_onnx_dir: Path, photos: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from sgjnd.cli import main

    code = main(["predict", str(photos[0]), "--backend", "auto", "--model", str(tiny_onnx_dir), "--max-patches",
                 "1", "--search", "bisect"])
    assert code == 0
    err = capsys.readouterr().err
    assert "auto: " in err and "fastest eligible pair" in err


def test_registry_opens_auto_for_every_caller(tiny_onnx_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    from sgjnd.runtime.backends.registry import open_model

    with caplog.at_level("INFO", logger="sgjnd.runtime.backends.registry"):
        models = open_model("auto", tiny_onnx_dir, threads=1)  # what `sgjnd serve --backend auto` calls
    assert models.encoder.name in ("openvino", "onnxruntime")
    assert any(r.getMessage().startswith(f"auto: {models.encoder.name} fp32") for r in caplog.records)
