"""Probe code on tiny cases with known answers, the orientation symmetry ceiling by hand, probed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metasae.data import InputSpec, load_dataset, to_input_spec
from metasae.errors import MetasaeError
from metasae.probes import (
    CLASSIFY,
    COLUMNS,
    REGRESS,
    Task,
    best_layer,
    bootstrap_ci,
    check_inputs,
    confusable_orientations,
    orientation_ceilings,
    probe_features,
    r2,
    stratified_split,
)
from metasae.stages.probe import control_summary


def _blobs(n: int, separable: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 8))
    if separable:
        x[:, 0] += 20.0 * y  # class = a threshold on one coordinate
    return x, y


@pytest.mark.parametrize("probe", ["linear", "mlp"])
def test_separable_features_give_accuracy_one_random_give_chance(probe):
    x, y = _blobs(300, separable=True)
    train, test = stratified_split(y, 0.3, 0)
    sep = probe_features(x, [Task("shape", "accuracy", CLASSIFY, y)], train, test, (probe,), n_boot=50)[0]
    assert sep["value"] >= 0.99 and sep["ci_low"] <= sep["value"] <= sep["ci_high"]
    x_rand, _ = _blobs(300, separable=False, seed=1)
    rand = probe_features(x_rand, [Task("shape", "accuracy", CLASSIFY, y)], train, test, (probe,), n_boot=50)[
        0
    ]
    assert abs(rand["value"] - 1 / 3) < 0.15 and rand["ci_low"] < 1 / 3 + 0.15


def test_linear_regression_probe_recovers_a_linear_target():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x @ np.array([1.0, -2.0, 0.0, 0.5, 0.0]))[:, None]
    train, test = stratified_split(np.zeros(200, dtype=int), 0.25, 0)
    row = probe_features(x, [Task("posX", "r2", REGRESS, y)], train, test, ("linear",), n_boot=0)[0]
    assert row["value"] > 0.99 and math.isnan(row["ci_low"])


def test_r2_by_hand():
    y = np.array([[0.0], [1.0], [2.0]])
    assert r2(y, y) == 1.0
    assert r2(y, np.full_like(y, 1.0)) == 0.0  # predicting the mean
    assert r2(y, np.array([[0.0], [1.0], [3.0]])) == pytest.approx(1 - 1 / 2)  # SSE 1, SST 2


def test_bootstrap_ci_of_a_perfect_probe_is_degenerate():
    y = np.arange(20) % 2
    assert bootstrap_ci(CLASSIFY, y, y, 100, 0) == (1.0, 1.0)


def test_confusable_orientations_by_hand():
    # 40 classes, 39 steps per turn. Heart: only 0 = 2π aliases.
    assert confusable_orientations(5, 1) == {5}
    assert confusable_orientations(0, 1) == {0, 39} and confusable_orientations(39, 1) == {0, 39}
    # Square, class 5: quarter turns are 9.75 steps -> 14.75, 24.5, 34.25 -> nearest 15, 25 (tie up), 34.
    assert confusable_orientations(5, 4) == {5, 15, 25, 34}
    # Ellipse, class 0: a half turn is 19.5 steps -> 20 (tie up); 0 also aliases 39.
    assert confusable_orientations(0, 2) == {0, 20, 39}


def test_orientation_ceilings_by_hand():
    shape = np.array([2, 0, 1])  # heart, square, ellipse
    orientation = np.array([5, 5, 0])
    theta = np.array([0.0, math.pi / 2, 0.0])
    c = orientation_ceilings(shape, orientation, theta)
    assert c["accuracy"] == pytest.approx((1 + 1 / 4 + 1 / 3) / 3)
    # y = (1,0), (0,1), (1,0); mean (2/3, 1/3); SST = 2/9+1/9 + 4/9+4/9 + 1/9+1/9 = 4/3.
    # Bayes: heart exact, square and ellipse predict (0,0): SSE = 1 + 1 = 2 -> R² = 1 - 2/(4/3) = -0.5
    assert c["r2_sincos"] == pytest.approx(-0.5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 39)), min_size=2, max_size=40))
def test_ceilings_are_bounded_and_hearts_only_reach_one(pairs):
    shape, orientation = (np.array(v) for v in zip(*pairs, strict=True))
    theta = orientation * 2 * math.pi / 39
    c = orientation_ceilings(shape, orientation, theta)
    assert 0 < c["accuracy"] <= 1
    assert (c["accuracy"] == 1) == bool(np.all((shape == 2) & (orientation % 39 != 0)))
    assert math.isnan(c["r2_sincos"]) or c["r2_sincos"] <= 1 + 1e-12


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 39), st.sampled_from([1, 2, 4]))
def test_confusable_set_contains_itself_and_at_most_fold_plus_alias(k, fold):
    s = confusable_orientations(k, fold)
    assert k in s and len(s) <= fold + 1


def test_stratified_split_keeps_every_stratum_on_both_sides():
    strata = np.repeat(np.arange(6), 10)
    train, test = stratified_split(strata, 0.3, 0)
    assert set(strata[train]) == set(strata[test]) == set(range(6))
    assert not set(train) & set(test) and len(train) + len(test) == 60
    assert np.array_equal(stratified_split(strata, 0.3, 0)[1], test)  # seeded


def test_probed_sprites_keep_range_and_variance():
    ds = load_dataset("dsprites_gen:sample[:64]")
    assert set(ds.images.unique().tolist()) == {0.0, 1.0}
    converted = to_input_spec(ds.images, InputSpec(1, 32, 32))
    stats = check_inputs(converted, "sprites")
    assert stats["min"] == 0.0 and stats["max"] == 1.0 and stats["mean_image_variance"] > 0.01
    # what the log's pipeline did (ToPILImage of {0,1} uint8 then ToTensor): values <= 1/255, near-constant
    with pytest.raises(MetasaeError, match="near-constant"):
        check_inputs(converted / 255.0, "log-style sprites")
    with pytest.raises(MetasaeError, match=r"\[0, 1\]"):
        check_inputs(converted * 2 - 1, "normalised sprites")


def test_best_layer_uses_last_trained_checkpoint_linear_probes():
    import pandas as pd

    rows = [
        ("glyphs:train", 10, "block0.cls", 0.9),
        ("glyphs:train", 100, "block0.cls", 0.5),
        ("glyphs:train", 100, "block1.mean", 0.7),
        ("random_init", 0, "embed.cls", 1.0),
    ]
    table = pd.DataFrame(
        [{"train_set": t, "step": s, "layer": la, "probe": "linear", "value": v} for t, s, la, v in rows]
    )
    assert best_layer(table) == "block1.mean"


def test_layer_features_cover_every_layer_and_pooling():
    from metasae.models.vit import ViT, ViTConfig
    from metasae.probes import layer_features
    from metasae.seeds import generator

    model = ViT(
        ViTConfig(num_classes=2, input_shape=(1, 8, 8), patch=4, width=8, depth=1, heads=2, mlp=8),
        generator("f"),
    )
    feats = layer_features(model, model.layer_names, torch.rand(3, 1, 8, 8))
    assert sorted(feats) == ["block0.cls", "block0.mean", "embed.cls", "embed.mean"]
    assert torch.allclose(
        feats["embed.cls"][0], feats["embed.cls"][1]
    )  # CLS before attention: input-independent


def test_control_summary_compares_last_trained_best_layer_with_controls():
    import pandas as pd

    def row(train_set, step, layer, factor, metric, value, ci=(None, None)):
        lo, hi = (value, value) if ci == (None, None) else ci
        return {
            "train_set": train_set,
            "step": step,
            "layer": layer,
            "factor": factor,
            "probe": "linear",
            "metric": metric,
            "value": value,
            "ci_low": lo,
            "ci_high": hi,
        }

    table = pd.DataFrame(
        [
            row("dsp", 10, "block0.cls", "shape", "accuracy", 0.99),  # an earlier step: ignored
            row("dsp", 100, "block0.cls", "shape", "accuracy", 0.80, (0.75, 0.85)),
            row("dsp", 100, "block1.cls", "shape", "accuracy", 0.90, (0.86, 0.94)),
            row("random_init", 0, "block0.cls", "shape", "accuracy", 0.55),
            row(
                "random_init", 0, "block1.cls", "shape", "accuracy", 0.88
            ),  # the best random layer is the bar
            row("pixels", 0, "pixels", "shape", "accuracy", 0.50),
            row("dsp", 100, "block1.cls", "orientation", "accuracy", 0.40, (0.35, 0.45)),
            row("random_init", 0, "block1.cls", "orientation", "accuracy", 0.10),
            row("pixels", 0, "pixels", "orientation", "accuracy", 0.05),
            row("symmetry_ceiling", 0, "-", "orientation", "accuracy", 0.57),
        ]
    )
    by = {(c["factor"], c["metric"]): c for c in control_summary(table)}
    shape, orient = by["shape", "accuracy"], by["orientation", "accuracy"]
    assert (shape["trained"], shape["trained_layer"], shape["step"]) == (0.90, "block1.cls", 100)
    assert shape["random_init"] == 0.88 and shape["pixels"] == 0.50
    assert not shape["beats_random_init"]  # CI low 0.86 is under the best random-init layer's 0.88
    assert shape["ceiling"] is None and shape["within_ceiling"] is None
    assert orient["beats_random_init"] and orient["ceiling"] == 0.57 and orient["within_ceiling"]


def test_fold_angle_target_is_the_same_after_a_symmetry_turn():
    from metasae.probes import fold_angle_target

    shape = np.array([0, 1, 2])
    theta = np.array([0.3, 0.3, 0.3])
    turn = np.array([math.pi / 2, math.pi, 2 * math.pi])  # square, ellipse, heart
    assert np.allclose(fold_angle_target(shape, theta), fold_angle_target(shape, theta + turn))
    assert not np.allclose(fold_angle_target(shape, theta)[2], fold_angle_target(shape, theta + 1.0)[2])


def test_shape_orientation_ceilings_by_hand():
    from metasae.probes import shape_orientation_ceilings

    shape = np.array([0, 0, 1, 1, 2, 2])
    orientation = np.array([5, 6, 0, 3, 5, 0])
    theta = orientation * 2 * math.pi / 39
    c = shape_orientation_ceilings(shape, orientation, theta)
    assert c["orientation_square", "accuracy"] == pytest.approx(1 / 4)  # {5, 15, 25, 34}, {6, 16, 25, 35}
    assert c["orientation_ellipse", "accuracy"] == pytest.approx((1 / 3 + 1 / 2) / 2)  # {0, 20, 39}, {3, 23}
    assert c["orientation_heart", "accuracy"] == pytest.approx((1 + 1 / 2) / 2)  # 0 aliases 2π
    assert all(c[f"orientation_{s}", "r2_sincos_fold"] == 1.0 for s in ("square", "ellipse", "heart"))


def test_per_shape_probe_reads_an_encoded_fold_angle():
    """Features that carry (cos fθ, sin fθ) of each shape: the per-shape regression probe reaches ~1, one on
    noise stays near 0."""
    from metasae.probes import fold_angle_target, shape_orientation_tasks

    rng = np.random.default_rng(0)
    n = 600
    factors = {
        "shape": torch.tensor(np.arange(n) % 3),
        "orientation": torch.tensor(rng.integers(0, 40, n)),
    }
    factors["orientation_value"] = factors["orientation"].double() * 2 * math.pi / 39
    target = fold_angle_target(factors["shape"].numpy(), factors["orientation_value"].numpy())
    encoded = np.concatenate([target, rng.normal(size=(n, 6))], 1)
    noise = rng.normal(size=(n, 8))
    train, test = stratified_split(factors["shape"].numpy(), 0.3, 0)
    for s, tasks in shape_orientation_tasks(factors):
        tr, te = train[factors["shape"].numpy()[train] == s], test[factors["shape"].numpy()[test] == s]
        fold = [t for t in tasks if t.metric == "r2_sincos_fold"]
        assert probe_features(encoded, fold, tr, te, ("linear",), n_boot=0)[0]["value"] > 0.95
        assert probe_features(noise, fold, tr, te, ("linear",), n_boot=0)[0]["value"] < 0.2


def test_control_summary_uses_each_shapes_own_ceiling():
    import pandas as pd

    def row(train_set, factor, metric, value):
        return {
            "train_set": train_set,
            "step": 0 if train_set != "dsp" else 100,
            "layer": "-" if train_set == "symmetry_ceiling" else "block0.cls",
            "factor": factor,
            "probe": "bayes" if train_set == "symmetry_ceiling" else "linear",
            "metric": metric,
            "value": value,
            "ci_low": value,
            "ci_high": value,
        }

    table = pd.DataFrame(
        [
            row("dsp", "orientation_square", "accuracy", 0.24),
            row("dsp", "orientation_heart", "accuracy", 0.90),
            row("random_init", "orientation_square", "accuracy", 0.05),
            row("random_init", "orientation_heart", "accuracy", 0.05),
            row("symmetry_ceiling", "orientation", "accuracy", 0.57),
            row("symmetry_ceiling", "orientation_square", "accuracy", 0.25),
            row("symmetry_ceiling", "orientation_heart", "accuracy", 0.98),
        ]
    )
    by = {c["factor"]: c for c in control_summary(table)}
    assert by["orientation_square"]["ceiling"] == 0.25 and by["orientation_square"]["within_ceiling"]
    assert by["orientation_heart"]["ceiling"] == 0.98


def test_probe_summary_stacks_runs_and_draws_one_figure_per_question(tmp_path):
    import json

    import pandas as pd

    from metasae.stages.probe_summary import probe_summary

    def table(trained_on: str, shape_acc: float) -> pd.DataFrame:
        rows = []
        for train_set, step in ((trained_on, 10), (trained_on, 100), ("random_init", 0)):
            for layer in ("embed.mean", "block0.cls", "block0.mean"):
                for factor, metric in (
                    ("shape", "accuracy"),
                    ("scale", "accuracy"),
                    ("posX", "r2"),
                    ("posY", "r2"),
                    ("orientation_heart", "accuracy"),
                    ("orientation_heart", "r2_sincos_fold"),
                ):
                    v = shape_acc * step / 100 if train_set != "random_init" else 0.4
                    rows.append(
                        (train_set, f"step{step}", step, layer, factor, "linear", metric, v, v - 0.01, v)
                    )
        rows.append(("pixels", "-", 0, "pixels", "shape", "linear", "accuracy", 0.5, 0.49, 0.51))
        rows.append(
            ("symmetry_ceiling", "-", 0, "-", "orientation_heart", "bayes", "accuracy", 0.98, 0.98, 0.98)
        )
        return pd.DataFrame(rows, columns=COLUMNS)

    paths = []
    for run, on, acc in (("shape_vit", "dsprites_gen:sample", 0.97), ("fashion", "fashion_mnist:train", 0.7)):
        (tmp_path / run).mkdir()
        table(on, acc).to_csv(tmp_path / run / "probes.csv", index=False)
        paths.append(tmp_path / run / "probes.csv")
    summary = probe_summary(paths, tmp_path / "out")
    out = tmp_path / "out"
    assert {p.name for p in out.glob("*.png")} == {
        "score_vs_layer.png",
        "shape_vs_step.png",
        "orientation_per_shape.png",
    }
    stacked = pd.read_csv(out / "probes.csv")
    assert list(stacked["run"].unique()) == ["shape_vit", "fashion"]
    shape = summary["runs"]["shape_vit"]["tasks"]["shape accuracy"]
    assert shape["trained"]["value"] == pytest.approx(0.97) and shape["trained"]["step"] == 100
    assert shape["random_init"]["value"] == 0.4 and shape["pixels"]["value"] == 0.5
    heart = summary["runs"]["fashion"]["tasks"]["orientation_heart accuracy"]
    assert heart["ceiling"] == 0.98
    assert json.loads((out / "summary.json").read_text())["runs"]["fashion"]["final_step"] == 100


def _two_representations(n: int = 600) -> tuple[list, list, np.ndarray, np.ndarray]:
    """Two noisy linear read-outs of the same latents: a 3-way class (a threshold, so nearly linear) and a
    curved regression target (the MLP's advantage)."""
    from metasae.probes import FeatureSet

    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 3))
    y = np.digitize(z[:, 0], [-0.5, 0.5])
    t = (z[:, 1] + 0.5 * z[:, 2] ** 2)[:, None]
    sets = [FeatureSet(z @ rng.normal(size=(3, 12)) + 0.3 * rng.normal(size=(n, 12))) for _ in range(2)]
    tasks = [Task("shape", "accuracy", CLASSIFY, y), Task("posX", "r2", REGRESS, t)]
    train, test = stratified_split(y, 0.3, 0)
    return sets, tasks, train, test


