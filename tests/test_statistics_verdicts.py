"""The verdict rule's error rates (`metasae.statistics.verdicts`): calibrated under the null, right on
planted effects, Holm-corrected over a study, and deaf to rounding noise."""

import numpy as np
import pandas as pd
import pytest

from metasae.statistics.claims import claims, collapse_evidence, control_evidence, trend_evidence
from metasae.statistics.columns import derived_columns
from metasae.statistics.exact import PERMUTATIONS, holm, share_p_value, sign_flip_p_values, trend_p_values
from metasae.statistics.intervals import clopper_pearson, t_interval
from metasae.statistics.optimal import (
    CRITERIA,
    STATISTICS,
    SeedOptimum,
    depth2_evidence,
    optimal_depths,
    plateau,
    seed_optima,
)
from metasae.statistics.verdicts import ALPHA, TOO_FEW, Evidence, judge

NULL_STUDIES = 600
CONFIGURATIONS = 4
SEEDS = 5
MIN_ALIVE = "stop.min_alive=8"


def _table(values: dict[tuple[str, int], list[float]], stop: dict | None = None) -> pd.DataFrame:
    """Depth rows of one configuration per mode: values[(mode, seed)] is the seed's statistic by depth,
    used as purity, purity lift, tree identity, activation share, mean active share and stability alike, and
    for meta_gain_z and row_structure_z (NaN at depth 1, which has no meta-SAE) as 10 * value - 2.95, which
    beats z = 2 from value 0.5 on and never lies within rounding of it; `stop` marks a (mode, seed, depth)
    stopped for too few alive latents."""
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
                    **dict(purity_rated_mean=value, purity_rated_chance=0.0),  # lift = value
                    "tree_identity_mean": value,
                    "meta_gain_z": 10 * value - 2.95 if depth > 1 else np.nan,
                    "row_structure_z": 10 * value - 2.95 if depth > 1 else np.nan,
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
        control = control_evidence(list(rng.normal(size=SEEDS)))  # no difference from the control
        rows.append({"claim": "control", "config": config, **control.row()})
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
    tree = optimal_depths(_table(values)).set_index("criterion").loc["max_tree_identity"]
    assert tree["per_seed"] == "2-3 2"
    assert (tree["estimate_low"], tree["optimal_depth"], tree["estimate_high"]) == (2, 2.25, 2.5)
    assert tree["ci_low"] <= 2 and tree["ci_high"] >= 2.5
    purity = seed_optima(_table(values), "max_purity")  # a statistic now, with the same plateau rule
    assert " ".join(map(str, purity.per_seed)) == "2-3 2" and purity.basis == "measured"
    assert (purity.estimate_low, purity.estimate, purity.estimate_high) == (2, 2.25, 2.5)
    assert purity.ci == pytest.approx((tree["ci_low"], tree["ci_high"]))
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
    statistics = {c.column for c in (*CRITERIA.values(), *STATISTICS.values())}
    statistics |= {"purity_lift", "purity_mean", "count_fraction", "mean_active_fraction"}
    seen, optima, gains = [], [], set()
    for _ in range(6):
        table = _random_study(rng)
        noisy = table.assign(**{c: table[c] + rng.normal(0, 1e-12, len(table)) for c in sorted(statistics)})
        before, after = claims(table), claims(noisy)
        pairs = set(zip(before["verdict"], after["verdict"], strict=True))
        assert not pairs & {("holds", "fails"), ("fails", "holds")}
        assert before["verdict"].tolist() == after["verdict"].tolist()
        assert np.allclose(before["p_value"], after["p_value"], equal_nan=True)
        optimal = [optimal_depths(t)[["criterion", "per_seed", "log_claim_depth2"]] for t in (table, noisy)]
        pd.testing.assert_frame_equal(*optimal)
        for (_, group), (_, shaken) in zip(table.groupby("mode"), noisy.groupby("mode"), strict=True):
            for name, how in STATISTICS.items():  # the former criteria: per-seed optima the claims read
                found = [seed_optima(g, name, min_depths=how.min_depths) for g in (group, shaken)]
                assert found[0].basis == found[1].basis and found[0].per_seed == found[1].per_seed
                optima += list(map(str, found[0].per_seed))
        seen += before["verdict"].tolist() + optimal[0]["per_seed"].tolist()
        gains |= set(optimal[0].set_index("criterion").loc["deepest_meta_gain", "per_seed"].tolist())
    assert {"holds", "fails"} <= set(seen) and any("-" in s for s in seen)  # decided verdicts and plateaus
    assert any("-" in s for s in optima) and len(set(optima)) > 2  # plateaus and varied optima
    assert len(gains) > 1  # the meta-gain rule answered differently across studies: its threshold was met


def test_sign_flip_is_exact():
    assert sign_flip_p_values([1.0, 2.0, 3.0, 4.0, 5.0]) == (1 / 32, 1.0)
    up, down = sign_flip_p_values([1.0, -1.0])  # a mean of 0: half the patterns at least as high
    assert up == down == 0.75
    with pytest.raises(ValueError, match="needs 1 to"):
        sign_flip_p_values([])


def test_a_stack_purer_than_its_control_holds_and_a_poorer_one_fails():
    """8 seeds: the sign-flip test's smallest p is 2^-8, which survives Holm over this table's tests; with
    5 seeds it is 1/32, which no family of two or more tests lets through (the study's notes say so)."""
    seeds = 8
    table = _table({("activations", s): [0.5, 0.6, 0.7] for s in range(seeds)})  # sparse codes
    found = {}
    for diff in (0.2, -0.2):
        rows = table.assign(
            purity_lift_minus_control=[
                diff * (d >= 2) + 0.001 * s for d, s in zip(table.depth, table.seed, strict=True)
            ],
            control_purity_lift=0.4,
        )
        found[diff] = claims(rows).set_index("claim").filter(like="direct SAE", axis=0).iloc[0]
    assert found[0.2]["verdict"] == "holds" and found[0.2]["control_estimate"] == 0.4
    assert found[0.2]["p_value"] == 2**-seeds and found[0.2]["n_agree"] == seeds
    assert found[-0.2]["verdict"] == "fails" and found[-0.2]["p_against"] == 2**-seeds
