"""The verdict rule: an exact test per (configuration, claim), Holm-corrected over the study.

Each row carries `Evidence`: the seeds that give the statistic (n_seeds), those whose own statistic points
the claim's way (n_agree), an exact p-value for the claim (p_value) and one for its opposite (p_against;
`metasae.statistics.exact`), the estimate and its CI (`metasae.statistics.intervals`). `judge` adjusts
p_value and p_against by Holm-Bonferroni, separately, over every tested row of one table (all claims x
configurations of a study, rows with too few seeds included) and gives each row a verdict and its reason:

- untested: no p-value, because the statistic is excluded at the depths the claim needs, the study did not
  reach them, or it cannot happen by construction (the row's `basis` says which, and is the reason);
- inconclusive: fewer than MIN_SEEDS seeds give the statistic ("too few seeds (n < 5)"; the p-values are
  still reported), or neither adjusted p-value is below ALPHA, or both are;
- holds: p_holm < ALPHA; fails: p_against_holm < ALPHA (the evidence is significantly against the claim).

So a false "holds" (or "fails") anywhere in a study has chance at most ALPHA under the null of no effect.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from metasae.statistics.exact import holm

VERDICTS = ("holds", "fails", "inconclusive", "untested")  # canonical; the report keeps a copy
ALPHA = 0.05  # the family-wise error rate of each of the holds and the fails families
MIN_SEEDS = 5  # the real study's seeds; fewer give no verdict but inconclusive
COLLAPSE_DEPTH = 7  # the log: all latents dead from depth 6-7
COLLAPSE_SHARE = 0.5  # "deep stacks collapse": more than this share of seeds collapse by COLLAPSE_DEPTH
TOO_FEW = f"too few seeds (n < {MIN_SEEDS})"


@dataclass(frozen=True)
class Evidence:
    """One claim's test over one configuration's seeds (NaN p-values: untested)."""

    n_seeds: int = 0
    n_agree: int = 0
    p_value: float = math.nan
    p_against: float = math.nan
    estimate: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan

    def row(self) -> dict:
        return asdict(self)


def verdict(p_holm: float, p_against_holm: float, n_seeds: int, basis: str) -> tuple[str, str]:
    """(verdict, reason) of one row by the rule in the module docstring."""
    if math.isnan(p_holm):
        return "untested", basis
    if n_seeds < MIN_SEEDS:
        return "inconclusive", TOO_FEW
    holds, fails = p_holm < ALPHA, p_against_holm < ALPHA
    if holds and not fails:
        return "holds", f"p_holm = {p_holm:.3g} < {ALPHA:g}"
    if fails and not holds:
        return "fails", f"p_against_holm = {p_against_holm:.3g} < {ALPHA:g}"
    return "inconclusive", (
        f"{'both directions' if holds else 'neither direction'} significant after Holm "
        f"(p_holm = {p_holm:.3g}, p_against_holm = {p_against_holm:.3g})"
    )


def judge(table: pd.DataFrame) -> pd.DataFrame:
    """The table (columns of `Evidence` and `basis`, one row per claim and configuration) with p_holm and
    p_against_holm (Holm over its tested rows, each family apart), verdict and verdict_reason."""
    out = table.copy()
    out["p_holm"] = holm(out["p_value"].to_numpy(float))
    out["p_against_holm"] = holm(out["p_against"].to_numpy(float))
    decided = [
        verdict(h, a, int(n), str(b))
        for h, a, n, b in zip(out["p_holm"], out["p_against_holm"], out["n_seeds"], out["basis"], strict=True)
    ]
    out["verdict"] = [v for v, _ in decided]
    out["verdict_reason"] = [r for _, r in decided]
    return out
