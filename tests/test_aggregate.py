import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from metasae.errors import MetasaeError
from metasae.groundtruth import cosine_matrix
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


def _depths(
    purity_by_seed: dict[int, list[float]],
    mode: str = "activations",
    architecture: str = "relu",
    mean_active: dict[int, list[float]] | None = None,
    d_sae: list[int] | None = None,
) -> pd.DataFrame:
    """Depth rows as `depth_rows` makes them (derived columns included), one value list per seed."""
    rows = []
    for seed, values in purity_by_seed.items():
        for depth, value in enumerate(values, start=1):
            size = (d_sae or [64] * len(values))[depth - 1]
            rows.append(
                {
                    "model": "m",
                    "dataset": "d",
                    "layer": "fc1",
                    "sae": "s",
                    "mode": mode,
                    "seed": seed,
                    "depth": depth,
                    "architecture": architecture,
                    "status": "trained",
                    "stop_reason": None,
                    "d_sae": size,
                    "fvu": 0.1 * depth,
                    "stack_fvu": 0.1 * depth,
                    "alive_latents": size,
                    "purity_mean": value,
                    "count_all_top10_nonzero": 10 * value,
                    "mean_active_per_image": (mean_active or {}).get(seed, [value] * len(values))[depth - 1],
                    "stability_mean_cosine": value,
                }
            )
    return stats.derived_columns(pd.DataFrame(rows))


def test_optimal_depth_per_seed_median_and_log_claim():
    table = _depths({0: [0.5, 0.9, 0.2], 1: [0.5, 0.8, 0.7], 2: [0.9, 0.1, 0.1]})
    optimal = stats.optimal_depths(table)
    purity = optimal[optimal["criterion"] == "max_purity"].iloc[0]
    assert purity["per_seed"] == "2 2 1" and purity["optimal_depth"] == 2 and purity["n_seeds"] == 3
    assert purity["architecture"] == "relu" and purity["basis"] == "measured"
    assert purity["ci_low"] <= 2 <= purity["ci_high"]
    # One seed of three disagrees: a third of resampled medians are 1, so the CI crosses 1.5.
    assert purity["log_claim_depth2"] == "inconclusive" and not purity["log_claim_depth2_holds"]
    assert set(optimal["criterion"]) == {*stats.CRITERIA, "fvu_knee"}
    agreed = stats.optimal_depths(_depths({s: [0.5, 0.9, 0.2] for s in range(3)}))
    assert (agreed.set_index("criterion").loc["max_purity", "log_claim_depth2"]) == "holds"


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


def _claim(table: pd.DataFrame, prefix: str) -> pd.Series:
    claims = stats.claims(table)
    assert set(claims["verdict"]) <= set(stats.VERDICTS)
    return claims[claims["claim"].str.startswith(prefix)].iloc[0]


def test_claims_verdicts_follow_the_numbers():
    table = _depths({0: [0.2, 0.5, 0.9], 1: [0.1, 0.4, 0.8], 2: [0.3, 0.6, 0.7]})
    purity = _claim(table, "Latents become more atomic")
    assert purity["verdict"] == "holds" and purity["basis"] == "measured" and purity["estimate"] > 0.8
    assert purity["ci_low"] > 0 and purity["n_seeds"] == 3 and "fewer than the 5" in purity["our_value"]
    assert purity["depths_used"] == "1 2 3"
    depth2 = _claim(table, "Depth 2 is optimal")
    assert depth2["verdict"] == "fails" and depth2["ci_low"] == 3  # every seed peaks at depth 3
    falling = _claim(_depths({s: [0.9, 0.5, 0.2] for s in range(3)}), "Latents become more atomic")
    assert falling["verdict"] == "fails" and falling["ci_high"] < 0
    mixed = _claim(_depths({0: [0.2, 0.5, 0.9], 1: [0.9, 0.5, 0.2], 2: [0.5, 0.6, 0.4]}), "Latents become")
    assert mixed["verdict"] == "inconclusive" and mixed["ci_low"] < 0 < mixed["ci_high"]


def test_untested_when_the_study_stops_short():
    table = _depths({0: [0.2, 0.5], 1: [0.1, 0.4]})  # depth 3 never trained: "depth 2 is optimal" needs it
    depth2 = _claim(table, "Depth 2 is optimal")
    assert depth2["verdict"] == "untested" and depth2["basis"] == "depth not reached"
    collapse = _claim(table, "Deep stacks collapse")  # nothing reached depth 7, nothing collapsed
    assert collapse["verdict"] == "untested" and collapse["basis"] == "depth not reached"
    one_depth = _claim(_depths({0: [0.2], 1: [0.3]}), "Latents become more atomic")
    assert one_depth["verdict"] == "untested"


