"""Property tests of the QF search on synthetic score curves."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgjnd.errors import UsageError
from sgjnd.runtime.search import STRATEGIES, SearchConfig, jnd_from_curve, majority_filter, run_search

QFS = tuple(range(1, 101))


def step_curve(threshold_qf: int) -> dict[int, float]:
    """S = 0 (visible) up to and including ``threshold_qf``, 1 (invisible) above it."""
    return {q: (0.0 if q <= threshold_qf else 1.0) for q in QFS}


def scorer(curve: dict[int, float], calls: list[list[int]] | None = None):
    def score(qfs):
        if calls is not None:
            calls.append(list(qfs))
        return {q: curve[q] for q in qfs}

    return score


@pytest.mark.parametrize("strategy", STRATEGIES)
@given(t=st.integers(min_value=0, max_value=100))
@settings(max_examples=60, deadline=None)
def test_clean_step_returns_its_exact_threshold(strategy, t):
    out = run_search(SearchConfig(strategy=strategy), scorer(step_curve(t)))
    assert out.jnd_qf == (t if t >= 1 else None)
    assert out.recommended_qf == (t + 1 if t < 100 else None)


@given(
    t=st.integers(min_value=10, max_value=90),
    flips=st.lists(st.integers(min_value=1, max_value=100), max_size=6),
)
@settings(max_examples=200, deadline=None)
def test_isolated_flips_do_not_move_the_full_jnd(t, flips):
    window = 5
    # keep flips isolated: away from the step and at least a window apart from each other
    kept: list[int] = []
    for f in sorted(set(flips)):
        if abs(f - t - 0.5) > window and all(abs(f - k) >= window for k in kept) and 3 <= f <= 98:
            kept.append(f)
    curve = step_curve(t)
    for f in kept:
        curve[f] = 1.0 - curve[f]
    out = run_search(SearchConfig(strategy="full", window=window), scorer(curve))
    assert out.jnd_qf == t


@pytest.mark.parametrize("strategy", ["coarse-to-fine", "bisect"])
@given(values=st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=100, max_size=100))
@settings(max_examples=100, deadline=None)
def test_fast_strategies_equal_full_on_monotone_curves(strategy, values):
    curve = dict(zip(QFS, sorted(values), strict=True))
    full = run_search(SearchConfig(strategy="full"), scorer(curve))
    fast = run_search(SearchConfig(strategy=strategy), scorer(curve))
    assert (fast.jnd_qf, fast.recommended_qf) == (full.jnd_qf, full.recommended_qf)


def test_coarse_to_fine_evaluates_at_least_four_times_fewer_qfs():
    for t in (5, 25, 37, 64, 95):
        out = run_search(SearchConfig(strategy="coarse-to-fine"), scorer(step_curve(t)))
        assert out.jnd_qf == t
        assert len(out.scores) * 4 <= len(QFS), (t, len(out.scores))


def test_full_asks_for_one_round_with_every_qf():
    calls: list[list[int]] = []
    run_search(SearchConfig(strategy="full"), scorer(step_curve(30), calls))
    assert calls == [list(QFS)]


def test_majority_filter_removes_isolated_flip_and_keeps_edge_steps():
    flags = np.array([0, 0, 1, 0, 0, 1, 1, 1, 1], dtype=bool)
    assert majority_filter(flags, 5).tolist() == [False, False, False, False, True, True, True, True, True]
    edge = np.array([0, 1, 1, 1, 1], dtype=bool)
    assert majority_filter(edge, 5).tolist() == edge.tolist()
    assert majority_filter(flags, 1).tolist() == flags.tolist()


def test_curve_rule_edges():
    assert jnd_from_curve([1, 2, 3], [1.0, 1.0, 1.0], 1, 0.5) == (None, 1)
    assert jnd_from_curve([1, 2, 3], [0.0, 0.0, 0.0], 1, 0.5) == (3, None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "binary"},
        {"qfs": ()},
        {"qfs": (0, 5)},
        {"qfs": (5, 3)},
        {"window": 4},
        {"threshold": 1.0},
        {"coarse_steps": (4, 16)},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(UsageError):
        SearchConfig(**kwargs)
