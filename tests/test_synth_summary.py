"""synth-summary's tables from criteria.csv cases, the trained stacks' recovery grid, and the write-up's
known-depth section reading them."""

import numpy as np
import pandas as pd
import pytest

from metasae.stages.score_synth import _accuracy, _by_true_depth, recovery, recovery_table
from metasae.statistics.intervals import spearman_ci
from metasae.writeup.data import ReportData
from metasae.writeup.sections.optimal_depth import known_depth


def _cases() -> pd.DataFrame:
    """Oracle right at L = 1, 2; trained right at L = 1, a plateau 1-2 at L = 2 (wrong); shuffled says 1."""
    rows = [
        ("oracle", 1, 1, 1),
        ("oracle", 2, 2, 2),
        ("trained", 1, 1, 1),
        ("trained", 2, 1, 2),
        ("shuffled", 1, 1, 1),
        ("shuffled", 2, 1, 1),
    ]
    return pd.DataFrame(
        [
            {
                "stack": stack,
                "mode": "decoder",
                "criterion": "deepest_meta_gain",
                "planted_depth": planted,
                "tree_seed": 0,
                "sae_seed": 0,
                "estimate_low": float(low),
                "estimate_high": float(high),
                "right": low == high == planted,
            }
            for stack, planted, low, high in rows
        ]
    )


def test_by_true_depth_uses_plateau_midpoints_and_counts_plateaus_wrong():
    table = _by_true_depth(_cases()).set_index(["stack", "planted_depth"])
    assert table.loc[("trained", 2), "estimated_median"] == 1.5
    assert (
        table.loc[("trained", 2), "fraction_correct"] == 0 and table.loc[("trained", 2), "estimates"] == "1-2"
    )
    assert table.loc[("oracle", 2), "fraction_correct"] == 1


def test_accuracy_gives_share_right_and_spearman():
    acc = _accuracy(_cases()).set_index("stack")
    assert acc.loc["oracle", "fraction_correct"] == 1 and acc.loc["oracle", "spearman"] == pytest.approx(1)
    assert acc.loc["shuffled", "fraction_correct"] == 0.5 and pd.isna(acc.loc["shuffled", "spearman"])
    # two planted trees are too few units for a Spearman interval; the share's exact interval holds 1 of 2
    assert acc.loc["oracle", "n_trees"] == 2 and pd.isna(acc.loc["oracle", "spearman_low"])
    assert acc.loc["shuffled", "correct_low"] < 0.5 < acc.loc["shuffled", "correct_high"]


def test_spearman_ci_covers_the_true_rank_correlation_95_percent_of_the_time():
    """Bivariate normal samples of 12 units (the synth study's planted trees): the interval must hold the
    population Spearman, (6 / pi) asin(r / 2), in about 95% of 2,000 draws, and widen with fewer units."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    r = 0.8
    truth = 6 / np.pi * np.arcsin(r / 2)
    cov = [[1, r], [r, 1]]
    hits = 0
    for _ in range(2000):
        x = rng.multivariate_normal([0, 0], cov, size=12)
        low, high = spearman_ci(float(spearmanr(x[:, 0], x[:, 1])[0]), 12)
        hits += low <= truth <= high
    assert 0.93 <= hits / 2000 <= 0.99
    narrow, wide = spearman_ci(0.8, 60), spearman_ci(0.8, 12)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]
    assert all(np.isnan(spearman_ci(0.8, 3))) and all(np.isnan(spearman_ci(float("nan"), 12)))


def test_recovery_normalises_each_level_by_its_best_depth():
    table = pd.DataFrame(
        {
            "stack": "trained",
            "status": "trained",
            "mode": "decoder",
            "true_depth": 2,
            "dataset": "t",
            "seed": 0,
            "depth": [1, 2],
            "level1_hungarian_mean_cosine": [0.4, 0.8],
            "level2_hungarian_mean_cosine": [0.9, 0.3],
            "level1_clade_ari": [0.1, 1.0],
            "level2_clade_ari": [1.0, 0.0],
        }
    )
    grid = recovery(table).set_index(["depth", "level"])
    assert grid.loc[(2, 1), "hungarian_normed"] == 1 and grid.loc[(1, 1), "hungarian_normed"] == 0.5
    assert grid.loc[(1, 2), "hungarian_normed"] == 1 and grid.loc[(2, 1), "clade_ari"] == 1
    assert grid.loc[(1, 1), "hungarian"] == pytest.approx(0.4)
    both = recovery_table(pd.concat([table, table.assign(stack="matryoshka", level1_clade_ari=0.0)]))
    assert set(both["stack"]) == {"trained", "matryoshka"} and len(both) == 2 * len(grid)
    assert both[both["stack"] == "matryoshka"]["clade_ari"].max() == pytest.approx(1.0)  # level 2's


def test_known_depth_says_which_criteria_pass(tmp_path):
    folder = tmp_path / "results" / "synth_summary"
    folder.mkdir(parents=True)
    assert "Not run" in known_depth(ReportData(tmp_path / "results", tmp_path / "figs"))
    _accuracy(_cases()).to_csv(folder / "synth_accuracy.csv", index=False)
    _by_true_depth(_cases()).to_csv(folder / "synth_depth.csv", index=False)
    text = known_depth(ReportData(tmp_path / "results", tmp_path / "figs"))
    assert "On the oracle stacks these criteria find L in every case, both modes: deepest_meta_gain." in text
    assert "On the trained stacks no criterion finds L in every case" in text and "50%" in text


def test_known_depth_names_a_plain_statistic_that_passes_the_oracle_and_its_shuffled_share(tmp_path):
    folder = tmp_path / "results" / "synth_summary"
    folder.mkdir(parents=True)
    _accuracy(_cases()).to_csv(folder / "synth_accuracy.csv", index=False)
    report = ReportData(tmp_path / "results", tmp_path / "figs")
    assert "plain statistics" not in known_depth(report)  # no statistics_accuracy.csv: nothing said
    statistic = _cases().assign(criterion="deepest_row_structure")
    missing = _cases().assign(criterion="max_purity", right=False)
    _accuracy(pd.concat([statistic, missing])).to_csv(folder / "statistics_accuracy.csv", index=False)
    text = known_depth(report)
    assert (
        "deepest_row_structure finds L on every oracle stack, and is right in 50% of the shuffled control's"
        in text
    )
    assert "the others miss L on the oracle stacks somewhere" in text and "max_purity" in text
    # each table after a blank line, or pandoc reads it as text
    assert "\n\n| stack" in text and "\n\n| criterion" in text
