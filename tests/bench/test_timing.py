"""Statistics and the timed loop, on synthetic timings and a fake clock."""

from __future__ import annotations

import math

import pytest

from sgjnd.bench.timing import LoopConfig, summarize, throughput, time_calls
from sgjnd.errors import UsageError


def test_percentiles_of_known_samples():
    stats = summarize([float(v) for v in range(1, 101)])  # 1..100 ms
    assert stats.n == 100
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)  # linear interpolation between order statistics
    assert stats.p99_ms == pytest.approx(99.01)
    assert (stats.min_ms, stats.max_ms) == (1.0, 100.0)
    assert stats.std_ms == pytest.approx(math.sqrt((100**2 - 1) / 12))


def test_single_sample_and_order_independence():
    assert summarize([7.0]).p99_ms == 7.0
    assert summarize([3.0, 1.0, 2.0]) == summarize([1.0, 2.0, 3.0])


@pytest.mark.parametrize("bad", [[], [1.0, -0.5], [float("nan")], [float("inf")]])
def test_summarize_refuses_bad_samples(bad):
    with pytest.raises(UsageError):
        summarize(bad)


def test_throughput():
    assert throughput(16, 100.0) == pytest.approx(160.0)  # 16 patches per 0.1 s
    assert throughput(1, 0.0) == math.inf
    with pytest.raises(UsageError):
        throughput(0, 10.0)
    with pytest.raises(UsageError):
        throughput(1, -1.0)


class FakeClock:
    """Advances by a fixed step per unit of work, so the loop's arithmetic is exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_warmup_is_excluded_and_samples_are_exact():
    clock = FakeClock()
    calls = []

    def work() -> None:
        calls.append(clock.now)
        clock.now += 0.010 * len(calls)  # 10, 20, 30, ... ms

    samples = time_calls(work, LoopConfig(warmup=2, iters=3, min_iters=1, max_seconds=None), clock=clock)
    assert len(calls) == 5
    assert samples == pytest.approx([30.0, 40.0, 50.0])


def test_time_budget_stops_after_min_iters():
    clock = FakeClock()

    def work() -> None:
        clock.now += 1.0  # one second per call

    samples = time_calls(work, LoopConfig(warmup=0, iters=100, min_iters=3, max_seconds=2.5), clock=clock)
    assert len(samples) == 3  # 3 s spent >= 2.5 s budget, and min_iters reached
    samples = time_calls(work, LoopConfig(warmup=0, iters=100, min_iters=5, max_seconds=0.5), clock=clock)
    assert len(samples) == 5  # the budget never cuts below min_iters


def test_sync_brackets_every_timed_call():
    events = []
    time_calls(lambda: events.append("call"), LoopConfig(warmup=1, iters=2, min_iters=1),
               sync=lambda: events.append("sync"))
    assert events == ["call", "sync", "call", "sync", "call", "sync"]


@pytest.mark.parametrize("kwargs", [{"warmup": -1}, {"iters": 0}, {"min_iters": 5, "iters": 3},
                                    {"max_seconds": 0.0}])
def test_loop_config_validation(kwargs):
    with pytest.raises(UsageError):
        LoopConfig(**kwargs)
