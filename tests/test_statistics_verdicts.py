"""The verdict rule's error rates (`metasae.statistics.verdicts`): calibrated under the null, right on
planted effects, Holm-corrected over a study, and deaf to rounding noise."""

import numpy as np
import pandas as pd
import pytest

from metasae.statistics.claims import claims, collapse_evidence, trend_evidence
from metasae.statistics.columns import derived_columns
from metasae.statistics.exact import PERMUTATIONS, holm, share_p_value, trend_p_values
from metasae.statistics.intervals import clopper_pearson, t_interval
from metasae.statistics.optimal import SeedOptimum, depth2_evidence, optimal_depths, plateau
from metasae.statistics.verdicts import ALPHA, TOO_FEW, Evidence, judge

NULL_STUDIES = 600
CONFIGURATIONS = 4
SEEDS = 5
MIN_ALIVE = "stop.min_alive=8"


def _table(values: dict[tuple[str, int], list[float]], stop: dict | None = None) -> pd.DataFrame:
    """Depth rows of one configuration per mode: values[(mode, seed)] is the seed's statistic by depth,
    used as purity, activation share, mean active share and stability alike; `stop` marks a (mode, seed,
    depth) stopped for too few alive latents."""
    rows = []
    for (mode, seed), by_depth in values.items():
        for depth, value in enumerate(by_depth, start=1):
            stopped = (stop or {}).get((mode, seed, depth))
            rows.append(
                {
                    **dict(model="m", dataset="d", layer="fc1", sae="s", mode=mode, seed=seed, depth=depth),
                    "architecture": "relu",
                    "status": "stopped" if stopped else "trained",
                    "stop_reason": f"parent has 2 alive latents, fewer than {MIN_ALIVE}" if stopped else None,
                    **dict(width=64, fvu=0.1 * depth, stack_fvu=0.1 * depth, alive_latents=64),
                    "purity_mean": value,
                    "count_all_top10_nonzero": 64 * value,
                    "mean_active_per_image": 64 * value,
                    "stability_mean_cosine": value,
                }
            )
    return derived_columns(pd.DataFrame(rows))


def _null_study(rng: np.random.Generator) -> pd.DataFrame:
    """One simulated study under the null: CONFIGURATIONS configurations of SEEDS seeds and 3-5 depths,
    every statistic random per depth (no trend, no best depth) and each seed collapsing with chance 1/2 (the
    collapse claim's boundary); its claims' evidence rows, judged over the study."""
    rows = []
    for config in range(CONFIGURATIONS):
        n_depths = int(rng.integers(3, 6))
        for claim in ("trend_a", "trend_b"):
            evidence = trend_evidence([rng.random(n_depths) for _ in range(SEEDS)])
            rows.append({"claim": claim, "config": config, **evidence.row()})
        depths = np.arange(1, n_depths + 1)
        optima = [SeedOptimum(plateau(depths, rng.random(n_depths)), tuple(depths)) for _ in range(SEEDS)]
        rows.append({"claim": "depth2", "config": config, **depth2_evidence(optima).row()})
        collapse = collapse_evidence(list(rng.integers(0, 2, SEEDS).astype(float)))
        rows.append({"claim": "collapse", "config": config, **collapse.row()})
    return judge(pd.DataFrame(rows).assign(basis="measured"))


def test_null_calibration_keeps_false_holds_and_fails_below_alpha():
    rng = np.random.default_rng(20240611)
    studies = pd.concat([_null_study(rng).assign(study=i) for i in range(NULL_STUDIES)], ignore_index=True)
    for verdict in ("holds", "fails"):
        per_study = studies.assign(hit=studies["verdict"] == verdict).groupby(["study", "claim"])["hit"].any()
        per_claim = per_study.groupby("claim").mean()  # share of studies where the claim got it anywhere
        assert (per_claim <= ALPHA).all(), (verdict, per_claim.to_dict())
        assert per_study.groupby("study").any().mean() <= ALPHA  # any claim, any configuration
    # Each raw test is valid on its own (at most ALPHA, up to simulation error), before the correction.
    raw = studies.groupby("claim")[["p_value", "p_against"]].agg(lambda p: (p < ALPHA).mean())
    assert (raw <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / (NULL_STUDIES * CONFIGURATIONS))).all().all()


