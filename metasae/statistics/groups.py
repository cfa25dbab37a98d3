"""The unit every statistic is computed over: one stack, a (model, dataset, layer, sae, mode) group.

A group's seeds are its replicates: optima, trends and verdicts are taken per group, and tests and CIs are
over its seeds. Depth 1, shared by the modes, is repeated under each mode so that every group holds a whole
stack. A run's further SAE seeds (`sae` names ending `__s<n>`) retrain the stack on the same classifier: they
measure stability across SAE seeds, and are not replicates of a claim (`claim_replicates`).
"""

from __future__ import annotations

import pandas as pd

GROUP = ["model", "dataset", "layer", "sae", "mode"]


def claim_replicates(stacks: pd.DataFrame) -> pd.DataFrame:
    """The rows a claim is tested on: each classifier seed's first SAE seed. Stacks of one classifier differ
    only in the SAE's seed, so counting each as a configuration would test the same model twice and widen the
    Holm family; a claim's replicates are classifiers, its SAE seeds a stability measure. `sae` becomes the
    configured SAE's name, so classifier seeds whose first SAE seeds differ still form one group."""
    key = ["model", "dataset", "layer", "sae_config", "mode", "seed"]
    first = stacks.groupby(key)["sae_seed"].transform("min")
    kept = stacks[stacks["sae_seed"] == first]
    return kept.assign(sae=kept["sae_config"]).reset_index(drop=True)


def stack_architecture(group: pd.DataFrame) -> str:
    """e.g. 'topk>batchtopk': depth 1's architecture, then the meta-SAEs'."""
    ordered = group.sort_values("depth").drop_duplicates("architecture")["architecture"]
    return ">".join(ordered)


def depth_list(depths: pd.Series) -> str:
    """The distinct depths, ascending and space-separated, as the tables' `depths_used` records them."""
    return " ".join(str(d) for d in sorted(set(depths.astype(int))))