def test_collapse_is_measured_when_stacks_die():
    table = _depths({s: [0.5, 0.4, 0.3] for s in range(3)})
    table.loc[table["depth"] == 3, ["status", "stop_reason"]] = [
        "stopped",
        "parent has 2 alive latents, fewer than stop.min_alive=8",
    ]
    collapse = _claim(table, "Deep stacks collapse")
    assert collapse["estimate"] == 1 and collapse["verdict"] == "holds"


def test_topk_activation_counts_are_fixed_by_construction_and_never_a_verdict():
    # TopK in activations mode: k = 16 at depth 1, then 8, while widths halve, so the mean active count
    # falls and its fraction rises whatever the data do.
    table = _depths(
        {s: [0.3, 0.4, 0.5] for s in range(3)},
        mode="activations",
        architecture="topk",
        mean_active={s: [16.0, 8.0, 8.0] for s in range(3)},
        d_sae=[512, 256, 128],
    )
    assert set(table["fixed_by_construction"]) == {
        "l0 mean_active_per_image mean_active_fraction",
        "l0 mean_active_per_image mean_active_fraction meta_latents_per_parent",
    }
    assert table["excluded_because"].str.contains("TopK keeps exactly k").all()
    active = _claim(table, "The average number of activations increases")
    assert active["verdict"] == "untested" and active["basis"] == "fixed by construction"
    assert "not evidence: fixed by construction" in active["our_value"] and active["estimate"] > 0
    assert "fixed by construction at depth 1 2 3" in active["excluded"]
    optimal = stats.optimal_depths(table).set_index("criterion")
    assert optimal.loc["max_mean_active", "basis"] == "fixed by construction"
    assert np.isnan(optimal.loc["max_mean_active", "optimal_depth"])
    assert optimal.loc["max_mean_active", "log_claim_depth2"] == "untested"
    # Purity is not fixed by TopK: it still gets a verdict.
    assert _claim(table, "Latents become more atomic")["verdict"] == "holds"


def test_relu_lets_the_activation_count_vary_and_be_tested():
    table = _depths(
        {s: [0.3, 0.4, 0.5] for s in range(3)},
        architecture="relu",
        mean_active={0: [2.0, 9.0, 1.0], 1: [3.0, 11.0, 2.0], 2: [2.5, 10.0, 1.5]},
    )
    assert (table["fixed_by_construction"] == "").all()
    active = _claim(table, "The average number of activations increases")
    assert active["basis"] == "measured" and active["verdict"] in {"fails", "inconclusive"}
    depth2 = stats.optimal_depths(table).set_index("criterion").loc["max_mean_active"]
    assert depth2["per_seed"] == "2 2 2" and depth2["log_claim_depth2"] == "holds"


def test_dense_routed_codes_are_excluded_in_decoder_mode():
    # Decoder mode: depth 1 TopK (16 of 512 per image, fixed), depth 2 routed codes sparse (20 of 128),
    # depth 3 dense (31.8 of 32): image-level statistics at depth 3 measure the dictionary, not the images.
    table = _depths(
        {s: [0.3, 0.5, 0.9] for s in range(3)},
        mode="decoder",
        architecture="topk",
        mean_active={s: [16.0, 20.0, 31.8] for s in range(3)},
        d_sae=[512, 128, 32],
    )
    table.loc[table["depth"] > 1, "architecture"] = "batchtopk"
    table = stats.derived_columns(table)
    assert table["routed_codes_dense"].tolist() == [False, False, True] * 3
    deep = table[table["depth"] == 3].iloc[0]
    assert "routed codes dense: 31.8 of 32" in deep["excluded_because"]
    assert stats.excluded_as(deep, "purity_mean") == stats.DENSE
    assert (
        stats.excluded_as(deep, "stack_fvu") is None
    )  # the layer rebuilt from depth 3 is not image-code based
    purity = _claim(table, "Latents become more atomic")
    assert purity["basis"] == "measured" and purity["depths_used"] == "1 2"
    assert "dense routed codes at depth 3" in purity["excluded"]
    depth2 = _claim(table, "Depth 2 is optimal")  # needs depths 1-3: depth 3 is dense
    assert depth2["verdict"] == "untested" and depth2["basis"] == "dense routed codes"
    active = _claim(table, "The average number of activations increases")
    assert active["verdict"] == "untested"  # depth 1 fixed by TopK, depth 3 dense: one depth left
    # Stability matched on dense code columns follows the data's main directions: excluded there too.
    assert stats.excluded_as(deep, "stability_mean_cosine") is None  # no basis recorded: not code columns
    coded = table.assign(stability_basis="codes")
    assert stats.excluded_as(coded[coded["depth"] == 3].iloc[0], "stability_mean_cosine") == stats.DENSE
    stable = stats.optimal_depths(coded).set_index("criterion").loc["max_stability"]
    assert stable["depths_used"] == "1 2" and "dense routed codes at depth 3" in stable["excluded"]


