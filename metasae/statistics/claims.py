"""The research log's claims, tested: one row per claim and group, the log's number beside ours, an exact
test over seeds, and a verdict by the rule of `metasae.statistics.verdicts` (Holm over every row of one
`claims` call).

- "depth 2 is optimal" (activation count): the share of seeds whose optimum (plateau) is exactly depth 2,
  against chance 1/(usable depths), among seeds with depths 1-3 usable (p_against: another single depth is
  the optimum more often than chance; `metasae.statistics.optimal`); estimate: that share, with its
  Clopper-Pearson CI.
- trends with depth (`TREND_CLAIMS`, and `TAXONOMY_CLAIM` where the labels have superclasses): the mean over
  seeds of Spearman(depth, value) within each seed's stack, by the exact permutation test of
  `metasae.statistics.exact` (p_value: rising, p_against: falling); a seed counts only with at least
  MIN_TREND_DEPTHS usable depths (a correlation over 2 depths is only -1, 0 or 1), and none counting leaves
  the claim untested; n_agree: seeds with a positive correlation; CI: the t-interval on the mean, clipped to
  [-1, 1].
- "deep stacks collapse": the binomial test of more than COLLAPSE_SHARE of the seeds collapsing by
  COLLAPSE_DEPTH (p_against: fewer than that share), with a Clopper-Pearson CI of the share; untested where
  TopK or BatchTopK produce every depth's codes (they keep k latents active per input: the codes cannot go
  dead by construction).

- "purer than a direct SAE of the same width" (`CONTROL_CLAIM`, where the study trained width-matched
  controls): per seed, the mean over its usable depths >= 2 of purity lift minus the lift of a direct SAE
  with that depth's width and depth 1's k on the same fit activations; the exact sign-flip test over seeds
  (p_value: above 0, p_against: below); CI: the t-interval; `control_estimate`: the controls' mean lift.
  It answers the atomicity question without the width confound a trend with depth carries.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from metasae.statistics.exact import share_p_value, sign_flip_p_values, trend_p_values
from metasae.statistics.exclusions import FIXED_L0, excluded_depths
from metasae.statistics.groups import GROUP, depth_list, stack_architecture
from metasae.statistics.intervals import CI_LEVEL, clopper_pearson, spearman, t_interval
from metasae.statistics.optimal import (
    DEPTH2_NEEDED,
    FEW_DEPTHS,
    MEASURED,
    NOT_REACHED,
    basis,
    depth2_basis,
    depth2_evidence,
    seed_optima,
    usable,
)
from metasae.statistics.verdicts import (
    ALPHA,
    COLLAPSE_DEPTH,
    COLLAPSE_SHARE,
    MIN_SEEDS,
    Evidence,
    judge,
)

MIN_TREND_DEPTHS = 3  # a seed's trend needs this many usable depths
BY_CONSTRUCTION = "cannot happen by construction"
JUDGED = ("p_holm", "p_against_holm", "verdict", "verdict_reason")  # the columns `judge` adds

# Where each claim comes from (../shared/research/: the log, oldest first, and log-facts.md on its code)
LOG_RESULT = "a result of the log (2024-11-09)"
LOG_HYPOTHESIS = "a hypothesis of the log (2024-10-09, Next Steps)"
LOG_CODE = "the log's code repository (its losses, log-facts.md 1.3), not the log's text"
NEW_TEST = "not in the log: a test added here"

TREND_CLAIMS = [  # (column, claim, the log's number, what the column is, where it comes from, source)
    (
        "mean_active_fraction",
        "The average number of activations increases the deeper you go",
        "stated in the log (2024-11-09); its own numbers fall after depth 2 (EMNIST L0 0.4, 18.4, 3.1, 0.3)",
        "mean active latents per image / dictionary size",
        "trained depths of each seed where the statistic is neither fixed by construction nor on dense codes",
        LOG_RESULT,
    ),
    (
        "purity_lift",
        "Latents become more atomic (purer in label) the deeper the stack goes",
        "the log's hypothesis; its own purity fell: Fashion-MNIST 6.60/10 at depth 1, 5.21 at depth 2",
        "label purity lift over chance of the latents with a full top-10",
        "lift = (purity - chance) / (1 - chance) over latents with top_n activations (rare ones apart), "
        "at depths whose image codes are sparse",
        LOG_HYPOTHESIS,
    ),
]
TAXONOMY_CLAIM = (  # only where the probe's labels have superclasses (metasae/taxonomy.py)
    "abstraction_gap",
    "Deeper meta-latents are more abstract: purer by superclass than by class",
    "not in the log: a test on a real label taxonomy (Fashion-MNIST's tops, footwear, Trouser, Bag)",
    "superclass purity lift minus class purity lift, each above its chance floor",
    "lift = (purity - chance) / (1 - chance), chance = the purity of random top images; sparse depths only",
    NEW_TEST,
)
CONTROL_COLUMN = "purity_lift_minus_control"
CONTROL_CLAIM = (
    "Meta-latents are purer above chance than the latents of a direct SAE of the same width",
    NEW_TEST,
    "not in the log: the control for the width schedule (each depth has fewer latents than its parent)",
)
CLAIM_COLUMNS = [
    "claim",
    "source",
    *GROUP,
    "architecture",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "control_estimate",
    "n_seeds",
    "n_agree",
    "p_value",
    "p_holm",
    "p_against",
    "p_against_holm",
    "region",
    "verdict",
    "verdict_reason",
    "basis",
    "depths_used",
    "excluded",
    "log_value",
    "our_value",
    "note",
]


def _seeds_note(n: int) -> str:
    """'3 seeds (fewer than the 5 of a real study)': a CI over few seeds says so."""
    return f"{n} seed{'s' if n != 1 else ''}" + (
        f" (fewer than the {MIN_SEEDS} of a real study)" if n < MIN_SEEDS else ""
    )


def _ci_text(evidence: Evidence, kind: str) -> str:
    """An estimate with its CI, the seeds it rests on and the raw p-value, as `our_value` gives it."""
    e = evidence
    return (
        f"{e.estimate:.3g}, {CI_LEVEL:.0%} {kind} CI [{e.ci_low:.3g}, {e.ci_high:.3g}] over "
        f"{_seeds_note(e.n_seeds)}; {e.n_agree} of {e.n_seeds} agree; p = {e.p_value:.3g}"
    )


def _holds_when(test: str) -> str:
    """The `region` text: what the claim's verdict rests on."""
    return f"the Holm-corrected p-value of {test} is below {ALPHA:g} ({MIN_SEEDS}+ seeds)"


