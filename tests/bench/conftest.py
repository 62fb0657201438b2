"""A synthetic benchmark run with known figures, for the report, plot and compare tests."""

from __future__ import annotations

from typing import Any

import pytest

from sgjnd.bench.config import PROFILES
from sgjnd.bench.results import BenchRun, Measurement

TARGETS = {
    "torch/fp32": ("torch", "fp32", 20.0),  # ms per patch at every batch
    "ort-cpu/fp32": ("onnxruntime", "fp32", 10.0),
    "ort-cpu/int8-ort": ("onnxruntime", "int8-ort", 9.0),
}


def latency(target: str, batch: int, per_patch: float, graph: str = "encoder", **extra: Any) -> Measurement:
    backend, precision, _ = TARGETS.get(target, ("tensorrt", "fp16", 0.0))
    call = per_patch * batch
    return Measurement(suite="latency", target=target, backend=backend, precision=precision, device="cpu",
                       graph=graph, batch=batch, n=10, mean_ms=call, p50_ms=call, p90_ms=call * 1.1,
                       p99_ms=call * 1.2, min_ms=call * 0.9, max_ms=call * 1.3, std_ms=0.1, per_patch_ms=per_patch,
                       throughput_per_s=1000.0 / per_patch, **extra)


def e2e(target: str, image: str, strategy: str, total: float, passes: int, jnd: int | None) -> Measurement:
    backend, precision, _ = TARGETS[target]
    return Measurement(suite="e2e", target=target, backend=backend, precision=precision, device="cpu", image=image,
                       strategy=strategy, patches=2, encoder_passes=passes, jnd_qf=jnd, decode_ms=5.0,
                       patches_ms=1.0, jpeg_ms=10.0, inference_ms=total - 20.0, search_ms=2.0, report_ms=2.0,
                       total_ms=total)


def build_run() -> BenchRun:
    rows: list[Measurement] = [
        Measurement(suite="frame", target="numpy-sgemm", library="numpy", size=1024, threads=2, gflops=100.0),
        Measurement(suite="frame", target="encoder-macs/torch", library="torch hooks", gmac=5.0, size=224),
    ]
    for target, (_, _, per_patch) in TARGETS.items():
        for batch in (1, 8, 16, 32):
            rows.append(latency(target, batch, per_patch, achieved_gflops=10.0 / per_patch * 100,
                                peak_fraction=0.1 / per_patch * 100))
            rows.append(latency(target, batch, per_patch / 100, graph="head"))
    rows.append(Measurement(suite="latency", target="torch/fp32", backend="torch", precision="fp32", device="cpu",
                            graph="encoder", batch=64, status="oom", reason="out of memory at batch 64: MemoryError"))
    for image, ref_jnd in (("a.png", 40), ("b.png", 60)):
        rows.append(e2e("torch/fp32", image, "coarse-to-fine", 2000.0, 24, ref_jnd))
        rows.append(e2e("ort-cpu/fp32", image, "coarse-to-fine", 1000.0, 24, ref_jnd))
        rows.append(e2e("ort-cpu/fp32", image, "full", 8000.0, 202, ref_jnd))
        rows.append(e2e("ort-cpu/int8-ort", image, "coarse-to-fine", 900.0, 24, ref_jnd + 2))
    for target in ("ort-cpu/fp32", "ort-cpu/int8-ort"):
        backend, precision, _ = TARGETS[target]
        for output, cos in (("features", 0.999999), ("q", 0.99999), ("w", 0.99999)):
            rows.append(Measurement(suite="drift", target=target, backend=backend, precision=precision,
                                    output=output, cosine=cos, max_abs=1e-6, mean_abs=1e-7, tolerance="atol=1e-04",
                                    passed=True))
        for image, ref_jnd in (("a.png", 40), ("b.png", 60)):
            diff = 0 if target == "ort-cpu/fp32" else 2
            rows.append(Measurement(suite="drift", target=target, backend=backend, precision=precision,
                                    output="jnd_qf", image=image, strategy="coarse-to-fine", jnd_qf=ref_jnd + diff,
                                    ref_jnd_qf=ref_jnd, qf_diff=diff))
    for suite in ("latency", "e2e", "drift"):
        rows.append(Measurement(suite=suite, target="trt/fp16", backend="tensorrt", precision="fp16", device="gpu",
                                status="skipped", reason="tensorrt: not installed (pip install 'sgjnd[trt]')"))
    config = PROFILES["full"].to_dict()
    return BenchRun(
        profile="synthetic",
        config=config,
        model={"name": "sgjnd_r50", "patch_size": 224, "feature_dim": 1024, "weights": "UNTRAINED: seed 0",
               "untrained": True, "encoder_gflop_per_patch": 10.0, "images": ["a.png", "b.png"]},
        environment={"cpu": {"model": "Test CPU", "cores": 2, "flags": ["avx2", "fma"], "vnni": False},
                     "gpu": {"available": False, "reason": "no driver"}, "libraries": {"numpy": "2"},
                     "threads": {"torch": {"intra_op": 2}}},
        rows=rows,
        notes=["synthetic figures"],
        started="2026-01-01T00:00:00+00:00",
        duration_s=61.0,
    )


@pytest.fixture
def synthetic_run() -> BenchRun:
    """A run whose figures are known: ORT FP32 is exactly 2x the reference per patch, INT8-ORT 2.22x."""
    return build_run()