# |torch - sklearn| per score. Linear: ridge is the same closed form (~1e-6), logistic the same optimum
# reached by another L-BFGS (to its gradient tolerance). MLP: another optimiser (Adam on batches of 512,
# early-stopped on held-out rows), so one seed differs as two seeds do; the mean over three seeds must agree.
BACKEND_TOLERANCE = {"linear": 0.01, "mlp": 0.03}


def test_torch_backend_matches_sklearn_within_tolerance():
    from metasae.probes import probe_sets

    sets, tasks, train, test = _two_representations()
    kw = dict(n_boot=0, mlp_hidden=32, mlp_iter=200)

    def mean_values(backend: str) -> tuple[list[tuple], np.ndarray]:
        runs = [probe_sets(sets, tasks, train, test, backend=backend, seed=seed, **kw) for seed in range(3)]
        keys = [(r["factor"], r["probe"]) for rows in runs[0] for r in rows]
        return keys, np.mean([[r["value"] for rows in run for r in rows] for run in runs], axis=0)

    ref_keys, ref = mean_values("sklearn")
    got_keys, got = mean_values("torch")
    assert ref_keys == got_keys
    for (factor, probe), r, g in zip(ref_keys, ref, got, strict=True):
        assert abs(r - g) <= BACKEND_TOLERANCE[probe], (factor, probe, r, g)


def test_torch_backend_is_deterministic_and_stacking_is_invisible():
    """The same seed gives the same scores, and a set's linear scores do not depend on its stack-mates
    (each set runs its own L-BFGS, or its own early-stopped Adam, inside the batch)."""
    from metasae.probes import probe_sets

    sets, tasks, train, test = _two_representations()
    kw = dict(n_boot=0, mlp_hidden=16, mlp_iter=60, backend="torch")

    def values(rows: list[list[dict]]) -> list[list[float]]:
        return [[r["value"] for r in set_rows] for set_rows in rows]

    first = probe_sets(sets, tasks, train, test, **kw)
    assert values(probe_sets(sets, tasks, train, test, **kw)) == values(first)
    alone = probe_sets(sets[:1], tasks, train, test, **kw)[0]
    assert [r["value"] for r in first[0]] == pytest.approx([a["value"] for a in alone], abs=1e-6)


def test_unknown_backend_is_refused():
    x, y = _blobs(60, separable=True)
    train, test = stratified_split(y, 0.3, 0)
    with pytest.raises(MetasaeError, match="backend"):
        probe_features(x, [Task("shape", "accuracy", CLASSIFY, y)], train, test, ("linear",), backend="jax")
