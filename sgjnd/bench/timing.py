"""Latency statistics and the timed loop (timm ``benchmark.py`` / trtexec style).

The loop runs ``warmup`` untimed calls, then timed calls until ``iters`` are done or ``max_seconds`` have passed
(but never fewer than ``min_iters``). Each call is bracketed by ``sync`` (a CUDA synchronise on a GPU, nothing on
a CPU) so that the wall-clock interval covers the device work. Statistics are percentiles of the per-call samples;
throughput is items per second at the mean latency (total items / total time of a sustained run).

This module imports only numpy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sgjnd.errors import UsageError

Clock = Callable[[], float]
"""Returns seconds, monotonic (``time.perf_counter``)."""


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in milliseconds.

    Attributes:
        n: number of timed calls (warm-up excluded).
        mean_ms: arithmetic mean.
        p50_ms: median (linear interpolation between order statistics, numpy's default).
        p90_ms: 90th percentile.
        p99_ms: 99th percentile; with fewer than 100 samples it interpolates towards the maximum.
        min_ms: fastest call.
        max_ms: slowest call.
        std_ms: population standard deviation.
    """

    n: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Percentiles, mean and spread of ``samples_ms``.

    Raises:
        UsageError: no samples, or a sample that is negative or not finite.
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise UsageError("cannot summarise an empty list of latencies: time at least one call")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise UsageError(f"latencies must be finite and >= 0 ms, got {values.tolist()[:8]}")
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
    return LatencyStats(
        n=int(values.size),
        mean_ms=float(values.mean()),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        min_ms=float(values.min()),
        max_ms=float(values.max()),
        std_ms=float(values.std()),
    )


def throughput(items_per_call: int, mean_ms: float) -> float:
    """Items per second when each call handles ``items_per_call`` items in ``mean_ms`` on average.

    Returns ``inf`` for a zero latency (a clock too coarse for the call).

    Raises:
        UsageError: ``items_per_call`` < 1 or ``mean_ms`` negative or not finite.
    """
    if items_per_call < 1:
        raise UsageError(f"items per call must be at least 1, got {items_per_call}")
    if not math.isfinite(mean_ms) or mean_ms < 0:
        raise UsageError(f"mean latency must be finite and >= 0 ms, got {mean_ms}")
    return math.inf if mean_ms == 0 else items_per_call * 1e3 / mean_ms


@dataclass(frozen=True)
class LoopConfig:
    """How long a timed loop runs.

    Attributes:
        warmup: untimed calls before timing (lazy initialisation, allocator growth, kernel selection).
        iters: the most timed calls.
        min_iters: the fewest timed calls, even past ``max_seconds``.
        max_seconds: stop timing once this much time has been spent on timed calls; None for no time limit.
    """

    warmup: int = 2
    iters: int = 20
    min_iters: int = 3
    max_seconds: float | None = 10.0

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise UsageError(f"warm-up must be >= 0 calls, got {self.warmup}")
        if self.iters < 1 or not 1 <= self.min_iters <= self.iters:
            raise UsageError(f"need 1 <= min_iters <= iters, got min_iters={self.min_iters} iters={self.iters}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise UsageError(f"max_seconds must be > 0 or None, got {self.max_seconds}")


def time_calls(
    fn: Callable[[], object],
    loop: LoopConfig,
    *,
    sync: Callable[[], None] | None = None,
    clock: Clock = time.perf_counter,
) -> list[float]:
    """Call ``fn`` ``loop.warmup`` times untimed, then time calls as ``loop`` says; returns milliseconds per call.

    Args:
        fn: one unit of work (one batch through a backend).
        loop: warm-up, iteration and time limits.
        sync: called before starting and before stopping each clock (``torch.cuda.synchronize``), so that
            asynchronous device work is inside the interval; None on a CPU.
        clock: the time source, in seconds.

    Returns:
        Per-call latencies in ms, in call order.
    """
    wait = sync or _nothing
    for _ in range(loop.warmup):
        fn()
    wait()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < loop.iters:
        start = clock()
        fn()
        wait()
        elapsed = clock() - start
        samples.append(elapsed * 1e3)
        spent += elapsed
        if len(samples) >= loop.min_iters and loop.max_seconds is not None and spent >= loop.max_seconds:
            break
    return samples


def _nothing() -> None:
    return None
