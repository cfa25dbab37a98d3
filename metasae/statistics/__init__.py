"""The statistics of the study: from per-depth rows to optimal depths, claims and their verdicts.

One module per rule: `groups` (the unit statistics are taken over), `columns` (derived columns),
`exclusions` (what is never evidence), `seed_stability` (latents reproduced across seeds), `lineage` and
`meta_structure` (how meta-SAEs decompose their parents), `intervals` (t and Clopper-Pearson CIs over
seeds, ranks and ties), `exact` (permutation and binomial tests, Holm's correction), `optimal` (optimal
depths as plateaus, the basis of a statistic, the depth-2 test), `verdicts` (the verdict rule: Holm-corrected
exact tests), `claims` (the research log's claims) and `rules` (what study.json records). Nothing here reads
a stage: stages call these.


The package imports nothing itself: a stage that needs one module (meta gain, in every analysis job) does not
pay for the others' imports (scipy, scikit-learn: about a second a job).
"""
