"""The measurement grid: OOM and error handling with fake backends, skip reasons, and one real tiny run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fake_cpu

from sgjnd.bench.config import PROFILES, REFERENCE, BenchConfig, Target
from sgjnd.bench.prepare import Prepared
from sgjnd.bench.suite import (
    is_out_of_memory,
    measure_e2e,
    measure_latency,
    qf_drift_rows,
    unavailable_reason,
    unsupported_variant_rows,
)
from sgjnd.bench.timing import LoopConfig
from sgjnd.errors import BackendError
from sgjnd.runtime.backends.base import Backend, ModelBackends
from sgjnd.spec import ModelSpec

SPEC = ModelSpec(name="fake", patch_size=32, feature_dim=8)
LOOP = LoopConfig(warmup=1, iters=2, min_iters=1, max_seconds=None)
CPU = Target("fake/fp32", "fake", "fp32")
GPU = Target("fake-gpu/fp16", "tensorrt", "fp16", device="gpu")


class FakeBackend(Backend):
    """Returns zeros; raises ``error`` from batch ``fail_at`` on; optionally reports an H2D/compute/D2H split."""

    name = "fake"

    def __init__(self, graph: str = "encoder", *, fail_at: int | None = None, error: BaseException | None = None,
                 max_batch: int | None = None, split: bool = False, spec: ModelSpec = SPEC) -> None:
        super().__init__(Path("fake"), spec, spec.graph(graph))  # type: ignore[arg-type]
        self.fail_at, self.error, self._max, self.split = fail_at, error or MemoryError(), max_batch, split
        self.batches: list[int] = []

    @property
    def max_batch_size(self) -> int | None:
        return self._max

    def _load(self) -> None:
        pass

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        self.batches.append(n)
        if self.fail_at is not None and n >= self.fail_at:
            raise self.error
        if self.split:
            self.last_timings_ms = {"h2d_ms": 0.5, "compute_ms": 2.0, "d2h_ms": 0.25}
        if self.graph.name == "encoder":
            return {"features": np.zeros((n, self.model.feature_dim), np.float32)}
        return {"q": np.full(n, 0.9, np.float32), "w": np.ones(n, np.float32)}


def test_memory_error_at_batch_32_stops_the_series():
    backend = FakeBackend(fail_at=32)
    with backend:
        rows = measure_latency(CPU, backend, "encoder", SPEC, (1, 8, 16, 32, 64), LOOP)
    assert [(r.batch, r.status) for r in rows] == [(1, "ok"), (8, "ok"), (16, "ok"), (32, "oom")]
    assert "out of memory at batch 32: MemoryError" in rows[-1].reason and "64 not run" in rows[-1].reason
    assert 64 not in backend.batches
    assert all(r.p50_ms is not None and r.throughput_per_s for r in rows[:3])


def test_backend_oom_message_and_other_errors():
    ort_oom = BackendError("ONNX Runtime failed: RuntimeException: Failed to allocate memory for requested buffer")
    with FakeBackend(fail_at=8, error=ort_oom) as backend:
        rows = measure_latency(CPU, backend, "encoder", SPEC, (1, 8, 16), LOOP)
    assert [r.status for r in rows] == ["ok", "oom"]
    with FakeBackend(fail_at=8, error=BackendError("shape mismatch")) as backend:
        rows = measure_latency(CPU, backend, "encoder", SPEC, (1, 8, 16), LOOP)
    assert [r.status for r in rows] == ["ok", "error"] and "shape mismatch" in rows[-1].reason


@pytest.mark.parametrize("exc, expected", [
    (MemoryError(), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (type("OutOfMemoryError", (RuntimeError,), {})("boom"), True),
    (BackendError("failed"), False),
    (ValueError("bad shape"), False),
])
def test_is_out_of_memory(exc, expected):
    assert is_out_of_memory(exc) is expected


def test_is_out_of_memory_follows_the_cause():
    try:
        try:
            raise MemoryError
        except MemoryError as inner:
            raise BackendError("inference failed") from inner
    except BackendError as outer:
        assert is_out_of_memory(outer)


def test_batches_above_the_artifact_limit_are_skipped_rows():
    with FakeBackend(max_batch=16) as backend:
        rows = measure_latency(CPU, backend, "encoder", SPEC, (8, 16, 32), LOOP)
    assert [(r.batch, r.status) for r in rows] == [(8, "ok"), (16, "ok"), (32, "skipped")]
    assert "maximum batch 16" in rows[-1].reason


def test_copy_split_only_when_the_backend_measures_it():
    with FakeBackend(split=True) as backend:
        row = measure_latency(GPU, backend, "encoder", SPEC, (4,), LOOP)[0]
    assert (row.h2d_ms, row.compute_ms, row.d2h_ms) == (0.5, 2.0, 0.25)
    with FakeBackend() as backend:
        row = measure_latency(CPU, backend, "encoder", SPEC, (4,), LOOP)[0]
    assert (row.h2d_ms, row.compute_ms, row.d2h_ms) == (None, None, None)


def test_achieved_flops_and_peak_fraction():
    from sgjnd.bench.suite import FrameFigures

    with FakeBackend() as backend:
        row = measure_latency(CPU, backend, "encoder", SPEC, (4,), LOOP, frame=FrameFigures(2.0, 100.0))[0]
    assert row.achieved_gflops == pytest.approx(2.0 * row.throughput_per_s)
    assert row.peak_fraction == pytest.approx(row.achieved_gflops / 100.0)


def test_cuda_graphs_are_a_documented_skipped_row_on_gpu_targets():
    rows = unsupported_variant_rows(GPU, FakeBackend())
    assert [(r.variant, r.status) for r in rows] == [("cuda-graph", "skipped")]
    assert "CUDA graphs are not supported" in rows[0].reason
    assert unsupported_variant_rows(CPU, FakeBackend()) == []


def test_e2e_oom_stops_the_series(photos):
    spec = ModelSpec(name="fake", patch_size=64, feature_dim=8)
    models = ModelBackends(spec, FakeBackend(fail_at=1, spec=spec), FakeBackend("head", spec=spec))
    with models:
        rows = measure_e2e(CPU, models, "coarse-to-fine", photos[:3], 2)
    assert [r.status for r in rows] == ["oom"]
    assert rows[0].image == photos[0].name


def test_qf_drift_rows_pair_targets_with_the_reference():
    from sgjnd.bench.results import Measurement

    def row(target: str, image: str, jnd: int | None) -> Measurement:
        return Measurement(suite="e2e", target=target, image=image, strategy="coarse-to-fine", jnd_qf=jnd)

    rows = [row(REFERENCE, "a", 40), row(REFERENCE, "b", None), row("x", "a", 43), row("x", "b", 2), row("y", "c", 1)]
    drift = qf_drift_rows(rows)
    assert [(r.target, r.image, r.qf_diff) for r in drift] == [("x", "a", 3), ("x", "b", 2)]  # None counts as QF 0


# -- skip reasons -----------------------------------------------------------------------------------------------


def _prepared(tmp_path: Path, **kwargs: Any) -> Prepared:
    return Prepared(SPEC, "UNTRAINED", checkpoint=tmp_path / "x.pt", model_dir=tmp_path, **kwargs)


def test_forced_unavailable_backend_gives_a_reason(monkeypatch, tmp_path):
    from sgjnd.runtime.backends import registry

    monkeypatch.setitem(registry.BACKENDS, "onnxruntime", "sgjnd.no_such_module:OrtBackend")
    reason = unavailable_reason(Target("ort-cpu/fp32", "onnxruntime", "fp32", ("cpu",)), _prepared(tmp_path))
    assert reason is not None and "pip install 'sgjnd[ort]'" in reason


def test_missing_graphs_and_providers_give_reasons(tmp_path):
    pytest.importorskip("onnxruntime")
    prepared = _prepared(tmp_path, missing={"onnx:int8-ort": "calibration to int8-ort failed: no data"})
    assert unavailable_reason(Target("a", "onnxruntime", "int8-ort", ("cpu",)), prepared) == \
        "calibration to int8-ort failed: no data"
    assert "no fp16 onnx files" in str(unavailable_reason(Target("b", "onnxruntime", "fp16", ("cpu",)), prepared))
    reason = unavailable_reason(Target("c", "onnxruntime", "fp32", ("no-such-provider",)), prepared)
    assert reason is not None and "unknown ONNX Runtime execution provider" in reason


def test_unknown_backend_name_gives_a_reason(tmp_path):
    reason = unavailable_reason(Target("z", "caffe", "fp32"), _prepared(tmp_path))
    assert reason is not None and "unknown backend 'caffe'" in reason


def test_openvino_targets_give_reasons(monkeypatch, tmp_path):
    from sgjnd.runtime.backends import registry

    monkeypatch.setitem(registry.BACKENDS, "openvino", "sgjnd.no_such_module:OpenVinoBackend")
    reason = unavailable_reason(Target("ov", "openvino", "fp32"), _prepared(tmp_path))
    assert reason is not None and "pip install 'sgjnd[openvino]'" in reason
    monkeypatch.undo()
    pytest.importorskip("openvino")

    # bf16 runs the fp32 graphs: without them the reason names fp32; on a CPU without bf16 the reason names the flags.
    assert "no fp32 onnx files" in str(unavailable_reason(Target("ov", "openvino", "bf16"), _prepared(tmp_path)))
    prepared = _prepared(tmp_path)
    for name in ("encoder.onnx", "head.onnx"):
        (tmp_path / name).write_bytes(b"")
    fake_cpu(monkeypatch, {"model": "Test CPU", "flags": ["avx2"]})
    reason = unavailable_reason(Target("ov", "openvino", "bf16"), prepared)
    assert reason is not None and "Test CPU: it lacks avx512_bf16 and amx_bf16" in reason


def test_peaks_per_precision():
    from sgjnd.bench.suite import FrameFigures

    frame = FrameFigures(2.0, 100.0, {"int8": 400.0, "bf16": 200.0})
    assert [frame.peak_for(p) for p in ("fp32", "int8", "int8-ort", "bf16", "fp16")] == [100.0, 400.0, 400.0, 200.0,
                                                                                         None]
    assert FrameFigures(2.0, 100.0).peak_for("int8") is None  # not measured: no share against the FP32 peak


# -- one real run on the tiny model -----------------------------------------------------------------------------

TINY = dict(
    batch_sizes=(1, 4), warmup=0, iters=2, min_iters=1, max_seconds=0.5, prepare=(), e2e_images=1,
    e2e_max_patches=1, drift_patches=2, drift_qfs=(30,), peak_size=128, peak_repeats=1,
)


def _tiny_config(names: tuple[str, ...], **changes: Any) -> BenchConfig:
    base = PROFILES["quick"]
    targets = tuple(t for t in base.targets if t.name in names)
    plan = {"coarse-to-fine": ("*",), "full": (names[1],)}
    return base.replace(**{**TINY, "targets": targets, "e2e_strategies": plan, **changes})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from sgjnd.cli import main

    out = tmp_path_factory.mktemp("bench")
    config = _tiny_config((REFERENCE, "ort-cpu/fp32", "ort-cpu/int8-ort", "ov-cpu/fp32", "trt/fp16", "trt-rtx/int8"))
    (out / "config.json").write_text(__import__("sgjnd.bench.config", fromlist=["dump_config"]).dump_config(config))
    code = main(["bench", "--config", str(out / "config.json"), "-o", str(out), "-q"])
    assert code == 0
    return out


def test_tiny_run_writes_every_output(tiny_run):
    from sgjnd.bench.results import read_run

    for name in ("bench.json", "bench.csv", "bench.md", "latency_vs_batch.png", "stages_per_image.png"):
        assert (tiny_run / name).is_file(), name
    run = read_run(tiny_run / "bench.json")
    ok = {(r.target, r.graph, r.batch) for r in run.select("latency", status="ok")}
    assert {(t, g, b) for t in (REFERENCE, "ort-cpu/fp32") for g in ("encoder", "head") for b in (1, 4)} <= ok
    assert run.model["untrained"] and run.model["encoder_gflop_per_patch"] > 0
    assert run.environment["cpu"]["model"] and "threads" in run.environment and "gpu" in run.environment
    full = run.select("e2e", strategy="full", status="ok")
    assert len(full) == 1 and full[0].encoder_passes == 101  # one patch: reference + 100 QFs
    drift = {r.output: r for r in run.select("drift", target="ort-cpu/fp32")}
    assert drift["features"].passed and drift["q"].cosine > 0.9999 and drift["jnd_qf"].qf_diff == 0


def test_tiny_run_measures_the_jpeg_stage_and_the_overlap(tiny_run):
    from sgjnd.bench.results import read_run

    run = read_run(tiny_run / "bench.json")
    jpeg = {r.target: r for r in run.select("jpeg")}
    for method in ("jpeg/opencv", "jpeg/exact-numpy"):
        row = jpeg[method]
        assert row.status == "ok" and row.n == 100 and row.trial_ms > 0 and row.total_ms > 0  # 1 patch x 100 QFs
    assert jpeg["jpeg/exact-cuda"].status in ("ok", "skipped") and (jpeg["jpeg/exact-cuda"].reason or
                                                                    jpeg["jpeg/exact-cuda"].status == "ok")
    # the first CPU target runs its first strategy twice: trials overlapped (default) and in line; same JNDs
    overlapped = run.select("e2e", target=REFERENCE, strategy="coarse-to-fine", status="ok", variant="")
    serial = run.select("e2e", target=REFERENCE, strategy="coarse-to-fine", status="ok", variant="serial-jpeg")
    assert len(serial) == len(overlapped) == 1
    assert serial[0].jnd_qf == overlapped[0].jnd_qf and serial[0].encoder_passes == overlapped[0].encoder_passes
    for r in overlapped + serial:  # the torch reference on the CPU takes float32: 3 x s x s x 4 bytes per pass
        assert r.h2d_bytes == r.encoder_passes * 3 * 64 * 64 * 4
    exported = run.select("e2e", target="ort-cpu/fp32", status="ok")  # exported graphs take uint8 pixels: 1/4
    assert exported and all(r.h2d_bytes == r.encoder_passes * 3 * 64 * 64 for r in exported)
    text = (tiny_run / "bench.md").read_text()
    assert "## JPEG trials" in text and "serial-jpeg" in text and "input MiB" in text
    # the serial rows are a variant: they do not count as a second run of the strategy in the summaries
    assert not any(r.variant for r in run.rows if r.suite == "drift")


def test_tiny_run_reports_skipped_targets_with_reasons(tiny_run):
    import importlib.util

    from sgjnd.bench.results import read_run

    run = read_run(tiny_run / "bench.json")
    int8 = run.select(target="ort-cpu/int8-ort")
    assert {r.suite for r in int8} == {"latency", "e2e", "drift"} and all(r.status == "skipped" for r in int8)
    assert all("int8-ort" in r.reason for r in int8)
    md = (tiny_run / "bench.md").read_text()
    assert "| `trt/fp16` | TensorRT FP16 (strongly typed) | SKIPPED |" in md or "| `trt/fp16` |" in md
    rtx = run.select(target="trt-rtx/int8")
    assert (rtx and all(r.status == "skipped" for r in rtx)) or run.environment["gpu"].get("available")
    if importlib.util.find_spec("tensorrt_rtx") and not run.environment["gpu"].get("available"):
        assert all("no NVIDIA GPU here" in r.reason for r in rtx), [r.reason for r in rtx]  # not "no engine files"


def test_tiny_run_measures_openvino_beside_the_others(tiny_run):
    import importlib.util

    from sgjnd.bench.results import read_run

    run = read_run(tiny_run / "bench.json")
    rows = run.select(target="ov-cpu/fp32")
    engines = {r.target: r for r in run.select("frame") if r.target.startswith("openvino-")}
    assert set(engines) == {"openvino-sgemm", "openvino-int8-gemm", "openvino-bf16-gemm"}  # or rows saying why not
    if importlib.util.find_spec("openvino") is None:
        assert rows and all(r.status == "skipped" and "sgjnd[openvino]" in r.reason for r in rows)
        assert all(r.status == "skipped" and "not measured" in r.reason for r in engines.values())
        return
    latency = run.select("latency", target="ov-cpu/fp32", graph="encoder", status="ok")
    assert latency and all(r.achieved_gflops and r.achieved_gflops > 0 for r in latency)
    drift = {r.output: r for r in run.select("drift", target="ov-cpu/fp32")}
    assert drift["features"].passed and drift["jnd_qf"].qf_diff == 0
    assert engines["openvino-sgemm"].status == "ok" and engines["openvino-sgemm"].gflops > 0


def test_cli_compare_mode(tiny_run, tmp_path, capsys):
    import json

    from sgjnd.cli import main

    data = json.loads((tiny_run / "bench.json").read_text())
    for row in data["rows"]:
        if row["suite"] == "latency" and row["p50_ms"]:
            row["p50_ms"] *= 3.0
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(data))
    code = main(["bench", "--compare", str(tiny_run / "bench.json"), "--results", str(slower), "-o", str(tmp_path),
                 "--fail-on-regression"])
    out = capsys.readouterr().out
    assert code == 1
    assert "REGRESSION" in out and "p50_ms" in out
    assert (tmp_path / "compare.md").is_file() and (tmp_path / "compare.json").is_file()
    assert main(["bench", "--compare", str(tiny_run / "bench.json"), "--results", str(tiny_run / "bench.json"),
                 "-o", str(tmp_path), "--fail-on-regression"]) == 0


def test_cli_rejects_results_without_compare(tmp_path, capsys):
    from sgjnd.cli import main

    assert main(["bench", "--results", str(tmp_path / "x.json")]) == 2
    assert "--compare OLD.json" in capsys.readouterr().err


def test_run_with_a_backend_running_out_of_memory_at_batch_32(tiny_run):
    """The whole path: a fake backend raising MemoryError at batch 32 gives an OOM row, the run and report go on."""
    from sgjnd.bench.report import markdown_report
    from sgjnd.bench.suite import run_suite

    config = _tiny_config((REFERENCE, "ort-cpu/fp32"), batch_sizes=(1, 8, 32, 64), e2e_strategies={})

    def opener(target: Target, prepared: Prepared, config: BenchConfig) -> ModelBackends:
        fail = 32 if target.name == "ort-cpu/fp32" else None
        spec = prepared.spec
        return ModelBackends(spec, FakeBackend(fail_at=fail, spec=spec), FakeBackend("head", spec=spec))

    run = run_suite(config, tiny_run, show_progress=False, opener=opener)
    encoder = [(r.batch, r.status) for r in run.select("latency", target="ort-cpu/fp32", graph="encoder")]
    assert encoder == [(1, "ok"), (8, "ok"), (32, "oom")]
    head = [(r.batch, r.status) for r in run.select("latency", target="ort-cpu/fp32", graph="head")]
    assert head == [(1, "ok"), (8, "ok"), (32, "ok"), (64, "ok")]  # the head series is its own
    assert [r.batch for r in run.select("latency", target=REFERENCE, graph="encoder", status="ok")] == [1, 8, 32, 64]
    assert "| `ort-cpu/fp32` | latency | encoder b32 | OOM | out of memory at batch 32: MemoryError" in \
        markdown_report(run)
