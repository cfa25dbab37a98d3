"""The columns the report requires of `metasae aggregate`'s tables, and the verdicts it may write.

Apart from `data` (which checks them) and `format` (whose depth tables label rows by them), so that
neither of those imports the other for a list of names.
"""

from __future__ import annotations

ID_COLUMNS = ["model", "train_dataset", "dataset", "layer", "mode", "architecture"]
OPTIONAL_ID_COLUMNS = ["sae"]  # written by `metasae aggregate` (the depth-1 SAE's config name)
DEPTHS_COLUMNS = ID_COLUMNS + [
    "seed",
    "depth",
    "width",
    "alive_latents",
    "dead_fraction",
    "fvu",
    "explained_variance",
    "l0",
    "purity_mean",
    "purity_median",
    "entropy_mean",
    "count_all_top10_nonzero",
    "mean_active_per_image",
    "spliced_accuracy",
    "loss_recovered",
    "is_real",
]
OPTIMAL_COLUMNS = [
    "model",
    "dataset",
    "layer",
    "mode",
    "architecture",
    "criterion",
    "optimal_depth",
    "ci_low",
    "ci_high",
    "n_seeds",
    "log_claim_depth2_holds",
]
# The identity columns a per-configuration table tells its rows apart by (where they vary).
CONFIGURATION_COLUMNS = ("model", "dataset", "layer", *OPTIONAL_ID_COLUMNS, "mode")
CLAIMS_COLUMNS = ["claim", "log_value", "our_value", "verdict", "note"]
VERDICTS = ("holds", "fails", "inconclusive", "untested")  # = metasae.statistics.verdicts.VERDICTS
