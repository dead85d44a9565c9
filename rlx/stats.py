"""Aggregate statistics over seeds: interquartile mean and bootstrap confidence intervals."""
from __future__ import annotations

from typing import Callable

import numpy as np


def iqm(x) -> float:
    """Interquartile mean: the mean after dropping floor(n/4) values at each end
    (scipy.stats.trim_mean(x, 0.25), as in rliable)."""
    v = np.sort(np.asarray(x, np.float64).ravel())
    k = int(0.25 * v.size)
    return float(v[k:v.size - k].mean())


def bootstrap_ci(x, stat: Callable = np.mean, n_boot: int = 2000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap CI [lo, hi] of `stat` over the values in x (seeds)."""
    v = np.asarray(x, np.float64).ravel()
    if v.size == 1:
        return [float(v[0]), float(v[0])]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    stats = np.asarray([stat(v[i]) for i in idx])
    a = (1 - level) / 2
    return [float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))]
