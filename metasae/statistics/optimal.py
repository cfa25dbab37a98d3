"""Optimal depths: per group and criterion, each seed's best depths, their mean and its CI over seeds.

A criterion reads one statistic over a seed's depths by a rule (`Criterion`): its maximum, the knee of the
FVU curve of the layer rebuilt from each depth (`KNEE_COLUMN`), or the deepest depth whose meta-SAE still
beats a null meta-SAE (`deepest_beating`). `CRITERIA` are those the study answers with: each finds the
planted depth L of the oracle stacks of planted trees (metasae.stages.synth_oracle) for every L, in both
modes, and none beats chance on the shuffled stacks (tests/test_synth_criteria.py). The former criteria that
cannot (`STATISTICS`) stay plain statistics, so the research log's claims can still be tested with them
(metasae.statistics.claims). Only depths whose statistic may be used enter
(`usable`: trained, with a value, not excluded); `basis` says whether enough of them are left (MEASURED)
or why not, and a claim without a MEASURED basis is untested (`metasae.statistics.verdicts`).

A tie is a plateau, never the first maximum: a seed's optimum is every depth whose value ties the best
(`metasae.statistics.intervals.ties`), shown as a range ("2-3") or a list ("1,3"). Over seeds, the optimal
depth is the mean of the plateaus' midpoints, between estimate_low (the mean of their lowest depths) and
estimate_high (of their highest); its CI runs from the t-interval's lower end on the lowest depths to its
upper end on the highest (the ordinary t-interval on the mean when no seed has a plateau).

"Depth 2 is optimal" (`depth2_evidence`) counts, among the seeds with depths 1-3 usable, those whose
plateau is exactly {2}, against chance 1/(the seed's usable depths): under the null of exchangeable depths
P(plateau = {d}) <= 1/m for every depth d, so the Poisson-binomial (binomial for equal m) upper tail is an
exact, conservative p-value. A plateau holding 2 and another depth counts for neither side. Its opposite
is that another single depth is the optimum: p_against is the smallest such tail over the other depths,
Bonferroni-multiplied by their number. The estimate is the depth-2 share, with its Clopper-Pearson CI.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metasae.statistics.exact import share_p_value
from metasae.statistics.exclusions import DENSE, FIXED, excluded_as, excluded_depths
from metasae.statistics.groups import GROUP, depth_list, stack_architecture
from metasae.statistics.intervals import clopper_pearson, t_interval, ties
from metasae.statistics.verdicts import Evidence, judge

MEASURED, NOT_REACHED, NO_VALUE = "measured", "depth not reached", "no value"
FEW_DEPTHS = "no seed has the usable depths the claim needs"
DEPTH2_NEEDED = {1, 2, 3}  # "depth 2 is optimal" needs a seed's depths 1-3 usable
KNEE_COLUMN = "stack_fvu"  # the knee is found on the layer rebuilt from each depth: one input at every depth
Z_ENOUGH = 2.0  # a meta-SAE beats its null when its gain exceeds this many null standard deviations


def plateau(depths: np.ndarray, values: np.ndarray) -> tuple[int, ...]:
    """The depths whose value ties the largest (NaN values never do)."""
    best = float(np.nanmax(values))
    return tuple(int(d) for d, v in zip(depths, values, strict=True) if ties(float(v), best))


def knee_plateau(depths: np.ndarray, fvu: np.ndarray) -> tuple[int, ...]:
    """The depths of the FVU curve's knee: those farthest from the chord joining its ends (Kneedle); with
    fewer than 3 depths, those of lowest FVU."""
    if len(depths) < 3:
        return plateau(depths, -fvu)
    x = (depths - depths[0]) / (depths[-1] - depths[0])
    span = fvu[-1] - fvu[0]
    y = (fvu - fvu[0]) / span if span else np.zeros_like(fvu)
    return plateau(depths, np.abs(y - x))


def deepest_beating(depths: np.ndarray, z: np.ndarray) -> tuple[int, ...]:
    """The deepest depth d such that the meta-SAE of every depth 2..d beats its null (meta gain z-score >
    Z_ENOUGH, `metasae.statistics.meta_gain`): depth 1 when depth 2's does not; a gap ends the run."""
    deepest = 1
    for d, value in zip(depths, z, strict=True):
        if d != deepest + 1 or not value > Z_ENOUGH:
            break
        deepest = int(d)
    return (deepest,)


