"""The study's statistics (`metasae.statistics`) on hand-made depth tables: optima, claims, exclusions,
intervals, verdicts and cross-seed stability, and the report reading the tables they make."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from metasae.errors import MetasaeError
from metasae.groundtruth import cosine_matrix
from metasae.layout import parse_summary_path
from metasae.statistics.claims import BY_CONSTRUCTION, claims, trend_evidence
from metasae.statistics.columns import derived_columns
from metasae.statistics.exclusions import DENSE, excluded_as, excluded_depths
from metasae.statistics.intervals import bootstrap_median_ci, spearman
from metasae.statistics.optimal import (
    CRITERIA,
    DEPTH2_NEEDED,
    STATISTICS,
    depth2_basis,
    depth2_evidence,
    knee_plateau,
    optimal_depths,
    seed_optima,
)
from metasae.statistics.rules import RULES
from metasae.statistics.seed_stability import (
    CodeColumns,
    matched_similarity,
    seed_stability,
    stability_inputs,
)
from metasae.statistics.verdicts import TOO_FEW, VERDICTS, judge, verdict


def test_knee_is_the_point_farthest_from_the_chord():
    depths = np.array([1, 2, 3, 4, 5])
    assert knee_plateau(depths, np.array([0.1, 0.12, 0.15, 0.7, 0.9])) == (3,)
    assert knee_plateau(np.array([1, 2]), np.array([0.3, 0.1])) == (2,)
    assert knee_plateau(depths, 0.1 * depths) == (1, 2, 3, 4, 5)  # a straight line: no knee, all tie


def test_bootstrap_ci_brackets_the_median_and_is_degenerate_for_one_value():
    assert bootstrap_median_ci([2]) == (2.0, 2.0)
    lo, hi = bootstrap_median_ci([1, 2, 2, 3, 5])
    assert lo <= 2 <= hi and lo >= 1 and hi <= 5


CHANCE = 0.1  # the rated purity's chance floor in `_depths`


def _depths(
    purity_by_seed: dict[int, list[float]],
    mode: str = "activations",
    architecture: str = "relu",
    mean_active: dict[int, list[float]] | None = None,
    width: list[int] | None = None,
    gain: dict[int, list[float]] | None = None,
) -> pd.DataFrame:
    """Depth rows as `depth_rows` makes them (derived columns included), one value list per seed: the value
    is purity, rated purity (lift over CHANCE rises with it), tree identity, top-10 count and stability
    alike; `gain` the seed's meta_gain_z by depth (NaN unless given: a real study's depth 1 has none)."""
    rows = []
    for seed, values in purity_by_seed.items():
        for depth, value in enumerate(values, start=1):
            size = (width or [64] * len(values))[depth - 1]
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
                    "width": size,
                    "fvu": 0.1 * depth,
                    "stack_fvu": 0.1 * depth,
                    "alive_latents": size,
                    "purity_mean": value,
                    "purity_rated_mean": value,
                    "purity_rated_chance": CHANCE,
                    "tree_identity_mean": value,
                    "meta_gain_z": (gain or {}).get(seed, [math.nan] * len(values))[depth - 1],
                    "count_all_top10_nonzero": 10 * value,
                    "mean_active_per_image": (mean_active or {}).get(seed, [value] * len(values))[depth - 1],
                    "stability_mean_cosine": value,
                }
            )
    return derived_columns(pd.DataFrame(rows))


def test_optimal_depth_per_seed_mean_and_log_claim():
    gain = {0: [math.nan, 5.0, 1.0], 1: [math.nan, 5.0, 3.0], 2: [math.nan, 1.0, 9.0]}
    table = _depths({0: [0.5, 0.9, 0.2], 1: [0.5, 0.8, 0.7], 2: [0.9, 0.1, 0.1]}, gain=gain)
    optimal = optimal_depths(table).set_index("criterion")
    assert list(optimal.index) == list(CRITERIA)  # the former criteria give no optimal-depth answer
    assert not set(STATISTICS) & set(optimal.index)
    tree = optimal.loc["max_tree_identity"]
    assert tree["column"] == "tree_identity_mean"
    assert tree["per_seed"] == "2 2 1" and tree["n_seeds"] == 3
    assert tree["optimal_depth"] == pytest.approx(5 / 3)
    assert tree["estimate_low"] == tree["estimate_high"] == tree["optimal_depth"]  # no plateau
    assert tree["architecture"] == "relu" and tree["basis"] == "measured"
    # the t-interval on the mean of 2, 2, 1: 5/3 +/- t(0.975, 2) * 0.577 / sqrt(3)
    assert (tree["ci_low"], tree["ci_high"]) == pytest.approx((5 / 3 - 1.4342, 5 / 3 + 1.4342), abs=1e-3)
    assert tree["log_claim_depth2"] == "inconclusive" and not tree["log_claim_depth2_holds"]  # 3 seeds
    # deepest depth whose meta-SAE and every shallower one beat the null (z > 2): seed 2's depth 2 does
    # not, so its depth 3 (z = 9) cannot count; depth 1 has no meta-SAE and is never a usable depth
    gained = optimal.loc["deepest_meta_gain"]
    assert gained["column"] == "meta_gain_z" and gained["basis"] == "measured"
    assert gained["per_seed"] == "2 3 1" and gained["optimal_depth"] == 2 and gained["depths_used"] == "2 3"
    assert gained["log_claim_depth2"] == "untested"  # depths 1-3 are never all usable
    # the former criteria are still statistics the claims read: the same per-seed optima
    assert " ".join(map(str, seed_optima(table, "max_purity").per_seed)) == "2 2 1"
    # Five seeds all at depth 2 of 3: p = (1/3)^5 = 0.004, Holm over the table's tested rows: < 0.05.
    five = _depths({s: [0.5, 0.9, 0.2] for s in range(5)})
    agreed = optimal_depths(five).set_index("criterion")
    assert agreed.loc["max_tree_identity", "log_claim_depth2"] == "holds"
    assert agreed.loc["deepest_meta_gain", "basis"] == "no value"  # no meta_gain_z: no answer
    assert agreed.loc["deepest_meta_gain", "log_claim_depth2"] == "untested"
    knee = seed_optima(five, "fvu_knee", min_depths=3)
    assert " ".join(map(str, knee.per_seed)) == " ".join(["1-3"] * 5)  # a straight FVU line has no knee
    tied = depth2_evidence(knee.per_seed)  # a plateau counts for neither side
    assert (tied.n_seeds, tied.n_agree, tied.p_value, tied.p_against) == (5, 0, 1.0, 1.0)
    assert judge(pd.DataFrame([{**tied.row(), "basis": "measured"}]))["verdict"][0] == "inconclusive"


def test_stopped_depths_never_win():
    table = _depths({0: [0.5, 0.9, 0.2]}, gain={0: [math.nan, 5.0, 5.0]})
    trained = optimal_depths(table).set_index("criterion")["optimal_depth"]
    assert (trained["max_tree_identity"], trained["deepest_meta_gain"]) == (2, 3)
    table.loc[table["depth"] == 2, "status"] = "stopped"
    stopped = optimal_depths(table).set_index("criterion")
    assert stopped.loc["max_tree_identity", "optimal_depth"] == 1
    # depth 3 still beats its null, but the run of beating depths breaks at the stopped depth 2
    assert stopped.loc["deepest_meta_gain", "optimal_depth"] == 1
    assert stopped.loc["deepest_meta_gain", "depths_used"] == "3"
    purity = seed_optima(table, "max_purity")
    assert [o.plateau for o in purity.per_seed] == [(1,)] and purity.depths_used == "1 3"


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
    rows = claims(table)
    assert set(rows["verdict"]) <= set(VERDICTS)
    return rows[rows["claim"].str.startswith(prefix)].iloc[0]


RISING = {0: [0.2, 0.5, 0.9], 1: [0.1, 0.4, 0.8], 2: [0.3, 0.6, 0.7], 3: [0.2, 0.3, 0.4], 4: [0.1, 0.2, 0.6]}


def test_claims_verdicts_follow_the_numbers():
    table = _depths(RISING)
    purity = _claim(table, "Latents become more atomic")
    assert purity["verdict"] == "holds" and purity["basis"] == "measured" and purity["estimate"] == 1
    assert purity["n_seeds"] == 5 and purity["n_agree"] == 5 and purity["depths_used"] == "1 2 3"
    assert purity["p_value"] == pytest.approx(6.0**-5) and purity["p_holm"] < 0.05 < purity["p_against"]
    assert np.isnan(purity["control_estimate"]) and purity["verdict_reason"].startswith("p_holm = ")
    # every seed peaks at depth 3: depth 2 is nobody's optimum, and depth 3 is, beyond chance
    depth2 = _claim(table, "Depth 2 is optimal")
    assert depth2["verdict"] == "fails" and depth2["estimate"] == 0 and depth2["n_agree"] == 0
    assert depth2["p_against"] == pytest.approx(2 * 3.0**-5) and depth2["p_against_holm"] < 0.05
    assert depth2["ci_low"] == 0 and depth2["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 5))
    falling = _claim(_depths({s: v[::-1] for s, v in RISING.items()}), "Latents become more atomic")
    assert falling["verdict"] == "fails" and falling["ci_high"] < 0
    mixed = {**RISING, 1: [0.9, 0.5, 0.2], 2: [0.5, 0.6, 0.4]}
    unsure = _claim(_depths(mixed), "Latents become")
    assert unsure["verdict"] == "inconclusive" and unsure["ci_low"] < unsure["estimate"] < unsure["ci_high"]
    few = _claim(_depths({s: RISING[s] for s in range(3)}), "Latents become more atomic")
    assert few["verdict"] == "inconclusive" and few["verdict_reason"] == TOO_FEW
    assert few["p_value"] == pytest.approx(6.0**-3) and "fewer than the 5" in few["our_value"]


def test_untested_when_the_study_stops_short():
    table = _depths({0: [0.2, 0.5], 1: [0.1, 0.4]})  # depth 3 never trained: "depth 2 is optimal" needs it
    depth2 = _claim(table, "Depth 2 is optimal")
    assert depth2["verdict"] == "untested" and depth2["basis"] == "depth not reached"
    collapse = _claim(table, "Deep stacks collapse")  # nothing reached depth 7, nothing collapsed
    assert collapse["verdict"] == "untested" and collapse["basis"] == "depth not reached"
    two_depths = _claim(table, "Latents become more atomic")  # a trend needs 3 depths per seed
    assert two_depths["verdict"] == "untested" and two_depths["verdict_reason"] == "depth not reached"
    one_depth = _claim(_depths({0: [0.2], 1: [0.3]}), "Latents become more atomic")
    assert one_depth["verdict"] == "untested"


def test_collapse_is_measured_when_stacks_die():
    table = _depths({s: [0.5, 0.4, 0.3] for s in range(5)})
    table.loc[table["depth"] == 3, ["status", "stop_reason"]] = [
        "stopped",
        "parent has 2 alive latents, fewer than stop.min_alive=8",
    ]
    collapse = _claim(table, "Deep stacks collapse")  # the only tested row: Holm leaves p = 1/32
    assert collapse["estimate"] == 1 and collapse["n_agree"] == 5 and collapse["verdict"] == "holds"
    assert collapse["p_holm"] == pytest.approx(2.0**-5)
    assert collapse["ci_low"] == pytest.approx(0.025 ** (1 / 5))  # Clopper-Pearson for 5 of 5


def test_topk_activation_counts_are_fixed_by_construction_and_never_a_verdict():
    # TopK in activations mode: k = 16 at depth 1, then 8, while widths halve, so the mean active count
    # falls and its fraction rises whatever the data do.
    table = _depths(
        {s: [0.3, 0.4, 0.5] for s in range(5)},
        mode="activations",
        architecture="topk",
        mean_active={s: [16.0, 8.0, 8.0] for s in range(5)},
        width=[512, 256, 128],
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
    active_optima = seed_optima(table, "max_mean_active", needed=DEPTH2_NEEDED)
    assert active_optima.basis == "fixed by construction" and not active_optima.per_seed
    assert np.isnan(active_optima.estimate) and active_optima.depths_used == ""
    evidence = depth2_evidence(active_optima.per_seed)
    why = depth2_basis(table, active_optima, evidence)
    assert why == "fixed by construction"
    assert judge(pd.DataFrame([{**evidence.row(), "basis": why}]))["verdict"][0] == "untested"
    # Tree identity is not an L0 statistic: TopK does not fix it.
    assert optimal_depths(table).set_index("criterion").loc["max_tree_identity", "basis"] == "measured"
    # Purity is not fixed by TopK: it still gets a verdict.
    assert _claim(table, "Latents become more atomic")["verdict"] == "holds"
    collapse = _claim(table, "Deep stacks collapse")  # TopK at every depth: codes cannot go dead
    assert collapse["verdict"] == "untested" and collapse["verdict_reason"] == BY_CONSTRUCTION


def test_relu_lets_the_activation_count_vary_and_be_tested():
    table = _depths(
        {s: [0.3, 0.4, 0.5] for s in range(5)},
        architecture="relu",
        mean_active={s: [2.0 + s / 2, 9.0 + s, 1.0 + s / 2] for s in range(5)},
    )
    assert (table["fixed_by_construction"] == "").all()
    active = _claim(table, "The average number of activations increases")
    assert active["basis"] == "measured" and active["verdict"] == "inconclusive"  # up then down: rho -0.5
    found = seed_optima(table, "max_mean_active", needed=DEPTH2_NEEDED)
    assert found.basis == "measured" and " ".join(map(str, found.per_seed)) == "2 2 2 2 2"
    evidence = depth2_evidence(found.per_seed)
    assert evidence.p_value == pytest.approx(3.0**-5)
    judged = judge(pd.DataFrame([{**evidence.row(), "basis": depth2_basis(table, found, evidence)}]))
    assert judged["verdict"][0] == "holds"


def test_dense_routed_codes_are_excluded_in_decoder_mode():
    # Decoder mode: depth 1 TopK (16 of 512 per image, fixed), depth 2 routed codes sparse (20 of 128),
    # depth 3 dense (31.8 of 32): image-level statistics at depth 3 measure the dictionary, not the images.
    table = _depths(
        {s: [0.3, 0.5, 0.9] for s in range(3)},
        mode="decoder",
        architecture="topk",
        mean_active={s: [16.0, 20.0, 31.8] for s in range(3)},
        width=[512, 128, 32],
    )
    table.loc[table["depth"] > 1, "architecture"] = "batchtopk"
    table = derived_columns(table)
    assert table["routed_codes_dense"].tolist() == [False, False, True] * 3
    deep = table[table["depth"] == 3].iloc[0]
    assert "routed codes dense: 31.8 of 32" in deep["excluded_because"]
    assert excluded_as(deep, "purity_mean") == DENSE
    assert excluded_as(deep, "stack_fvu") is None  # the layer rebuilt from depth 3 is not image-code based
    purity = _claim(table, "Latents become more atomic")  # two sparse depths give no trend
    assert purity["verdict"] == "untested" and purity["basis"] == DENSE and purity["depths_used"] == ""
    assert "dense routed codes at depth 3" in purity["excluded"]
    depth2 = _claim(table, "Depth 2 is optimal")  # needs depths 1-3: depth 3 is dense
    assert depth2["verdict"] == "untested" and depth2["basis"] == "dense routed codes"
    active = _claim(table, "The average number of activations increases")
    assert active["verdict"] == "untested"  # depth 1 fixed by TopK, depth 3 dense: one depth left
    # Stability matched on dense code columns follows the data's main directions: excluded there too.
    assert excluded_as(deep, "stability_mean_cosine") is None  # no basis recorded: not code columns
    coded = table.assign(stability_basis="codes")
    assert excluded_as(coded[coded["depth"] == 3].iloc[0], "stability_mean_cosine") == DENSE
    stable = seed_optima(coded, "max_stability")
    assert stable.basis == "measured" and stable.depths_used == "1 2"
    assert [o.plateau for o in stable.per_seed] == [(2,)] * 3  # depth 3's 0.9 is dense: it cannot win
    assert "dense routed codes at depth 3" in excluded_depths(coded, "stability_mean_cosine")


def test_spearman_and_the_trend_evidence():
    assert spearman(np.array([1, 2, 3]), np.array([0.1, 0.5, 0.4])) == pytest.approx(0.5)
    assert spearman(np.array([1, 2, 3]), np.array([2.0, 2.0, 2.0])) == 0
    assert spearman(np.array([1, 2, 3]), np.array([0.2, 0.2 + 1e-12, 0.5])) == pytest.approx(np.sqrt(3) / 2)
    assert np.isnan(spearman(np.array([1, 1]), np.array([0.1, 0.2])))
    # Seeds differ in level but each rises: the within-seed correlation is 1 in every seed.
    rising = trend_evidence([np.array([0.1, 0.2, 0.3]) + s for s in range(3)])
    assert (rising.estimate, rising.ci_low, rising.ci_high, rising.n_seeds) == (1, 1, 1, 3)
    assert rising.p_value == pytest.approx(6.0**-3) and rising.p_against == 1
    mixed = trend_evidence([np.array(v, float) for v in ([1, 2, 3], [3, 2, 1], [1, 3, 2])])
    assert mixed.estimate == pytest.approx(0.5 / 3) and mixed.n_agree == 2
    assert mixed.ci_low == -1 and mixed.ci_high == 1  # the t-interval, clipped to a correlation's range
    assert trend_evidence([np.array([0.3]), np.array([0.1, 0.2])]).n_seeds == 0  # no seed has 3 depths


@pytest.mark.parametrize(
    "p_holm, p_against_holm, n, expected, why",
    [
        (0.01, 0.99, 5, "holds", "p_holm = 0.01 < 0.05"),
        (0.99, 0.01, 5, "fails", "p_against_holm = 0.01 < 0.05"),
        (0.2, 0.9, 5, "inconclusive", "neither direction significant after Holm"),
        (0.01, 0.99, 3, "inconclusive", TOO_FEW),  # too few seeds, whatever the p-value
        (0.01, 0.01, 5, "inconclusive", "both directions significant after Holm"),
        (float("nan"), float("nan"), 5, "untested", "depth not reached"),  # the basis is the reason
    ],
)
def test_verdict_rule(p_holm, p_against_holm, n, expected, why):
    decided, reason = verdict(p_holm, p_against_holm, n, "depth not reached")
    assert decided == expected and reason.startswith(why)


def test_stability_on_planted_rows():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(40, 16, generator=gen)
    assert matched_similarity(rows, rows) == pytest.approx((1.0, 1.0))
    permuted = rows[torch.randperm(40, generator=gen)] * 3.0  # order and scale do not matter
    assert matched_similarity(rows, permuted) == pytest.approx((1.0, 1.0))
    other = torch.randn(40, 16, generator=gen)
    mean, matched = matched_similarity(rows, other)
    assert mean < 0.6 and matched == 0
    half = torch.cat([rows[:20], other[:20]])
    assert matched_similarity(rows, half)[1] == pytest.approx(0.5)
    per_seed = seed_stability({0: rows, 1: permuted, 2: other})
    assert per_seed[0][1] == pytest.approx(0.5) and per_seed[2][1] == 0  # seed 0 matches seed 1, not 2
    assert np.isnan(matched_similarity(rows[:0], rows)[0])


def _folder(tmp_path, name, codes, source, mode="base"):
    acts = tmp_path / name
    acts.mkdir()
    (acts / "manifest.json").write_text(json.dumps({"source_model": source}))
    w_dec = torch.eye(codes.shape[1], 8)
    sparse = codes.to_sparse()  # stability reads the codes every image statistic reads
    return SimpleNamespace(
        acts_dir=acts, mode=mode, image_codes=sparse, sae=SimpleNamespace(W_dec=w_dec), path=acts
    )


def test_stability_matches_code_columns_when_seeds_have_their_own_classifier(tmp_path):
    gen = torch.Generator().manual_seed(1)
    codes = torch.rand(50, 6, generator=gen) * (torch.rand(50, 6, generator=gen) > 0.6)
    codes[:, 5] = 0  # a dead latent is left out of the matching
    seeds = {
        0: _folder(tmp_path, "a", codes, "models/seed0"),
        1: _folder(tmp_path, "b", codes[:, [4, 2, 0, 1, 3, 5]] * 2, "models/seed1"),
    }
    basis, matrices = stability_inputs(seeds)
    assert basis == "codes" and matrices[0].columns.shape == (50, 5)
    assert seed_stability(matrices)[1] == pytest.approx((1.0, 1.0))
    shared = {0: _folder(tmp_path, "c", codes, "models/one"), 1: _folder(tmp_path, "d", codes, "models/one")}
    assert stability_inputs(shared)[0] == "decoder rows"


def test_report_reads_the_new_tables(tmp_path):
    """The write-up renders per-claim tables with CIs, the exclusions and the rules the tables were made
    with, from what `aggregate` writes."""
    from metasae.io import write_json
    from metasae.writeup.data import ReportData
    from metasae.writeup.sections.claims import claims as claims_section
    from metasae.writeup.sections.headline import TLDR_WORDS, tldr
    from metasae.writeup.sections.method import method
    from metasae.writeup.sections.metrics import more_metrics
    from metasae.writeup.sections.optimal_depth import optimal_depth

    table = _depths(
        {s: [0.3, 0.4, 0.5] for s in range(3)},
        architecture="topk",
        mean_active={s: [16.0, 8.0, 8.0] for s in range(3)},
        width=[512, 256, 128],
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
    optimal_depths(table).to_csv(summary / "optimal_depth.csv", index=False)
    claims(table).to_csv(summary / "claims.csv", index=False)
    write_json(summary / "study.json", {"rules": {**RULES, "dense_routed_fraction": 0.4}})
    report = ReportData(tmp_path, tmp_path / "figs")
    text = claims_section(report)
    assert "| fixed by construction at depth 1 2 3 |" in text and "3 (< 5)" in text
    assert "it holds when the Holm-corrected p-value of a rise (permutation test" in text
    assert "more than 40% of the dictionary" in method(report)  # the rule study.json records
    optimum = optimal_depth(report)
    assert "| max_tree_identity | deepest_meta_gain |" in optimum  # one column per criterion
    assert "max_mean_active" not in optimum  # a statistic, not a criterion
    assert "| 3 [3, 3]" in optimum and "| – (no value)" in optimum  # an optimum with its CI; no meta gain
    appendix = more_metrics(report)
    assert "961 (0.42)" in appendix and "l0, mean_active_fraction, mean_active_per_image" in appendix
    # the TL;DR adds what depth costs, then the dead-latents warning, each only while it stays short enough
    dead = "up to 20% of the depth-1 latents are dead (never active on the probe images"
    headline = tldr(report)
    assert "Cost: unexplained variance rises from 0.1 (depth 1) to 0.3 (depth 3)." in headline
    assert dead not in headline and len(f"{headline} Caution: {dead}).".split()) > TLDR_WORDS
    table.assign(stack_fvu=np.nan).to_csv(summary / "depths.csv", index=False)  # no cost line: room left
    headline = tldr(ReportData(tmp_path, tmp_path / "figs"))
    assert dead in headline and "Cost:" not in headline and len(headline.split()) <= TLDR_WORDS


def test_abstraction_gap_is_superclass_lift_minus_class_lift_and_a_claim_only_with_a_taxonomy():
    table = _depths({s: [0.5, 0.5, 0.5] for s in range(5)})
    assert table["abstraction_gap"].isna().all()  # digits: no superclasses, no claim
    assert not claims(table)["claim"].str.startswith("Deeper meta-latents").any()
    raw = table.drop(columns=["abstraction_gap"]).assign(purity_chance=0.3, superclass_purity_chance=0.6)
    for seed in range(5):  # class purity falls to chance while superclass purity stays pure: more abstract
        at = raw["seed"] == seed
        raw.loc[at, "purity_mean"] = [0.9, 0.6, 0.3 + 0.01 * seed]
        raw.loc[at, "superclass_purity_mean"] = [1.0, 1.0, 1.0]
    table = derived_columns(raw)
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
    columns = [CodeColumns.of(c.to_sparse(), a) for c, a in zip(codes, alive, strict=True)]
    centred = [(c[:, a] - c[:, a].mean(0)).T for c, a in zip(codes, alive, strict=True)]
    expected = cosine_matrix(*centred).numpy()
    assert np.allclose(columns[0].correlation(columns[1]), expected, atol=1e-10)
    assert len(columns[1]) == 15
    assert matched_similarity(columns[0], columns[0]) == pytest.approx((1.0, 1.0))


def test_stability_counts_unmatched_latents_as_zero():
    rows = torch.randn(40, 16, generator=torch.Generator().manual_seed(2))
    # 20 of seed a's 40 latents have a perfect partner, the other 20 none: 20 / 40, not 20 / 20
    assert matched_similarity(rows, rows[:20]) == pytest.approx((0.5, 0.5))
    assert matched_similarity(rows[:20], rows) == pytest.approx((0.5, 0.5))


def test_stability_across_sae_seeds_is_keyed_by_its_replicate(tmp_path):
    from metasae.statistics.groups import GROUP
    from metasae.statistics.seed_stability import stability

    codes = torch.rand(30, 6, generator=torch.Generator().manual_seed(3)) + 0.1
    same, other = _folder(tmp_path, "a", codes, "models/seed0"), _folder(tmp_path, "b", codes, "models/seed0")
    other.sae = SimpleNamespace(W_dec=torch.eye(6, 8)[[3, 1, 0, 2, 5, 4]])  # the same rows, reordered
    folders = {("m", "d", "fc1", "s", None, 0, sae_seed, 1): f for sae_seed, f in [(0, same), (1, other)]}
    for f in folders.values():
        f.stopped = False
    table = stability(folders, ["decoder", "activations"], [*GROUP, "seed"], replicate="sae_seed")
    assert sorted(zip(table["mode"], table["sae_seed"], strict=True)) == [
        ("activations", 0),
        ("activations", 1),
        ("decoder", 0),
        ("decoder", 1),
    ]
    assert table["stability_mean_cosine"].tolist() == pytest.approx([1.0] * 4)
    assert set(table["stability_basis"]) == {"decoder rows"} and (table["seed"] == 0).all()


def test_purity_lift_is_zero_at_chance_and_one_when_pure():
    table = _depths({0: [0.5, 0.5, 0.5, 0.5]}).assign(
        purity_rated_mean=[0.1, 1.0, 0.55, 1.0], purity_rated_chance=[0.1, 0.1, 0.1, 1.0]
    )
    lift = derived_columns(table)["purity_lift"]
    assert lift[:3].tolist() == pytest.approx([0.0, 1.0, 0.5]) and np.isnan(lift[3])  # one class: no lift


def test_each_stack_depth_is_paired_with_the_control_of_its_width():
    from metasae.statistics.columns import CONTROL_STATISTICS, control_columns

    run = {"model": "m", "dataset": "d", "layer": "fc1", "sae_config": "s", "sae_seed": 0, "mode": "decoder"}
    stats = dict.fromkeys(CONTROL_STATISTICS, 0.0)
    rows = [
        {**run, **stats, "role": "stack", "seed": 0, "depth": 1, "width": 32, "purity_lift": 0.2},
        {**run, **stats, "role": "stack", "seed": 0, "depth": 2, "width": 8, "purity_lift": 0.5},
        {
            **run,
            **stats,
            "role": "stack",
            "seed": 0,
            "depth": 3,
            "width": 4,
            "purity_lift": 0.6,
        },  # no control
        {**run, **stats, "role": "stack", "seed": 1, "depth": 2, "width": 8, "purity_lift": 0.1},
        {**run, **stats, "role": "control", "seed": 0, "depth": 1, "width": 8, "purity_lift": 0.4},
        {**run, **stats, "role": "control", "seed": 1, "depth": 1, "width": 8, "purity_lift": 0.3},
        {**run, **stats, "role": "control", "seed": 0, "depth": 1, "width": 16, "purity_lift": 0.9},
    ]
    out = control_columns(pd.DataFrame(rows))
    assert len(out) == len(rows)
    assert out["control_width"].isna().tolist() == [True, False, True, False, False, False, False]
    assert out["control_purity_lift"].tolist()[1] == pytest.approx(0.4)  # seed 0's control, not seed 1's
    assert out["purity_lift_minus_control"].tolist()[1] == pytest.approx(0.1)
    assert out["purity_lift_minus_control"].tolist()[3] == pytest.approx(-0.2)
    assert out.loc[[0, 2, 4, 5, 6], "control_purity_lift"].isna().all()  # depth 1, no control, controls
    assert out.loc[4:, "control_width"].tolist() == [8, 8, 16]


def test_claims_count_classifier_seeds_and_leave_further_sae_seeds_to_stability():
    from metasae.statistics.groups import claim_replicates

    run = {"model": "m", "dataset": "d", "layer": "fc1", "sae_config": "s", "mode": "decoder", "depth": 1}
    rows = [
        {**run, "sae": "s", "seed": 0, "sae_seed": 0},
        {**run, "sae": "s__s1", "seed": 0, "sae_seed": 1},
        {**run, "sae": "s__s2", "seed": 1, "sae_seed": 2},  # a classifier whose own sae_seeds start at 2
        {**run, "sae": "s__s3", "seed": 1, "sae_seed": 3},
    ]
    kept = claim_replicates(pd.DataFrame(rows))
    assert kept[["seed", "sae_seed"]].values.tolist() == [[0, 0], [1, 2]] and set(kept["sae"]) == {"s"}
