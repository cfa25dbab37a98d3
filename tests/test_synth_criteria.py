"""The optimal-depth criteria against planted trees of known depth L (issue 25): on the oracle stack every
criterion the study answers with (metasae.statistics.optimal.CRITERIA) returns L for every L in 1..4, in both
modes; on the shuffled control none is right more often than chance; and each former criterion kept as a
plain statistic (STATISTICS) fails the oracle somewhere, which is why it gives no answer."""

from __future__ import annotations

import pandas as pd
import pytest

from metasae.stages.score_synth import CRITERIA_COLUMNS, _cases, score_synth, synth_summary
from metasae.stages.synth_acts import synth_activations, tree_spec
from metasae.stages.synth_oracle import STACK_DEPTHS, synth_oracle
from metasae.statistics.exact import share_p_value
from metasae.statistics.optimal import CRITERIA, STATISTICS, seed_optima

SEEDS = (0, 1)
TREES = {
    f"tree_l{L}": {"depth": L, "data_seed": 0, "n_trees": 8, "branching": 2, "d": 64, "n_samples": 600}
    for L in (1, 2, 3, 4)
}
MODES = {"decoder": {"architecture": "topk"}, "activations": {"architecture": "topk"}}
CONFIG = {"sae": {}, "meta": {"modes": MODES}, "synth": {"trees": TREES}}
FOLDERS = ["depth1"] + [f"{m}/depth{d}" for m in MODES for d in range(2, STACK_DEPTHS + 1)]


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """Oracle and shuffled stacks of every tree and seed, scored and summarised as the workflow does."""
    root = tmp_path_factory.mktemp("criteria")
    scores = []
    for tree, params in TREES.items():
        for seed in SEEDS:
            acts = root / f"acts/synth/seed{seed}/{tree}/synth"
            synth_activations(tree_spec(params, seed), acts)
            for kind in ("oracle", "shuffled"):
                run = f"synth/seed{seed}/{tree}/synth/{kind}"
                synth_oracle(acts, root / "sae" / run, kind, seed)
                for folder in FOLDERS:
                    out = root / "synth_scores" / run / folder
                    score_synth(root / "sae" / run / folder, out)
                    scores.append(out / "score.json")
    return synth_summary(scores, CONFIG, root / "synth_summary")


def test_criteria_csv_has_the_contract_columns(summary):
    cases = summary["criteria"]
    assert list(cases.columns) == CRITERIA_COLUMNS
    assert set(cases["stack"]) == {"oracle", "shuffled"} and set(cases["criterion"]) == set(CRITERIA)
    assert len(cases) == 2 * len(MODES) * len(CRITERIA) * len(TREES) * len(SEEDS)


def test_every_criterion_finds_the_planted_depth_of_the_oracle(summary):
    oracle = summary["criteria"].query("stack == 'oracle'")
    wrong = oracle[~oracle["right"]]
    assert wrong.empty, wrong.to_string()


def _chances(table: pd.DataFrame, cases: pd.DataFrame) -> list[float]:
    """1 / (the trained depths of the case's stack): a depth drawn at random is right this often."""
    trained = table[table["status"] == "trained"].groupby(["sae", "mode", "true_depth", "seed"])["depth"]
    n = trained.nunique()
    return [1 / n[("shuffled", c.mode, c.planted_depth, c.sae_seed)] for c in cases.itertuples()]


def test_no_criterion_beats_chance_on_the_shuffled_control(summary):
    table, cases = summary["scores"], summary["criteria"].query("stack == 'shuffled'")
    for criterion, group in cases.groupby("criterion"):
        k = int(group["right"].sum())
        p = share_p_value(k, _chances(table, group))
        assert p > 0.05, (criterion, k, len(group), p)


def test_former_criteria_fail_the_oracle(summary):
    """Each plain statistic, read as a criterion, misses L on the oracle for some tree: why none answers."""
    table = summary["scores"].query("sae == 'oracle'")
    for name, how in STATISTICS.items():
        misses = 0
        for (_tree, _mode, _seed), rows in table.groupby(["dataset", "mode", "seed"]):
            found = seed_optima(rows, name, min_depths=how.min_depths)
            planted = int(rows["true_depth"].iloc[0])
            misses += not found.per_seed or found.per_seed[0].plateau != (planted,)
        assert misses > 0, name


def test_cases_read_plateaus_as_ranges():
    table = pd.DataFrame(
        {
            "model": "synth",
            "dataset": "t",
            "layer": "synth",
            "sae": "oracle",
            "mode": "decoder",
            "stack": "oracle",
            "true_depth": 2,
            "tree_seed": 0,
            "seed": 0,
            "depth": [1, 2, 3],
            "status": "trained",
            "tree_identity_mean": [0.5, 1.0, 1.0],
            "meta_gain_z": [None, 9.0, -1.0],
        }
    )
    cases = _cases(table).set_index("criterion")
    tied = cases.loc["max_tree_identity"]
    assert (tied["estimate_low"], tied["estimate_high"], tied["right"]) == (2, 3, False)  # a plateau
    gain = cases.loc["deepest_meta_gain"]
    assert (gain["estimate_low"], gain["estimate_high"], gain["right"]) == (2, 2, True)


def test_the_plain_statistics_are_scored_as_criteria_beside_them(summary, tmp_path_factory):
    """statistics.csv: every plain statistic's cases in criteria.csv's columns, so how near each comes to
    passing the admission test is in the study's output, not in a script."""
    folder = next(tmp_path_factory.getbasetemp().glob("criteria*/synth_summary"))
    cases = pd.read_csv(folder / "statistics.csv")
    assert list(cases.columns) == CRITERIA_COLUMNS and set(cases["criterion"]) == set(STATISTICS)
    accuracy = pd.read_csv(folder / "statistics_accuracy.csv")
    assert set(accuracy["criterion"]) == set(STATISTICS) and set(accuracy["stack"]) == {"oracle", "shuffled"}