@dataclass(frozen=True)
class Criterion:
    """How a seed's depths give an optimum: the statistic read and the rule turning its values into the
    plateau of optimal depths, over at least `min_depths` usable depths."""

    column: str
    rule: Callable[[np.ndarray, np.ndarray], tuple[int, ...]]
    min_depths: int = 2


CRITERIA = {  # the criteria the study answers with (module docstring)
    "max_tree_identity": Criterion("tree_identity_mean", plateau),
    "deepest_meta_gain": Criterion("meta_gain_z", deepest_beating, min_depths=1),
}
STATISTICS = {  # once criteria, now plain statistics: none returns L on the oracle stacks (same tests)
    "max_purity": Criterion("purity_mean", plateau),  # leaf or label purity: highest at depth 1
    "max_activation_count": Criterion("count_fraction", plateau),  # saturated where latents fire often
    "max_mean_active": Criterion("mean_active_fraction", plateau),  # routed L0 / width: grows with depth
    "max_stability": Criterion("stability_mean_cosine", plateau),  # a perfect stack: stable at every depth
    "fvu_knee": Criterion(KNEE_COLUMN, knee_plateau, min_depths=3),
    # config/synth.yaml (20 null draws): every oracle stack and 82% of the trained decoder-mode ones, but
    # 35% of the shuffled control (chance 24%; it reads the parent rows only): README, planted hierarchies
    "deepest_row_structure": Criterion("row_structure_z", deepest_beating, min_depths=1),
}


def criterion_column(criterion: str) -> str:
    """The statistic a criterion (of CRITERIA or STATISTICS) is computed from."""
    return {**CRITERIA, **STATISTICS}[criterion].column


def usable(group: pd.DataFrame, column: str) -> tuple[pd.DataFrame, dict[int, str]]:
    """The trained rows of a group whose `column` has a value and may be used, and for each trained depth
    with a row left out, why (FIXED, DENSE or NO_VALUE; the first seen)."""
    trained = group[group["status"] == "trained"]
    keep, why = [], {}
    for index, row in trained.iterrows():
        reason = excluded_as(row, column) or (NO_VALUE if pd.isna(row.get(column)) else None)
        if reason:
            why.setdefault(int(row["depth"]), reason)
        else:
            keep.append(index)
    return trained.loc[keep], why


def basis(group: pd.DataFrame, column: str, needed: set[int] | None = None, min_depths: int = 2) -> str:
    """MEASURED where the usable rows cover the `needed` depths (or `min_depths` distinct depths); otherwise
    why not: NOT_REACHED where the study trained too few of those depths, else the exclusion that removed
    them (FIXED before DENSE before NO_VALUE)."""
    rows, why = usable(group, column)
    got = set(rows["depth"].astype(int))
    reached = set(group.loc[group["status"] == "trained", "depth"].astype(int))
    if (needed <= got) if needed else len(got) >= min_depths:
        return MEASURED
    if (not needed <= reached) if needed else len(reached) < min_depths:
        return NOT_REACHED
    kinds = set(why.values())
    return next((kind for kind in (FIXED, DENSE, NO_VALUE) if kind in kinds), NOT_REACHED)


@dataclass(frozen=True)
class SeedOptimum:
    """One seed's optimum by a criterion: the plateau of depths tied for best, over its usable depths."""

    plateau: tuple[int, ...]
    depths: tuple[int, ...]

    @property
    def low(self) -> int:
        return self.plateau[0]

    @property
    def high(self) -> int:
        return self.plateau[-1]

    def __str__(self) -> str:
        """'2', a contiguous plateau '2-3' (of the seed's usable depths), or a broken one '1,3'."""
        if len(self.plateau) == 1:
            return str(self.low)
        inside = [d for d in self.depths if self.low <= d <= self.high]
        contiguous = tuple(inside) == self.plateau
        return f"{self.low}-{self.high}" if contiguous else ",".join(map(str, self.plateau))


def per_seed_optima(rows: pd.DataFrame, criterion: str) -> list[SeedOptimum]:
    """Each seed's optimum (a plateau of tied depths) over the given (usable) rows."""
    optima = []
    for _, seed_rows in rows.groupby("seed"):
        live = seed_rows.sort_values("depth")
        depths = live["depth"].to_numpy(int)
        values = live[criterion_column(criterion)].astype(float).to_numpy()
        if np.isnan(values).all():
            continue
        best = {**CRITERIA, **STATISTICS}[criterion].rule(depths, values)
        optima.append(SeedOptimum(best, tuple(int(d) for d in depths)))
    return optima


