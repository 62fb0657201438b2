"""The dynamic batcher: concurrent calls share backend runs, each caller gets its own rows, failures stay contained."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from sgjnd.errors import BackendError, UsageError
from sgjnd.runtime.backends.base import Backend
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.serve.batcher import DynamicBatcher, RequestTimeout, batched_models, request_deadline
from sgjnd.spec import ModelSpec, read_sidecar


class FakeHead(Backend):
    """A head whose outputs are row sums (so each caller's rows are recognisable), slow enough to pile calls up."""

    name = "fake"

    def __init__(self, model: ModelSpec, *, delay: float = 0.02, max_batch: int | None = None) -> None:
        super().__init__(Path("fake.onnx"), model, model.graph("head"))
        self.delay = delay
        self.limit = max_batch
        self.runs: list[int] = []
        self.fail_next = False

    @property
    def max_batch_size(self) -> int | None:
        return self.limit

    def _load(self) -> None:
        pass

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.runs.append(len(feeds["f_ref"]))
        time.sleep(self.delay)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("device lost")
        return {"q": feeds["f_ref"].sum(axis=1), "w": feeds["f_dis"].sum(axis=1)}


@pytest.fixture(scope="module")
def model_spec(tiny_onnx_dir: Path) -> ModelSpec:
    return read_sidecar(tiny_onnx_dir / "head.onnx", verify_hash=False).model


def feeds_for(model: ModelSpec, caller: int, rows: int) -> dict[str, np.ndarray]:
    base = np.full((rows, model.feature_dim), float(caller), dtype=np.float32)
    return {"f_ref": base + np.arange(rows, dtype=np.float32)[:, None], "f_dis": -base}


def test_concurrent_calls_share_runs_and_get_their_own_rows(model_spec: ModelSpec) -> None:
    inner = FakeHead(model_spec)
    results: dict[int, dict[str, np.ndarray]] = {}
    start = threading.Barrier(8)
    with inner, DynamicBatcher(inner, inner.graph, max_batch=8, max_delay_ms=200) as batcher:

        def call(c: int) -> None:
            start.wait(timeout=30)
            results[c] = batcher.infer(feeds_for(model_spec, c, 2))

        threads = [threading.Thread(target=call, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    d = model_spec.feature_dim
    for c in range(8):
        np.testing.assert_array_equal(results[c]["q"], [c * d, (c + 1) * d])
        np.testing.assert_array_equal(results[c]["w"], [-c * d, -c * d])
    assert sum(inner.runs) == 16
    assert max(inner.runs) <= 8  # calls are merged up to max_batch, never beyond
    assert len(inner.runs) < 8  # and they were merged


def test_max_batch_one_runs_rows_alone_and_refuses_bigger_calls(model_spec: ModelSpec) -> None:
    inner = FakeHead(model_spec, delay=0.0)
    with inner, DynamicBatcher(inner, inner.graph, max_batch=1, max_delay_ms=5) as batcher:
        assert batcher.preferred_batch_size == 1
        for c in range(3):
            batcher.infer(feeds_for(model_spec, c, 1))
        with pytest.raises(UsageError, match="exceeds"):
            batcher.infer(feeds_for(model_spec, 0, 2))
    assert inner.runs == [1, 1, 1]


def test_backend_failure_fails_its_callers_and_the_worker_goes_on(model_spec: ModelSpec) -> None:
    inner = FakeHead(model_spec, delay=0.0)
    with inner, DynamicBatcher(inner, inner.graph, max_batch=4, max_delay_ms=0) as batcher:
        inner.fail_next = True
        with pytest.raises(BackendError, match="device lost"):
            batcher.infer(feeds_for(model_spec, 1, 2))
        assert batcher.infer(feeds_for(model_spec, 1, 2))["q"].shape == (2,)


def test_deadline_stops_a_call_before_the_backend(model_spec: ModelSpec) -> None:
    inner = FakeHead(model_spec, delay=0.0)
    with (
        inner,
        DynamicBatcher(inner, inner.graph, max_batch=4) as batcher,
        request_deadline(time.monotonic() - 1),
        pytest.raises(RequestTimeout),
    ):
        batcher.infer(feeds_for(model_spec, 1, 1))
    assert inner.runs == []


def test_misuse_is_refused(model_spec: ModelSpec) -> None:
    inner = FakeHead(model_spec, max_batch=8)
    with pytest.raises(UsageError, match="maximum batch 8"):
        DynamicBatcher(inner, inner.graph, max_batch=16)
    with pytest.raises(UsageError, match="positive"):
        DynamicBatcher(inner, inner.graph, max_batch=0)
    with pytest.raises(UsageError, match="delay"):
        DynamicBatcher(inner, inner.graph, max_batch=4, max_delay_ms=-1)
    with pytest.raises(BackendError, match="not running"):
        DynamicBatcher(inner, inner.graph, max_batch=4).infer(feeds_for(model_spec, 0, 1))


def test_predictions_through_the_batcher_equal_direct_ones(
    tiny_onnx_dir: Path, predict_config: PredictConfig, jpeg_image: bytes, png_image: bytes
) -> None:
    """Concurrent requests over batched graphs give the results of a plain predictor, image by image."""
    images = [jpeg_image, png_image] * 2
    with open_model("onnxruntime", tiny_onnx_dir, threads=1) as models:
        direct = [JNDPredictor(models, predict_config).predict(data) for data in images[:2]]
        runs: list[tuple[str, int, int]] = []
        with batched_models(
            models, max_batch=16, max_delay_ms=100, observer=lambda g, r, c, s: runs.append((g, r, c))
        ) as batched:
            predictor = JNDPredictor(batched, predict_config)
            got: dict[int, object] = {}
            start = threading.Barrier(len(images))

            def predict(i: int) -> None:
                start.wait(timeout=30)
                got[i] = predictor.predict(images[i])

            threads = [threading.Thread(target=predict, args=(i,)) for i in range(len(images))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
    for i, result in got.items():
        want = direct[i % 2]
        assert result.jnd_qf == want.jnd_qf and result.recommended_qf == want.recommended_qf  # type: ignore[attr-defined]
        for qf, score in want.scores.items():
            assert result.scores[qf] == pytest.approx(score, abs=1e-5)  # type: ignore[attr-defined]
    assert len(got) == len(images)
    assert any(calls > 1 for _, _, calls in runs)  # requests really shared backend runs
