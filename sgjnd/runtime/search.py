"""The search over JPEG quality factors (DESIGN.md §1 sliding window, §3.5 strategies).

``S(QF)`` is the image-level probability that the JPEG at QF is perceptually lossless. A QF is *invisible* when
``S >= threshold``. A centred majority window of odd width W along the QF axis removes isolated flips. The JND is the
highest candidate QF still judged visible; the recommended quality is the next candidate (the first invisible one).

Strategies, each asking for scores in rounds so that the predictor can batch every QF of a round together:
- ``full``: every candidate QF in one round (the paper's form).
- ``coarse-to-fine``: candidates at decreasing steps (default every 16th, then every 4th inside the bracket that
  holds the crossing), then every QF of the last bracket plus W//2 on each side, where the window is applied.
- ``bisect``: binary search on raw decisions (assumes S rises with QF), then the same final window.
For a monotone S all three return the same JND as ``full``; the benchmark reports how far they depart on real data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sgjnd.errors import UsageError

Strategy = Literal["full", "coarse-to-fine", "bisect"]
STRATEGIES: tuple[Strategy, ...] = ("full", "coarse-to-fine", "bisect")

ScoreFn = Callable[[Sequence[int]], Mapping[int, float]]
"""Evaluates S at the given QFs (one round) and returns QF -> S."""


@dataclass(frozen=True)
class SearchConfig:
    """How the QF search runs.

    Attributes:
        strategy: full, coarse-to-fine or bisect.
        qfs: candidate quality factors, ascending, each in 1..100.
        window: width W of the centred majority window along the QF axis (odd; 1 disables it).
        threshold: S at or above which a QF counts as invisible.
        coarse_steps: candidate-index steps of the coarse levels of ``coarse-to-fine``, decreasing, each > 1.
    """

    strategy: Strategy = "full"
    qfs: tuple[int, ...] = tuple(range(1, 101))
    window: int = 5
    threshold: float = 0.5
    coarse_steps: tuple[int, ...] = (16, 4)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown search strategy {self.strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if not self.qfs:
            raise UsageError("the candidate QF list is empty: give at least one QF in 1..100")
        if any(not 1 <= q <= 100 for q in self.qfs) or list(self.qfs) != sorted(set(self.qfs)):
            raise UsageError(f"candidate QFs must be distinct, ascending and within 1..100, got {self.qfs}")
        if self.window < 1 or self.window % 2 == 0:
            raise UsageError(f"the majority window must be a positive odd width, got {self.window}")
        if not 0.0 < self.threshold < 1.0:
            raise UsageError(f"the threshold must lie strictly between 0 and 1, got {self.threshold}")
        if any(s <= 1 for s in self.coarse_steps) or list(self.coarse_steps) != sorted(self.coarse_steps, reverse=True):
            raise UsageError(f"coarse steps must be decreasing and each > 1, got {self.coarse_steps}")


@dataclass(frozen=True)
class SearchOutcome:
    """What a search found.

    Attributes:
        jnd_qf: the highest candidate QF judged visible; None when even the lowest candidate is invisible.
        recommended_qf: the first candidate QF above the JND; None when every candidate is visible.
        scores: S at every QF the search evaluated, ascending by QF.
        rounds: how many rounds of evaluation the search asked for.
    """

    jnd_qf: int | None
    recommended_qf: int | None
    scores: dict[int, float] = field(default_factory=dict)
    rounds: int = 0


def majority_filter(invisible: np.ndarray, window: int) -> np.ndarray:
    """Centred majority vote over ``window`` neighbours.

    The ends are extended by repeating the first and last decision, so a clean step at any QF, the first and last
    included, keeps its exact position (a truncated window would erase a one-QF step at the edge).
    """
    flags = np.asarray(invisible, dtype=bool)
    half = window // 2
    if half == 0 or flags.size == 0:
        return flags.copy()
    padded = np.concatenate((np.repeat(flags[:1], half), flags, np.repeat(flags[-1:], half)))
    counts = np.concatenate(([0], np.cumsum(padded, dtype=np.int64)))
    ones = counts[window:] - counts[:-window]
    return ones > half


def jnd_from_curve(
    qfs: Sequence[int], scores: Sequence[float], window: int, threshold: float
) -> tuple[int | None, int | None]:
    """JND and recommended QF of a fully evaluated, ascending curve (the ``full`` rule)."""
    filtered = majority_filter(np.asarray(scores) >= threshold, window)
    visible = np.flatnonzero(~filtered)
    if visible.size == 0:
        return None, qfs[0]
    i = int(visible[-1])
    return qfs[i], (qfs[i + 1] if i + 1 < len(qfs) else None)


class _Evaluator:
    """Caches scores by candidate index and counts rounds."""

    def __init__(self, qfs: Sequence[int], score_fn: ScoreFn, threshold: float) -> None:
        self.qfs = list(qfs)
        self.score_fn = score_fn
        self.threshold = threshold
        self.scores: dict[int, float] = {}
        self.rounds = 0

    def ensure(self, indices: Sequence[int]) -> None:
        todo = sorted({i for i in indices if 0 <= i < len(self.qfs) and self.qfs[i] not in self.scores})
        if not todo:
            return
        got = self.score_fn([self.qfs[i] for i in todo])
        self.rounds += 1
        for i in todo:
            self.scores[self.qfs[i]] = float(got[self.qfs[i]])

    def invisible(self, i: int) -> bool:
        return self.scores[self.qfs[i]] >= self.threshold


def run_search(config: SearchConfig, score_fn: ScoreFn) -> SearchOutcome:
    """Run the configured strategy, asking ``score_fn`` for S one round at a time."""
    ev = _Evaluator(config.qfs, score_fn, config.threshold)
    n = len(config.qfs)
    if config.strategy == "full" or n <= 2:
        ev.ensure(range(n))
        jnd, rec = jnd_from_curve(config.qfs, [ev.scores[q] for q in config.qfs], config.window, config.threshold)
        return SearchOutcome(jnd, rec, dict(sorted(ev.scores.items())), ev.rounds)
    if config.strategy == "coarse-to-fine":
        lo, hi = _bracket_coarse(ev, config.coarse_steps)
    else:
        lo, hi = _bracket_bisect(ev)
    jnd, rec = _refine(ev, lo, hi, config.window)
    return SearchOutcome(jnd, rec, dict(sorted(ev.scores.items())), ev.rounds)


def _bracket_coarse(ev: _Evaluator, steps: Sequence[int]) -> tuple[int, int]:
    """Narrow [lo, hi] (candidate indices; lo visible or -1, hi invisible or n) level by level."""
    lo, hi = -1, len(ev.qfs)
    for step in steps:
        first = max(lo, 0)
        last = min(hi, len(ev.qfs) - 1)
        points = list(range(first, last + 1, step))
        if points[-1] != last:
            points.append(last)
        ev.ensure(points)
        lo, hi = _crossing(ev, points, lo, hi)
        if hi - lo <= 1:
            break
    return lo, hi


def _bracket_bisect(ev: _Evaluator) -> tuple[int, int]:
    """Binary search for the last raw-visible index, one QF per round (assumes S rises with QF)."""
    n = len(ev.qfs)
    ev.ensure([0, n - 1])
    if ev.invisible(0):
        return -1, 0
    if not ev.invisible(n - 1):
        return n - 1, n
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ev.ensure([mid])
        if ev.invisible(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi


def _crossing(ev: _Evaluator, points: Sequence[int], lo: int, hi: int) -> tuple[int, int]:
    """The last visible point among ``points`` and the point after it, inside the current bracket."""
    visible = [i for i in points if not ev.invisible(i)]
    if not visible:
        return lo, points[0]
    last = visible[-1]
    after = [i for i in points if i > last]
    return last, (after[0] if after else hi)


def _refine(ev: _Evaluator, lo: int, hi: int, window: int) -> tuple[int | None, int | None]:
    """Evaluate every candidate of [lo, hi] plus W//2 around it and apply the window there.

    If the filtered decisions put the crossing at the edge of the bracket, the bracket moves that way and the
    step repeats, so a bracket misplaced by noise at coarse points is corrected.
    """
    n = len(ev.qfs)
    half = window // 2
    lo, hi = max(lo, 0), min(hi, n - 1)
    for _ in range(n + 1):  # each pass moves the bracket one way; n + 1 passes cover the whole axis
        a, b = max(lo - half, 0), min(hi + half, n - 1)
        ev.ensure(range(a, b + 1))
        flags = majority_filter(np.array([ev.invisible(i) for i in range(a, b + 1)]), window)
        visible = [a + k for k in range(lo - a, hi - a + 1) if not flags[k]]
        if visible and visible[-1] == hi and hi < n - 1:
            lo, hi = hi, min(hi + max(hi - lo, 1), n - 1)  # crossing lies above the bracket
            continue
        if not visible and lo > 0:
            lo, hi = max(lo - max(hi - lo, 1), 0), lo  # crossing lies below the bracket
            continue
        if not visible:
            return None, ev.qfs[0]
        i = visible[-1]
        return ev.qfs[i], (ev.qfs[i + 1] if i + 1 < n else None)
    raise RuntimeError("QF refinement did not settle; this is a bug in sgjnd.runtime.search")