def test_spearman_and_its_seed_bootstrap_ci():
    assert stats.spearman(np.array([1, 2, 3]), np.array([0.1, 0.5, 0.4])) == pytest.approx(0.5)
    assert stats.spearman(np.array([1, 2, 3]), np.array([2.0, 2.0, 2.0])) == 0
    assert np.isnan(stats.spearman(np.array([1, 1]), np.array([0.1, 0.2])))
    # Seeds differ in level but each rises: the within-seed correlation is 1 in every seed.
    rising = [(np.array([1.0, 2, 3]), np.array([0.1, 0.2, 0.3]) + s) for s in range(3)]
    assert stats.seed_spearman(rising) == (1.0, 1.0, 1.0, 3)
    mixed = [(np.array([1.0, 2, 3]), np.array(v)) for v in ([1, 2, 3], [3, 2, 1], [1, 3, 2])]
    mean, lo, hi, n = stats.seed_spearman(mixed)
    assert mean == pytest.approx(0.5 / 3) and lo == -1 and hi == 1 and n == 3
    assert np.isnan(stats.seed_spearman([(np.array([1.0]), np.array([0.3]))])[0])


@pytest.mark.parametrize(
    "low, high, n, verdict",
    [
        (0.2, 0.8, 3, "holds"),
        (-0.8, -0.1, 3, "fails"),
        (-0.2, 0.5, 3, "inconclusive"),
        (0.2, 0.8, 1, "inconclusive"),  # one seed: no CI
        (float("nan"), float("nan"), 3, "inconclusive"),
    ],
)
def test_interval_verdict_rule(low, high, n, verdict):
    assert stats.interval_verdict(low, high, stats.TREND_REGION, n) == verdict


def test_depth_region_verdicts():
    assert stats.interval_verdict(2, 2, stats.DEPTH2_REGION, 3) == "holds"
    assert stats.interval_verdict(3, 4, stats.DEPTH2_REGION, 3) == "fails"
    assert stats.interval_verdict(1, 2, stats.DEPTH2_REGION, 3) == "inconclusive"


def test_stability_on_planted_rows():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(40, 16, generator=gen)
    assert stats.matched_similarity(rows, rows) == pytest.approx((1.0, 1.0))
    permuted = rows[torch.randperm(40, generator=gen)] * 3.0  # order and scale do not matter
    assert stats.matched_similarity(rows, permuted) == pytest.approx((1.0, 1.0))
    other = torch.randn(40, 16, generator=gen)
    mean, matched = stats.matched_similarity(rows, other)
    assert mean < 0.6 and matched == 0
    half = torch.cat([rows[:20], other[:20]])
    assert stats.matched_similarity(rows, half)[1] == pytest.approx(0.5)
    per_seed = stats.seed_stability({0: rows, 1: permuted, 2: other})
    assert per_seed[0][1] == pytest.approx(0.5) and per_seed[2][1] == 0  # seed 0 matches seed 1, not 2
    assert np.isnan(stats.matched_similarity(rows[:0], rows)[0])


def _folder(tmp_path, name, codes, source, mode="base"):
    acts = tmp_path / name
    acts.mkdir()
    (acts / "manifest.json").write_text(json.dumps({"source_model": source}))
    w_dec = torch.eye(codes.shape[1], 8)
    return SimpleNamespace(
        acts_dir=acts, mode=mode, codes=codes.to_sparse(), sae=SimpleNamespace(W_dec=w_dec), path=acts
    )


def test_stability_matches_code_columns_when_seeds_have_their_own_classifier(tmp_path):
    gen = torch.Generator().manual_seed(1)
    codes = torch.rand(50, 6, generator=gen) * (torch.rand(50, 6, generator=gen) > 0.6)
    codes[:, 5] = 0  # a dead latent is left out of the matching
    seeds = {
        0: _folder(tmp_path, "a", codes, "models/seed0"),
        1: _folder(tmp_path, "b", codes[:, [4, 2, 0, 1, 3, 5]] * 2, "models/seed1"),
    }
    basis, matrices = stats.stability_inputs(seeds)
    assert basis == "codes" and matrices[0].columns.shape == (50, 5)
    assert stats.seed_stability(matrices)[1] == pytest.approx((1.0, 1.0))
    shared = {0: _folder(tmp_path, "c", codes, "models/one"), 1: _folder(tmp_path, "d", codes, "models/one")}
    assert stats.stability_inputs(shared)[0] == "decoder rows"


