"""The statistics of the study: from per-depth rows to optimal depths, claims and their verdicts.

One module per rule: `groups` (the unit statistics are taken over), `columns` (derived columns),
`exclusions` (what is never evidence), `seed_stability` (latents reproduced across seeds), `lineage` and
`meta_structure` (how meta-SAEs decompose their parents), `intervals` (t and Clopper-Pearson CIs over
seeds, ranks and ties), `exact` (permutation and binomial tests, Holm's correction), `optimal` (optimal
depths as plateaus, the basis of a statistic, the depth-2 test), `verdicts` (the verdict rule: Holm-corrected
exact tests), `claims` (the research log's claims) and `rules` (what study.json records). Nothing here reads
a stage: stages call these.

The names below are what every summary stage uses to turn depth rows into a table and its optima.
"""

from metasae.statistics.columns import derived_columns
from metasae.statistics.groups import GROUP
from metasae.statistics.optimal import optimal_depths
from metasae.statistics.seed_stability import stability

__all__ = ["GROUP", "derived_columns", "optimal_depths", "stability"]
