"""The unit every statistic is computed over: one stack, a (model, dataset, layer, sae, mode) group.

A group's seeds are its replicates: optima, trends and verdicts are taken per group, and tests and CIs are
over its seeds. Depth 1, shared by the modes, is repeated under each mode so that every group holds a whole
stack.
"""

from __future__ import annotations

import pandas as pd

GROUP = ["model", "dataset", "layer", "sae", "mode"]


def stack_architecture(group: pd.DataFrame) -> str:
    """e.g. 'topk>batchtopk': depth 1's architecture, then the meta-SAEs'."""
    ordered = group.sort_values("depth").drop_duplicates("architecture")["architecture"]
    return ">".join(ordered)


def depth_list(depths: pd.Series) -> str:
    """The distinct depths, ascending and space-separated, as the tables' `depths_used` records them."""
    return " ".join(str(d) for d in sorted(set(depths.astype(int))))
