"""The quick load test: a mix of valid and invalid requests against a real service, batching on and off."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from serve_helpers import require_serve

from sgjnd.runtime.predictor import PredictConfig

require_serve()

LOADTEST = Path(__file__).resolve().parents[2] / "benchmarks" / "loadtest.py"


def load_loadtest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sgjnd_loadtest", LOADTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_load_has_no_5xx_no_lost_responses_and_batches_across_requests(
    tiny_onnx_dir: Path, predict_config: PredictConfig, photos: list[Path]
) -> None:
    loadtest = load_loadtest()
    payloads = loadtest.make_payloads(photos[:2], sizes=(96,))
    kinds = {p.kind for p in payloads}
    assert {"garbage", "bomb", "too-large", "bad-token"} <= kinds and {"jpeg", "png-multipart"} & kinds
    reports = [
        loadtest.run_mode(
            tiny_onnx_dir,
            mode,
            payloads,
            predict=predict_config,
            requests=24,
            concurrency=6,
            duration_s=60.0,
            timeout_s=60.0,
            workers=6,
            threads=1,
        )
        for mode in (loadtest.Mode("batched", 32, 10.0), loadtest.Mode("off", 1, 0.0))
    ]
    print(loadtest.format_table(reports))
    batched, off = reports
    for report in reports:
        assert report.sent == 24
        assert report.ok, report  # no 5xx, nothing lost, every status as expected
        assert report.statuses.keys() >= {"200", "401", "413", "422"}
    assert off.mean_batch_size == pytest.approx(1.0)
    assert batched.mean_requests_per_batch > 1.0  # concurrent requests shared encoder runs
    assert batched.mean_batch_size > off.mean_batch_size
