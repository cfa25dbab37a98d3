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