def test_report_reads_the_new_tables(tmp_path):
    """The write-up renders per-claim tables with CIs, the exclusions and the rules the tables were made
    with, from what `aggregate` writes."""
    from metasae.io import write_json
    from metasae.report_content import ReportData

    table = _depths(
        {s: [0.3, 0.4, 0.5] for s in range(3)},
        architecture="topk",
        mean_active={s: [16.0, 8.0, 8.0] for s in range(3)},
        d_sae=[512, 256, 128],
    ).assign(
        train_dataset="digits:train",
        dataset_ref="digits:train",
        is_real=False,
        explained_variance=0.9,
        l0=8.0,
        dead_fraction=0.2,
        purity_median=0.5,
        entropy_mean=1.0,
        spliced_accuracy=0.9,
        loss_recovered=0.8,
    )
    summary = tmp_path / "summary"
    summary.mkdir()
    table.to_csv(summary / "depths.csv", index=False)
    stats.optimal_depths(table).to_csv(summary / "optimal_depth.csv", index=False)
    stats.claims(table).to_csv(summary / "claims.csv", index=False)
    write_json(summary / "study.json", {"rules": {**stats.RULES, "dense_routed_fraction": 0.4}})
    report = ReportData(tmp_path, tmp_path / "figs")
    claims = report.claims()
    assert "| fixed by construction at depth 1 2 3 |" in claims and "3 (< 5)" in claims
    assert "it holds when the CI lies above 0." in claims
    assert "more than 40% of the dictionary" in report.method()  # the rule study.json records
    assert "| max_mean_active" in report.optimal_depth() and "fixed by construction" in report.optimal_depth()
    appendix = report.more_metrics()
    assert "961 (0.42)" in appendix and "l0, mean_active_fraction, mean_active_per_image" in appendix
    assert "up to 20% of the depth-1 latents are dead (never active on the probe images" in report.tldr()


def test_abstraction_gap_is_superclass_lift_minus_class_lift_and_a_claim_only_with_a_taxonomy():
    table = _depths({s: [0.5, 0.5, 0.5] for s in range(3)})
    assert table["abstraction_gap"].isna().all()  # digits: no superclasses, no claim
    assert not stats.claims(table)["claim"].str.startswith("Deeper meta-latents").any()
    raw = table.drop(columns=["abstraction_gap"]).assign(purity_chance=0.3, superclass_purity_chance=0.6)
    for seed in range(3):  # class purity falls to chance while superclass purity stays pure: more abstract
        at = raw["seed"] == seed
        raw.loc[at, "purity_mean"] = [0.9, 0.6, 0.3 + 0.01 * seed]
        raw.loc[at, "superclass_purity_mean"] = [1.0, 1.0, 1.0]
    table = stats.derived_columns(raw)
    gap = table.loc[(table["seed"] == 0), "abstraction_gap"].round(6).tolist()
    assert gap == [round(1 - 6 / 7, 6), round(1 - 3 / 7, 6), 1.0]  # superclass lift 1; class lift (p-0.3)/0.7
    claim = _claim(table, "Deeper meta-latents are more abstract")
    assert claim["verdict"] == "holds" and claim["basis"] == "measured"


@pytest.mark.parametrize("density", [0.02, 0.5])  # the sparse product, and the dense one
def test_code_columns_correlation_equals_the_cosine_of_centred_dense_columns(density):
    g = torch.Generator().manual_seed(0)
    codes = [
        torch.rand(300, 20, generator=g, dtype=torch.float64) * (torch.rand(300, 20, generator=g) < density)
        for _ in range(2)
    ]
    codes[1][:, 3] = 0.7  # a constant column correlates with nothing: 0, as a zero row's cosine
    alive = [torch.ones(20, dtype=torch.bool), torch.arange(20) % 4 != 0]
    columns = [stats.CodeColumns.of(c.to_sparse(), a) for c, a in zip(codes, alive, strict=True)]
    centred = [(c[:, a] - c[:, a].mean(0)).T for c, a in zip(codes, alive, strict=True)]
    expected = cosine_matrix(*centred).numpy()
    assert np.allclose(columns[0].correlation(columns[1]), expected, atol=1e-10)
    assert len(columns[1]) == 15
    assert stats.matched_similarity(columns[0], columns[0]) == pytest.approx((1.0, 1.0))
