"""synth-summary: each criterion's estimates against the planted depth, and the root-match oracle."""

import pandas as pd

from metasae.stages.score_synth import _by_true_depth, _cases


def _optimal() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "criterion": ["max_purity", "max_purity", "fvu_knee"],
            "mode": ["decoder", "decoder", "decoder"],
            "dataset": ["tree_l2", "tree_l3", "tree_l2"],
            "true_depth": [2, 3, 2],
            "per_seed": ["2 2 1", "3 1 1", "2 2 2"],
        }
    )


def _depths() -> pd.DataFrame:
    """Seed 0 of tree_l2: depth 1 matches leaves, depths 2-3 roots (the oracle says 2); seed 1: roots only at
    a depth that stopped (no oracle case)."""
    return pd.DataFrame(
        {
            "mode": ["decoder"] * 5,
            "dataset": ["tree_l2"] * 5,
            "seed": [0, 0, 0, 1, 1],
            "depth": [1, 2, 3, 1, 2],
            "status": ["trained", "trained", "trained", "trained", "stopped"],
            "best_matched_level": [2, 1, 1, 2, 1],
            "true_depth": [2] * 5,
        }
    )


def test_cases_are_one_per_seed_and_the_oracle_is_the_first_trained_root_depth():
    cases = _cases(_optimal(), _depths())
    purity = cases[(cases["criterion"] == "max_purity") & (cases["dataset"] == "tree_l3")]
    assert purity["estimated"].tolist() == [3, 1, 1] and purity["correct"].tolist() == [True, False, False]
    oracle = cases[cases["criterion"] == "root_match"]
    assert oracle[["dataset", "true_depth", "estimated", "correct"]].values.tolist() == [
        ["tree_l2", 2, 2, True]
    ]


def test_by_true_depth_gives_median_ci_and_share_right():
    table = _by_true_depth(_cases(_optimal(), _depths())).set_index(["criterion", "true_depth"])
    purity_l2 = table.loc[("max_purity", 2)]
    assert purity_l2["estimated_median"] == 2 and purity_l2["n_cases"] == 3
    assert purity_l2["fraction_correct"] == 2 / 3 and purity_l2["estimates"] == "2 2 1"
    assert purity_l2["ci_low"] <= purity_l2["estimated_median"] <= purity_l2["ci_high"]
    knee = table.loc[("fvu_knee", 2)]
    assert (knee["ci_low"], knee["ci_high"], knee["fraction_correct"]) == (2, 2, 1.0)
