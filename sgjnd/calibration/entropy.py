"""The entropy (KL-divergence) calibration threshold, computed with NumPy.

ONNX Runtime's ``EntropyCalibrater`` collects a histogram of each tensor's values over ``[-t, t]`` and searches the
clipping threshold that minimises the KL divergence between the clipped distribution and its 128-level
quantisation (the algorithm of "8-bit Inference with TensorRT", GTC 2017). Its search is written as Python loops
over bins and takes minutes per graph at the 2048 bins the method needs; with its default of 128 bins it has a single
candidate and returns the full range. This module does the same search per candidate with vectorised NumPy, on the
histograms ONNX Runtime's collector made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NUM_QUANTIZED_BINS = 128
"""Levels of the candidate quantisation (int8 has 128 on either side of zero; the search uses one side's count)."""

_EPS = 1e-4

_COARSE = 128
"""Candidates of the coarse pass of the threshold search."""


def _smooth(p: np.ndarray) -> np.ndarray | None:
    """Replace zeros by a small mass taken from the non-zero bins (as ONNX Runtime and MXNet do)."""
    zeros = p == 0
    n_zeros = int(zeros.sum())
    n_nonzeros = p.size - n_zeros
    if n_nonzeros == 0:
        return None
    eps1 = _EPS * n_zeros / n_nonzeros
    return np.where(zeros, _EPS, p - eps1)


def entropy_threshold(
    hist: np.ndarray, edges: np.ndarray, num_quantized_bins: int = NUM_QUANTIZED_BINS
) -> tuple[float, float]:
    """The (low, high) clipping range that minimises KL(P || Q) over the symmetric candidates of a histogram.

    Args:
        hist: counts of a histogram centred on zero (ONNX Runtime's ``collect_value`` layout).
        edges: its bin edges (``hist.size + 1`` values).
        num_quantized_bins: quantisation levels of the candidate distribution.

    Returns:
        The edges of the best candidate window, ``(edges[start], edges[end])``.
    """
    counts = np.asarray(hist, dtype=np.float64)
    n = counts.size
    zero = n // 2
    half = num_quantized_bins // 2
    if zero < half:
        return float(edges[0]), float(edges[-1])
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    nonzero_all = (counts != 0).astype(np.float64)

    def divergence(i: int) -> float:
        start, end = zero - i, min(zero + i + 1, n)
        sliced = counts[start:end]
        p = sliced.copy()
        p[0] += cum[start]
        p[-1] += cum[-1] - cum[end]
        size = sliced.size
        per = size // num_quantized_bins
        group = np.minimum(np.arange(size) // per, num_quantized_bins - 1)
        merged = np.bincount(group, weights=sliced, minlength=num_quantized_bins)
        # Expand each merged level evenly over the bins of its group that are non-zero in the clipped histogram.
        nonzero = nonzero_all[start:end]
        norm = np.bincount(group, weights=nonzero, minlength=num_quantized_bins)
        q = nonzero * (merged / np.where(norm > 0, norm, 1.0))[group]
        ps, qs = _smooth(p), _smooth(q)
        if ps is None or qs is None:
            return np.inf
        ps, qs = ps / ps.sum(), qs / qs.sum()
        return float(np.sum(ps * np.log(ps / qs)))

    # Coarse-to-fine over the candidate half-widths: at most ~_COARSE evaluations, then every width around the best.
    step = max(1, (zero - half) // _COARSE)
    coarse = list(range(half, zero + 1, step))
    best_i = min(coarse, key=divergence)
    fine = range(max(half, best_i - step + 1), min(zero, best_i + step - 1) + 1)
    best_i = min([best_i, *fine], key=divergence)
    return float(edges[zero - best_i]), float(edges[min(zero + best_i + 1, n)])


def entropy_ranges(histograms: dict[str, Any], num_quantized_bins: int = NUM_QUANTIZED_BINS) -> dict[str, Any]:
    """Thresholds of every tensor of ONNX Runtime's histogram collector, clipped to the values seen.

    Args:
        histograms: the collector's ``histogram_dict``: tensor -> (hist, edges, min, max, threshold).
        num_quantized_bins: quantisation levels of the candidate distribution.

    Returns:
        tensor -> (low, high, hist, edges), the layout ``TensorsData(CalibrationMethod.Entropy, ...)`` takes.
    """
    out: dict[str, Any] = {}
    for name, entry in histograms.items():
        hist, edges, lo_seen, hi_seen = entry[0], entry[1], entry[2], entry[3]
        lo, hi = entropy_threshold(hist, edges, num_quantized_bins)
        dtype = np.asarray(edges).dtype
        lo = max(lo, float(lo_seen))
        hi = min(hi, float(hi_seen))
        out[name] = (np.array(lo, dtype=dtype), np.array(hi, dtype=dtype), hist, edges)
    return out