def _depth2_claim(group: pd.DataFrame) -> tuple[dict, Evidence]:
    found = seed_optima(group, "max_activation_count", needed=DEPTH2_NEEDED)
    evidence = depth2_evidence(found.per_seed)
    how = depth2_basis(group, found, evidence)
    per_seed = " ".join(map(str, found.per_seed))
    return {
        "claim": (
            "Depth 2 is optimal for the most activations (latents whose top-10 activations are all non-zero)"
        ),
        "source": LOG_RESULT,
        "statistic": "share of seeds whose optimum (depths tied for the top count_fraction) is depth 2 alone",
        "region": _holds_when("that share exceeding chance, 1/(usable depths) (exact binomial)"),
        "basis": how,
        "depths_used": found.depths_used,
        "excluded": excluded_depths(group, found.column),
        "log_value": "depth 2 (EMNIST 2304/2304, Fashion-MNIST 2304/2304 latents at depth 2)",
        "our_value": (
            f"depth-2 share {_ci_text(evidence, 'Clopper-Pearson')}; optimum per seed {per_seed}"
            if how == MEASURED
            else f"not measured: {how}"
        ),
        "note": (
            "count as a fraction of the dictionary (widths change with depth); needs depths 1-3 usable; "
            "a tie is a plateau (2-3): it counts for depth 2 only if it is depth 2 alone; against: another "
            "single depth is the optimum more often than chance (Bonferroni over those depths)"
        ),
    }, evidence


def _trend_values(rows: pd.DataFrame, column: str) -> dict[int, np.ndarray]:
    """Each seed's values of `column` in depth order."""
    return {int(s): g.sort_values("depth")[column].to_numpy(float) for s, g in rows.groupby("seed")}


