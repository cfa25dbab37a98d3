"""Uncertainty over seeds, honest for 3-5 of them, and the ranks and ties it rests on.

- A mean over seeds (a trend's per-seed Spearman correlations, an optimal depth) gets Student's t-interval,
  mean +/- t(CI_LEVEL, n - 1) * sd / sqrt(n) (`t_interval`): exact under normal per-seed values, and wide
  with few seeds where a percentile bootstrap of 3-5 values is only their [min, max].
- A share of seeds (seeds whose optimum is depth 2, seeds that collapsed) gets the Clopper-Pearson interval
  (`clopper_pearson`), whose coverage is at least CI_LEVEL for every n.
- Statistics equal to TIE_TOLERANCE (relative, or absolute below 1) are ties: they share an average rank
  and tie an optimum, so that rounding noise (a summation order) changes no rank, optimum or verdict.
- Spearman's correlation is the Pearson correlation of those ranks.

- A Spearman correlation over independent units (planted trees) gets the Fisher-z interval with the
  Bonett-Wright standard error (`spearman_ci`).

`bootstrap_median_ci` is the synthetic-tree summary's CI of the median over its many (tree, seed) cases
(`metasae.stages.score_synth`); no verdict uses it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta, norm, t

N_BOOT = 2000
CI_LEVEL = 0.95
TIE_TOLERANCE = 1e-9


def t_interval(values: list[float] | np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Student's t-interval on the mean of the values (NaN for fewer than 2; zero width when they agree)."""
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return math.nan, math.nan
    half = float(t.ppf((1 + level) / 2, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return float(arr.mean()) - half, float(arr.mean()) + half


def clopper_pearson(k: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a share k / n (NaN for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2
    low = float(beta.ppf(tail, k, n - k + 1)) if k > 0 else 0.0
    high = float(beta.ppf(1 - tail, k + 1, n - k)) if k < n else 1.0
    return low, high


def bootstrap_median_ci(values: list[int], seed: int = 0, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile-bootstrap CI of the median: the central `level` of the medians of N_BOOT resamples with
    replacement (a fixed generator seed; degenerate for one value)."""
    draws = np.random.default_rng(seed).choice(np.asarray(values, float), size=(N_BOOT, len(values)))
    tail = (1 - level) / 2 * 100
    medians = np.median(draws, axis=1)
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def ties(a: float, b: float) -> bool:
    """Whether two statistics are equal to TIE_TOLERANCE (NaN ties nothing)."""
    return abs(a - b) <= TIE_TOLERANCE * max(1.0, abs(a), abs(b))


def tied_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, values that tie (`ties`, chained in sorted order) sharing their average rank."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or not ties(values[order[end - 1]], values[order[end]]):
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def rank_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of the ranks x [m] with each row of the ranks y [..., m]; 0 where a row of y is
    constant (no monotone association)."""
    xc = x - x.mean()
    yc = y - y.mean(axis=-1, keepdims=True)
    scale = np.sqrt((xc**2).sum() * (yc**2).sum(axis=-1))
    product = np.asarray((yc * xc).sum(axis=-1), dtype=float)
    return np.divide(product, scale, out=np.zeros_like(product), where=scale > 0)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation with tied ranks: NaN when x takes one value, 0 when y does."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < 2:
        return math.nan
    return float(rank_correlation(tied_ranks(x), tied_ranks(y)))


def spearman_ci(rho: float, n_units: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Fisher-z interval of a Spearman correlation with the Bonett-Wright standard error,
    sqrt((1 + rho^2 / 2) / (n - 3)), on `n_units` independent units (NaN under 4 units or undefined rho)."""
    if not math.isfinite(rho) or n_units < 4:
        return math.nan, math.nan
    z = math.atanh(max(min(rho, 1 - 1e-12), -1 + 1e-12))
    half = float(norm.ppf(0.5 + level / 2)) * math.sqrt((1 + rho**2 / 2) / (n_units - 3))
    return math.tanh(z - half), math.tanh(z + half)