def _planted(direction: int, seeds: int = SEEDS) -> pd.DataFrame:
    """A clear monotone trend over 4 depths in every seed (direction 1: rising, -1: falling)."""
    rising = {s: [0.1 + 0.2 * d + 0.01 * s for d in range(4)] for s in range(seeds)}
    return _table({("activations", s): v[::direction] for s, v in rising.items()})


@pytest.mark.parametrize("direction, verdict", [(1, "holds"), (-1, "fails")])
def test_a_planted_trend_holds_and_its_reverse_fails(direction, verdict):
    rows = claims(_planted(direction)).set_index("claim")
    purity = rows.loc[rows.index.str.startswith("Latents become more atomic")].iloc[0]
    assert purity["verdict"] == verdict and purity["n_seeds"] == SEEDS
    assert purity["n_agree"] == (SEEDS if direction == 1 else 0)
    exact = 24.0**-SEEDS  # every seed's one ordering of 4! is the most extreme
    assert (purity["p_value"] if direction == 1 else purity["p_against"]) == pytest.approx(exact)
    assert purity["estimate"] == direction and purity["ci_low"] == purity["ci_high"] == direction


def test_three_seeds_are_inconclusive_and_say_why():
    rows = claims(_planted(1, seeds=3))
    tested = rows[rows["verdict"] != "untested"]
    assert len(tested) and (tested["verdict"] == "inconclusive").all()
    assert (tested["verdict_reason"] == TOO_FEW).all() and TOO_FEW == "too few seeds (n < 5)"
    purity = tested[tested["claim"].str.startswith("Latents become more atomic")].iloc[0]
    assert purity["p_value"] == pytest.approx(24.0**-3) and purity["p_holm"] < ALPHA  # reported all the same


def test_holm_turns_a_raw_significance_into_inconclusive():
    family = pd.DataFrame([Evidence(5, 5, p, 1.0).row() for p in (0.02, 0.5, 0.6, 0.7)]).assign(
        basis="measured"
    )
    judged = judge(family)
    assert judged["p_holm"].tolist() == pytest.approx([0.08, 1.0, 1.0, 1.0])
    assert judged.loc[0, "verdict"] == "inconclusive"
    assert judged.loc[0, "verdict_reason"].startswith("neither direction significant after Holm")
    assert judge(family.iloc[:1])["verdict"].tolist() == ["holds"]  # alone, the same p holds
    # In a study: 5 of 5 seeds collapse in each of two configurations, p = 1/32 each, Holm 1/16 > 0.05.
    values = {(mode, s): [0.5, 0.4, 0.3] for mode in ("activations", "decoder") for s in range(SEEDS)}
    stop = {(mode, s, 3): True for mode, s in values}
    collapse = claims(_table(values, stop)).query("claim.str.startswith('Deep stacks')")
    assert collapse["p_value"].tolist() == pytest.approx([1 / 32] * 2)
    assert collapse["p_holm"].tolist() == pytest.approx([1 / 16] * 2)
    assert (collapse["verdict"] == "inconclusive").all()
    single = claims(_table({k: v for k, v in values.items() if k[0] == "decoder"}, stop))
    assert single.query("claim.str.startswith('Deep stacks')")["verdict"].tolist() == ["holds"]


def test_holm_adjustment_and_the_exact_tails():
    assert holm([0.01, 0.04, np.nan, 0.03]).tolist()[:2] == pytest.approx([0.03, 0.06])
    assert np.isnan(holm([0.01, np.nan])[1])
    assert share_p_value(5, [1 / 3] * 5) == pytest.approx(3.0**-5)
    assert share_p_value(0, [0.5]) == 1
    assert trend_p_values([np.array([0.1, 0.2, 0.3])] * 2) == pytest.approx((1 / 36, 1.0))
    # 8 depths: a Monte Carlo of PERMUTATIONS draws, seeded, its p never 0
    deep = [np.linspace(0, 1, 8) + s for s in range(3)]
    assert trend_p_values(deep) == trend_p_values(deep)
    assert trend_p_values(deep)[0] == pytest.approx(1 / (1 + PERMUTATIONS))