def trend_evidence(per_seed: list[np.ndarray]) -> Evidence:
    """The test of a rise with depth over the seeds' values in depth order (the module docstring); seeds
    with fewer than MIN_TREND_DEPTHS values do not count."""
    counted = [v for v in per_seed if len(v) >= MIN_TREND_DEPTHS]
    if not counted:
        return Evidence()
    rhos = np.array([spearman(np.arange(len(v)), v) for v in counted])
    lo, hi = t_interval(rhos)
    p_rise, p_fall = trend_p_values(counted)
    return Evidence(
        len(counted), int((rhos > 0).sum()), p_rise, p_fall, float(rhos.mean()), max(lo, -1), min(hi, 1)
    )


def _trend_claim(
    group: pd.DataFrame, column: str, claim: str, log_value: str, what: str, note: str, source: str
) -> tuple[dict, Evidence]:
    used, _ = usable(group, column)
    values = _trend_values(used, column)
    evidence = trend_evidence(list(values.values()))
    how = basis(group, column, min_depths=MIN_TREND_DEPTHS)
    if how == MEASURED and not evidence.n_seeds:
        how = FEW_DEPTHS
    counted = [s for s, v in values.items() if len(v) >= MIN_TREND_DEPTHS]
    if how == MEASURED:
        ours = f"mean Spearman(depth, {what}) = {_ci_text(evidence, 't')}"
        shown = depth_list(used.loc[used["seed"].isin(counted), "depth"])
    else:
        trained = group[(group["status"] == "trained") & group[column].notna()]
        rhos = [spearman(g["depth"], g[column]) for _, g in trained.groupby("seed")]
        mean = float(np.nanmean(rhos)) if any(not math.isnan(r) for r in rhos) else math.nan
        ours = (
            f"mean Spearman(depth, {what}) = {mean:.3g} over all trained depths; not evidence: {how}"
            if not math.isnan(mean)
            else f"not measured: {how}"
        )
        evidence, shown = Evidence(estimate=mean), ""
    return {
        "claim": claim,
        "source": source,
        "statistic": f"mean over seeds of Spearman(depth, {column})",
        "region": _holds_when("a rise (permutation test over each seed's depths)"),
        "basis": how,
        "depths_used": shown,
        "excluded": excluded_depths(group, column),
        "log_value": log_value,
        "our_value": ours,
        "note": f"{note}; a seed counts with {MIN_TREND_DEPTHS}+ usable depths",
    }, evidence


def _collapse_outcome(seed_rows: pd.DataFrame) -> float | None:
    """1.0 if a seed's stack collapsed (all latents dead, or stopped for too few alive latents) by
    COLLAPSE_DEPTH, 0.0 if COLLAPSE_DEPTH trained alive, None if the stack ended earlier for another
    reason."""
    early = seed_rows[seed_rows["depth"] <= COLLAPSE_DEPTH]
    reasons = early["stop_reason"].fillna("").astype(str)
    if ((early["status"] == "collapsed") | reasons.str.contains("alive latents")).any():
        return 1.0
    if ((early["depth"] == COLLAPSE_DEPTH) & (early["status"] == "trained")).any():
        return 0.0
    return None


def collapse_evidence(outcomes: list[float]) -> Evidence:
    """The binomial test of more than COLLAPSE_SHARE of the seeds collapsing (against: fewer)."""
    n, k = len(outcomes), int(sum(outcomes))
    if not n:
        return Evidence()
    chance = [COLLAPSE_SHARE] * n
    return Evidence(
        n, k, share_p_value(k, chance), share_p_value(n - k, chance), k / n, *clopper_pearson(k, n)
    )


