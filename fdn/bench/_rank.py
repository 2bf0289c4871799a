"""Rank and linear correlation of two score lists, in NumPy (no SciPy): how the benches judge whether one way of
scoring candidates orders them as another does (`fdn.bench.latency_model`, `fdn.bench.precision`)."""

from __future__ import annotations

import numpy as np


def ranks(values) -> np.ndarray:
    """Ranks 0..n-1 with ties averaged."""
    v = np.asarray(values, float)
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    for x in np.unique(v):
        same = v == x
        r[same] = r[same].mean()
    return r


def pearson(a, b) -> float:
    """Pearson's r; NaN for fewer than two values or a constant list (no order to compare)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a, b) -> float:
    """Spearman's rho: Pearson's r of the ranks (ties averaged)."""
    return pearson(ranks(a), ranks(b))