def test_intervals_honest_for_few_seeds():
    lo, hi = t_interval([1.0, 2.0, 3.0])
    assert (lo, hi) == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-3)  # t(0.975, 2) = 4.303, sd/sqrt 3
    assert np.isnan(t_interval([2.0])[0])
    assert clopper_pearson(5, 5) == pytest.approx((0.025**0.2, 1.0))
    assert clopper_pearson(0, 5)[0] == 0


def test_plateau_ties_give_ranges():
    depths = np.arange(1, 5)
    assert plateau(depths, np.array([0.5, 0.9, 0.9, 0.2])) == (2, 3)
    assert plateau(depths, np.array([0.5, 0.9, 0.9 + 1e-13, 0.2])) == (2, 3)  # equal to 9 digits: a tie
    assert str(SeedOptimum((2, 3), (1, 2, 3, 4))) == "2-3" and str(SeedOptimum((1, 3), (1, 2, 3))) == "1,3"
    values = {("activations", 0): [0.5, 0.9, 0.9, 0.2], ("activations", 1): [0.1, 0.9, 0.3, 0.2]}
    purity = optimal_depths(_table(values)).set_index("criterion").loc["max_purity"]
    assert purity["per_seed"] == "2-3 2"
    assert (purity["estimate_low"], purity["optimal_depth"], purity["estimate_high"]) == (2, 2.25, 2.5)
    assert purity["ci_low"] <= 2 and purity["ci_high"] >= 2.5
    # a plateau holding 2 and 3 counts for neither side of "depth 2 is optimal"
    tied = depth2_evidence([SeedOptimum((2, 3), (1, 2, 3))] * 5)
    assert (tied.n_seeds, tied.n_agree, tied.p_value, tied.p_against) == (5, 0, 1.0, 1.0)
    sole = depth2_evidence([SeedOptimum((2,), (1, 2, 3))] * 5)
    assert sole.p_value == pytest.approx(3.0**-5) and sole.estimate == 1


def _random_study(rng: np.random.Generator) -> pd.DataFrame:
    """Two configurations of 5 seeds over 4 depths, each with its own random trend (falling, none or
    rising), values on a coarse grid so that ties and plateaus are common."""
    values = {}
    for mode in ("activations", "decoder"):
        slope = rng.choice([-0.2, 0.0, 0.2])
        for s in range(SEEDS):
            values[(mode, s)] = list(np.round(0.5 + slope * np.arange(4) + rng.normal(0, 0.1, 4), 1))
    return _table(values)


def test_rounding_noise_changes_no_verdict():
    rng = np.random.default_rng(7)
    statistics = ["purity_mean", "count_fraction", "mean_active_fraction", "stability_mean_cosine"]
    statistics.append("stack_fvu")
    seen = []
    for _ in range(6):
        table = _random_study(rng)
        noisy = table.assign(**{c: table[c] + rng.normal(0, 1e-12, len(table)) for c in statistics})
        before, after = claims(table), claims(noisy)
        pairs = set(zip(before["verdict"], after["verdict"], strict=True))
        assert not pairs & {("holds", "fails"), ("fails", "holds")}
        assert before["verdict"].tolist() == after["verdict"].tolist()
        assert np.allclose(before["p_value"], after["p_value"], equal_nan=True)
        optimal = [optimal_depths(t)[["per_seed", "log_claim_depth2"]] for t in (table, noisy)]
        pd.testing.assert_frame_equal(*optimal)
        seen += before["verdict"].tolist() + optimal[0]["per_seed"].tolist()
    assert {"holds", "fails"} <= set(seen) and any("-" in s for s in seen)  # decided verdicts and plateaus