def _collapse_claim(group: pd.DataFrame) -> tuple[dict, Evidence]:
    fixed = all(a in FIXED_L0 for a in stack_architecture(group).split(">"))
    outcomes = [o for _, g in group.groupby("seed") if (o := _collapse_outcome(g)) is not None]
    evidence = Evidence() if fixed else collapse_evidence(outcomes)
    how = BY_CONSTRUCTION if fixed else MEASURED if outcomes else NOT_REACHED
    trained = group["status"] == "trained"
    deepest = int(group.loc[trained, "depth"].max()) if trained.any() else 0
    if fixed:
        ours = f"not measured: {BY_CONSTRUCTION} (TopK and BatchTopK keep k latents active per input)"
    elif outcomes:
        ours = f"collapsed share {_ci_text(evidence, 'Clopper-Pearson')}"
    else:
        ours = f"no stack reached depth {COLLAPSE_DEPTH} or collapsed before it (deepest: {deepest})"
    return {
        "claim": "Deep stacks collapse: codes go dead (loss 3.6e-44 at depths 7-10 in the log's code)",
        "source": LOG_CODE,
        "statistic": f"share of seeds whose stack collapsed by depth {COLLAPSE_DEPTH}",
        "region": _holds_when(f"more than {COLLAPSE_SHARE:g} of the seeds collapsing (exact binomial)"),
        "basis": how,
        "depths_used": depth_list(group["depth"]) if how == MEASURED else "",
        "excluded": "",
        "log_value": "all latents dead from depth 6-7 (ReLU, L1 summed over the batch)",
        "our_value": ours,
        "note": "collapse = all latents dead, or the stop rule min_alive fired; stop reasons in depths.csv",
    }, evidence


def control_evidence(per_seed: list[float]) -> Evidence:
    """The sign-flip test of per-seed mean differences from the control (against: below 0)."""
    if not per_seed:
        return Evidence()
    p_value, p_against = sign_flip_p_values(per_seed)
    agree = sum(d > 0 for d in per_seed)
    return Evidence(len(per_seed), agree, p_value, p_against, float(np.mean(per_seed)), *t_interval(per_seed))


def _control_claim(group: pd.DataFrame) -> tuple[dict, Evidence, float]:
    used, _ = usable(group, CONTROL_COLUMN)
    used = used[(used["depth"] >= 2) & used[CONTROL_COLUMN].notna()]
    per_seed = used.groupby("seed")[[CONTROL_COLUMN, "control_purity_lift"]].mean()
    evidence = control_evidence(per_seed[CONTROL_COLUMN].tolist())
    control = float(per_seed["control_purity_lift"].mean()) if len(per_seed) else math.nan
    how = MEASURED if len(per_seed) else basis(group, CONTROL_COLUMN, min_depths=1)
    claim, source, log_value = CONTROL_CLAIM
    return (
        {
            "claim": claim,
            "source": source,
            "statistic": "mean over seeds of the mean over depths >= 2 of purity lift minus the control's",
            "region": _holds_when("a positive difference (exact sign-flip test over seeds)"),
            "basis": how,
            "depths_used": depth_list(used["depth"]) if len(per_seed) else "",
            "excluded": excluded_depths(group, CONTROL_COLUMN),
            "log_value": log_value,
            "our_value": (
                f"stack minus control {_ci_text(evidence, 't')}; the controls' mean lift {control:.3g}"
                if len(per_seed)
                else f"not measured: {how}"
            ),
            "note": "control: a direct SAE of the depth's width and depth 1's k on the same fit activations",
        },
        evidence,
        control,
    )


def claims(depths: pd.DataFrame) -> pd.DataFrame:
    """The research log's claims, one row per claim and (model, dataset, layer, sae, mode) group: the log's
    number, ours with its test over seeds, and a verdict by `judge`, Holm-corrected over all rows."""
    out = []
    for key, group in depths.groupby(GROUP, sort=True):
        ident = {**dict(zip(GROUP, key, strict=True)), "architecture": stack_architecture(group)}
        tested = [_depth2_claim(group)]
        taxonomy = [TAXONOMY_CLAIM] if group["abstraction_gap"].notna().any() else []
        tested += [_trend_claim(group, *spec) for spec in TREND_CLAIMS + taxonomy]
        tested.append(_collapse_claim(group))
        rows = [{**ident, **row, **evidence.row(), "control_estimate": math.nan} for row, evidence in tested]
        if CONTROL_COLUMN in group and group[CONTROL_COLUMN].notna().any():
            row, evidence, control = _control_claim(group)
            rows.append({**ident, **row, **evidence.row(), "control_estimate": control})
        out += rows
    return judge(pd.DataFrame(out, columns=[c for c in CLAIM_COLUMNS if c not in JUDGED]))[CLAIM_COLUMNS]
