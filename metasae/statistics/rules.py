"""The rules the study's tables are made with, as study.json records them, so that the report states the
thresholds actually used rather than the defaults the code ships now: the numbers, and the verdict and
interval rules in words (`VERDICT_RULE`, `INTERVAL_RULE`, `OPTIMUM_RULE`)."""

from __future__ import annotations

from metasae.statistics.claims import BY_CONSTRUCTION, MIN_TREND_DEPTHS
from metasae.statistics.exact import EXACT_DEPTHS, MC_SEED, PERMUTATIONS
from metasae.statistics.exclusions import DENSE_ROUTED_FRACTION, FIXED_L0, IMAGE_STATISTICS
from metasae.statistics.intervals import CI_LEVEL, TIE_TOLERANCE
from metasae.statistics.optimal import KNEE_COLUMN
from metasae.statistics.seed_stability import STABLE_COSINE
from metasae.statistics.verdicts import ALPHA, COLLAPSE_DEPTH, COLLAPSE_SHARE, MIN_SEEDS, TOO_FEW

VERDICT_RULE = (
    "Per (configuration, claim) an exact test over seeds gives p_value (the claim) and p_against (its "
    "opposite). Trend claims: the mean over seeds of Spearman(depth, value) within each seed's stack, "
    "against the null that permutes each seed's depth labels independently (enumerated exactly up to "
    f"{EXACT_DEPTHS} depths per seed, else {PERMUTATIONS} Monte Carlo draws seeded {MC_SEED}, "
    "p = (1 + #>=)/(1 + draws)); a seed counts only with "
    f"{MIN_TREND_DEPTHS}+ usable depths, none counting leaves the claim untested; p_against is the "
    "falling tail. 'Depth 2 is optimal': seeds (depths 1-3 usable) whose optimum plateau is depth 2 alone, "
    "exact binomial against chance 1/(usable depths); a plateau with 2 and another depth counts for neither "
    "side; p_against: another single depth is the optimum more often than chance, Bonferroni over those "
    f"depths. 'Deep stacks collapse': exact binomial of more than {COLLAPSE_SHARE:g} of the seeds collapsing "
    f"by depth {COLLAPSE_DEPTH} (p_against: fewer); untested, '{BY_CONSTRUCTION}', where TopK/BatchTopK "
    "produce every depth's codes. p_holm and p_against_holm: Holm-Bonferroni over all tested claims x "
    "configurations of one claims table, each family apart (optimal_depth.csv's depth-2 column: over that "
    f"table). holds: p_holm < {ALPHA:g}; fails: p_against_holm < {ALPHA:g}; inconclusive: neither (or both), "
    f"or fewer than {MIN_SEEDS} seeds ('{TOO_FEW}', p-values still reported); untested: no test (basis says "
    f"why). A false holds, or fails, anywhere in a study has chance at most {ALPHA:g} under no effect."
)
INTERVAL_RULE = (
    f"{CI_LEVEL:.0%} CIs: Student's t-interval on the mean over seeds for trends (clipped to [-1, 1]) and "
    "optimal depths; Clopper-Pearson for shares of seeds (depth-2 share, collapsed share). No percentile "
    "bootstrap of a few seeds."
)
OPTIMUM_RULE = (
    f"A tie (equal to {TIE_TOLERANCE:g}, relative) is a plateau: a seed's optimum is every depth tied for "
    "best, shown as a range (2-3). optimal_depth = the mean over seeds of the plateaus' midpoints, "
    "between estimate_low and estimate_high (the means of their lowest and highest depths); ci_low = the "
    "t-interval's lower end on the lowest depths, ci_high = its upper end on the highest (the t-interval "
    "on the mean optimal depth when no seed has a plateau; zero width when every seed agrees, which with "
    "3-5 seeds is no evidence of certainty)."
)
RULES = {
    "dense_routed_fraction": DENSE_ROUTED_FRACTION,
    "fixed_l0": FIXED_L0,
    "stable_cosine": STABLE_COSINE,
    "ci_level": CI_LEVEL,
    "alpha": ALPHA,
    "multiple_comparisons": "holm",
    "min_seeds": MIN_SEEDS,
    "min_trend_depths": MIN_TREND_DEPTHS,
    "exact_permutation_depths": EXACT_DEPTHS,
    "permutations": PERMUTATIONS,
    "tie_tolerance": TIE_TOLERANCE,
    "collapse_depth": COLLAPSE_DEPTH,
    "collapse_share": COLLAPSE_SHARE,
    "knee_column": KNEE_COLUMN,
    "image_statistics": list(IMAGE_STATISTICS),
    "verdict_rule": VERDICT_RULE,
    "interval_rule": INTERVAL_RULE,
    "optimum_rule": OPTIMUM_RULE,
}
