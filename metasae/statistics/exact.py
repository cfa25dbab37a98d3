"""Exact tests over seeds, the p-values every verdict rests on (`metasae.statistics.verdicts`).

- A trend with depth (`trend_p_values`): the statistic is the mean over seeds of Spearman(depth, value)
  within each seed's stack; the null permutes each seed's depth labels independently (a seed's values are
  exchangeable across its depths). The null distribution is enumerated exactly (each seed's correlation
  over all m! orderings of its values, convolved over seeds) where every seed has at most EXACT_DEPTHS
  depths; otherwise it is a Monte Carlo of PERMUTATIONS draws from a generator seeded MC_SEED, with
  p = (1 + #{draws >= observed}) / (1 + PERMUTATIONS). Both tails are returned: rising, falling.
- A share of seeds (`share_p_value`): the exact upper tail of the number of successes when seed i succeeds
  with chance p_i independently (Poisson-binomial; the binomial when the chances are equal).
- A difference from a control (`sign_flip_p_values`): the statistic is the mean over seeds of each seed's
  difference; the null flips each seed's sign independently (a difference with no effect is as likely
  negative as positive), enumerated over all 2^n sign patterns up to EXACT_SIGNS seeds.
- Holm-Bonferroni (`holm`): the step-down adjustment of one family of p-values, which keeps the chance of
  any false rejection in the family at most the level, whatever the dependence between the tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cache

import numpy as np

from metasae.statistics.intervals import rank_correlation, tied_ranks

EXACT_DEPTHS = 7  # 7! = 5040 orderings per seed: enumerated; more depths: Monte Carlo
PERMUTATIONS = 20_000
MC_SEED = 0
DIGITS = 9  # null correlations and their sums are merged to this many decimals
EXACT_SIGNS = 20  # 2^20 sign patterns: enumerated (more seeds than a study has)
SLACK = 1e-7  # a null sum this close to the observed one equals it (rounding), and counts in both tails


@cache
def _seed_null(value_ranks: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The exact null of one seed's Spearman correlation: its distinct values over all orderings of the
    (sorted) value ranks against depth ranks 1..m, with their probabilities."""
    depth_ranks = np.arange(1, len(value_ranks) + 1, dtype=float)
    orders = np.array(list(itertools.permutations(value_ranks)))
    values, counts = np.unique(np.round(rank_correlation(depth_ranks, orders), DIGITS), return_counts=True)
    return values, counts / counts.sum()


def _exact_sums(per_seed_ranks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The exact null distribution of the sum over seeds of their correlations: distinct values and
    probabilities, each seed's null convolved in turn."""
    values, probs = np.zeros(1), np.ones(1)
    for ranks in per_seed_ranks:
        seed_values, seed_probs = _seed_null(tuple(sorted(ranks)))
        sums = np.round((values[:, None] + seed_values[None, :]).ravel(), DIGITS)
        values, inverse = np.unique(sums, return_inverse=True)
        probs = np.bincount(inverse, weights=(probs[:, None] * seed_probs[None, :]).ravel())
    return values, probs


def _monte_carlo_sums(per_seed_ranks: list[np.ndarray]) -> np.ndarray:
    """PERMUTATIONS draws of the sum over seeds of their correlations, each seed's values permuted
    independently (a fixed generator: reruns give equal p-values)."""
    rng = np.random.default_rng(MC_SEED)
    total = np.zeros(PERMUTATIONS)
    for ranks in per_seed_ranks:
        draws = rng.permuted(np.tile(ranks, (PERMUTATIONS, 1)), axis=1)
        total += rank_correlation(np.arange(1, len(ranks) + 1, dtype=float), draws)
    return total


def trend_p_values(per_seed: list[np.ndarray]) -> tuple[float, float]:
    """(p of a rise, p of a fall) of the mean within-seed Spearman correlation of value with depth, by the
    permutation test of the module docstring; each array is one seed's values in depth order."""
    ranks = [tied_ranks(values) for values in per_seed]
    observed = sum(float(rank_correlation(np.arange(1, len(r) + 1, dtype=float), r)) for r in ranks)
    if max(len(r) for r in ranks) <= EXACT_DEPTHS:
        values, probs = _exact_sums(ranks)
        return float(probs[values >= observed - SLACK].sum()), float(probs[values <= observed + SLACK].sum())
    draws = _monte_carlo_sums(ranks)
    rises, falls = int((draws >= observed - SLACK).sum()), int((draws <= observed + SLACK).sum())
    return (1 + rises) / (1 + PERMUTATIONS), (1 + falls) / (1 + PERMUTATIONS)


def sign_flip_p_values(differences: Sequence[float]) -> tuple[float, float]:
    """(p of a mean above 0, p of a mean below 0) of per-seed differences, by the exact sign-flip test of
    the module docstring."""
    d = np.asarray(differences, dtype=float)
    if not 1 <= len(d) <= EXACT_SIGNS:
        raise ValueError(f"sign-flip test: {len(d)} seeds; needs 1 to {EXACT_SIGNS}")
    signs = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
    sums, observed = signs @ np.abs(d), float(d.sum())
    return float(np.mean(sums >= observed - SLACK)), float(np.mean(sums <= observed + SLACK))


def share_p_value(k: int, chances: Sequence[float]) -> float:
    """P(at least k successes) when seed i succeeds with chance chances[i], independently."""
    if k <= 0:
        return 1.0
    pmf = np.ones(1)  # of the number of successes, one seed convolved in at a time
    for chance in chances:
        pmf = np.convolve(pmf, [1 - chance, chance])
    return float(pmf[k:].sum())


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values of one family; NaN entries (untested) are not in the family and
    stay NaN. The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j))."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (len(order) - np.arange(len(order))) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out