@dataclass(frozen=True)
class SeedOptima:
    """A group's per-seed optima by one criterion; none unless the basis is MEASURED."""

    column: str
    basis: str
    per_seed: list[SeedOptimum]
    depths_used: str  # the usable depths the optima were taken over ("" unless MEASURED)

    @property
    def estimate(self) -> float:
        """The mean over seeds of the plateaus' midpoints."""
        return (self.estimate_low + self.estimate_high) / 2

    @property
    def estimate_low(self) -> float:
        return float(np.mean([o.low for o in self.per_seed])) if self.per_seed else math.nan

    @property
    def estimate_high(self) -> float:
        return float(np.mean([o.high for o in self.per_seed])) if self.per_seed else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        """The t-interval's lower end on the seeds' lowest optimal depths, its upper end on their highest."""
        return t_interval([o.low for o in self.per_seed])[0], t_interval([o.high for o in self.per_seed])[1]


def seed_optima(
    group: pd.DataFrame, criterion: str, needed: set[int] | None = None, min_depths: int = 2
) -> SeedOptima:
    """Each seed's optimum by `criterion` over its usable depths, where `basis` (with `needed` or
    `min_depths`) is MEASURED."""
    column = criterion_column(criterion)
    how = basis(group, column, needed, min_depths)
    used, _ = usable(group, column)
    return SeedOptima(
        column=column,
        basis=how,
        per_seed=per_seed_optima(used, criterion) if how == MEASURED else [],
        depths_used=depth_list(used["depth"]) if how == MEASURED else "",
    )


def _sole_optimum_p(optima: list[SeedOptimum], depth: int) -> float:
    """The Poisson-binomial upper tail of the seeds whose plateau is exactly {depth}, each against chance
    1/(its usable depths) (0 where the depth is not among them)."""
    hits = sum(o.plateau == (depth,) for o in optima)
    return share_p_value(hits, [1 / len(o.depths) if depth in o.depths else 0.0 for o in optima])


def depth2_evidence(optima: list[SeedOptimum]) -> Evidence:
    """The test of "depth 2 is optimal" over the seeds with depths 1-3 usable (the module docstring)."""
    counted = [o for o in optima if set(o.depths) >= DEPTH2_NEEDED]
    if not counted:
        return Evidence()
    k = sum(o.plateau == (2,) for o in counted)
    others = sorted({d for o in counted for d in o.depths} - {2})
    against = min(1.0, len(others) * min(_sole_optimum_p(counted, d) for d in others))
    n = len(counted)
    return Evidence(n, k, _sole_optimum_p(counted, 2), against, k / n, *clopper_pearson(k, n))


def depth2_basis(group: pd.DataFrame, found: SeedOptima, evidence: Evidence) -> str:
    """Why the depth-2 test has no p-value, or MEASURED."""
    how = basis(group, found.column, needed=DEPTH2_NEEDED)
    return FEW_DEPTHS if how == MEASURED and not evidence.n_seeds else how


def optimal_depths(depths: pd.DataFrame) -> pd.DataFrame:
    """Per group and criterion: each seed's optimum (a plateau) over the depths where the criterion's
    statistic may be used, their mean with its range and CI (module docstring), and the verdict on the
    log's "depth 2 is optimal" (`depth2_evidence`, Holm-corrected over this table's rows by `judge`)."""
    rows, tests = [], []
    for key, group in depths.groupby(GROUP, sort=True):
        for criterion, how in CRITERIA.items():
            found = seed_optima(group, criterion, min_depths=how.min_depths)
            evidence = depth2_evidence(found.per_seed)
            tests.append({**evidence.row(), "basis": depth2_basis(group, found, evidence)})
            lo, hi = found.ci
            rows.append(
                {
                    **dict(zip(GROUP, key, strict=True)),
                    "architecture": stack_architecture(group),
                    "criterion": criterion,
                    "column": found.column,
                    "optimal_depth": found.estimate,
                    "estimate_low": found.estimate_low,
                    "estimate_high": found.estimate_high,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_seeds": len(found.per_seed),
                    "per_seed": " ".join(map(str, found.per_seed)),
                    "depths_used": found.depths_used,
                    "basis": found.basis,
                    "excluded": excluded_depths(group, found.column),
                }
            )
    verdicts = judge(pd.DataFrame(tests, columns=[*Evidence().row(), "basis"]))["verdict"].tolist()
    out = pd.DataFrame(rows)
    out["log_claim_depth2"] = verdicts
    out["log_claim_depth2_holds"] = out["log_claim_depth2"] == "holds"
    return out
