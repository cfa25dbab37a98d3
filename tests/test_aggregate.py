import numpy as np
import pandas as pd
import pytest

from metasae.errors import MetasaeError
from metasae.layout import parse_summary_path
from metasae.stages import aggregate as stats


def test_knee_is_the_point_farthest_from_the_chord():
    depths = np.array([1, 2, 3, 4, 5])
    assert stats.knee_depth(depths, np.array([0.1, 0.12, 0.15, 0.7, 0.9])) == 3
    assert stats.knee_depth(np.array([1, 2]), np.array([0.3, 0.1])) == 2


def test_bootstrap_ci_brackets_the_median_and_is_degenerate_for_one_value():
    assert stats.bootstrap_median_ci([2]) == (2.0, 2.0)
    lo, hi = stats.bootstrap_median_ci([1, 2, 2, 3, 5])
    assert lo <= 2 <= hi and lo >= 1 and hi <= 5


def _depths(purity_by_seed: dict[int, list[float]]) -> pd.DataFrame:
    rows = []
    for seed, values in purity_by_seed.items():
        for depth, value in enumerate(values, start=1):
            rows.append(
                {
                    "model": "m",
                    "dataset": "d",
                    "layer": "fc1",
                    "sae": "s",
                    "mode": "decoder",
                    "seed": seed,
                    "depth": depth,
                    "architecture": "topk" if depth == 1 else "batchtopk",
                    "status": "trained",
                    "fvu": 0.1 * depth,
                    "purity_mean": value,
                    "count_all_top10_nonzero": 10 * value,
                    "mean_active_per_image": value,
                }
            )
    return pd.DataFrame(rows)


def test_optimal_depth_per_seed_median_and_log_claim():
    optimal = stats.optimal_depths(_depths({0: [0.5, 0.9, 0.2], 1: [0.5, 0.8, 0.7], 2: [0.9, 0.1, 0.1]}))
    purity = optimal[optimal["criterion"] == "max_purity"].iloc[0]
    assert purity["per_seed"] == "2 2 1" and purity["optimal_depth"] == 2 and purity["n_seeds"] == 3
    assert bool(purity["log_claim_depth2_holds"]) and purity["architecture"] == "topk>batchtopk"
    assert purity["ci_low"] <= 2 <= purity["ci_high"]
    assert set(optimal["criterion"]) == {*stats.CRITERIA, "fvu_knee"}


def test_stopped_depths_never_win():
    table = _depths({0: [0.5, 0.9, 0.2]})
    table.loc[table["depth"] == 2, "status"] = "stopped"
    optimal = stats.optimal_depths(table)
    assert optimal[optimal["criterion"] == "max_purity"].iloc[0]["optimal_depth"] == 1


def test_summary_paths_encode_the_run():
    where = parse_summary_path("results/analysis/mlp_x/seed2/glyphs/fc1/topk/decoder/depth3/summary.json")
    assert where == {
        "model": "mlp_x",
        "seed": 2,
        "dataset": "glyphs",
        "layer": "fc1",
        "sae": "topk",
        "mode": "decoder",
        "depth": 3,
    }
    assert parse_summary_path("r/analysis/m/seed0/d/fc1/s/depth1/summary.json")["mode"] is None
    with pytest.raises(MetasaeError, match="not an analysis summary path"):
        parse_summary_path("results/analysis/oops/summary.json")


def test_claims_verdicts_follow_the_numbers():
    table = _depths({0: [0.2, 0.5, 0.9], 1: [0.1, 0.4, 0.8]})
    claims = stats.claims(table, stats.optimal_depths(table))
    purity = claims[claims["claim"].str.startswith("Latents become more atomic")].iloc[0]
    assert purity["verdict"] == "holds" and "= 0.9" in purity["our_value"]
    depth2 = claims[claims["claim"].str.startswith("Depth 2 is optimal")].iloc[0]
    assert depth2["verdict"] == "fails"  # both seeds peak at depth 3
