"""Planted feature hierarchies (metasae.synth_tree) and ground-truth scoring (metasae.groundtruth)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from metasae.errors import MetasaeError
from metasae.groundtruth import (
    cosine_matrix,
    hungarian_mean_cosine,
    level_purity,
    match_levels,
    max_cosine,
    mcc,
    recovered_fraction,
)
from metasae.sae import SAEConfig
from metasae.sae.trainer import TrainConfig, train_sae
from metasae.synth_tree import TreeSpec, generate

SPEC = TreeSpec(  # the path regime; the leaf regime's tests are in tests/test_synth_oracle.py
    regime="path",
    n_trees=4,
    depth=3,
    branching=3,
    d=32,
    n_samples=2000,
    p_active=0.3,
    magnitude=(0.5, 1.5),
    noise=0.01,
    child_parent_mix=0.0,
    seed=0,
)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


# -- generator ---------------------------------------------------------------------------------------------
def test_shapes_dtypes_and_unit_directions():
    tree = generate(SPEC)
    assert tree.acts.shape == (2000, 32) and tree.acts.dtype == torch.float32
    assert tree.labels.shape == (2000, 3) and tree.labels.dtype == torch.int64
    for level, (f, c, a) in enumerate(zip(tree.features, tree.codes, tree.active, strict=True), start=1):
        n_feat = 4 * 3 ** (level - 1)
        assert f.shape == (n_feat, 32) and c.shape == (2000, n_feat) and a.dtype == torch.bool
        torch.testing.assert_close(f.norm(dim=1), torch.ones(n_feat))
        assert torch.equal(tree.level_labels(level), tree.labels[:, level - 1])


def test_same_seed_same_tensors_other_seed_differs():
    a, b = generate(SPEC), generate(SPEC)
    c = generate(dataclasses.replace(SPEC, seed=1))
    for name in ("acts", "labels"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert not torch.equal(getattr(a, name), getattr(c, name))
    for fa, fb, fc in zip(a.features, b.features, c.features, strict=True):
        assert torch.equal(fa, fb) and not torch.equal(fa, fc)


def test_directions_do_not_depend_on_the_sample_draws():
    more = generate(dataclasses.replace(SPEC, n_samples=50, p_active=0.9, noise=0.5))
    for fa, fb in zip(generate(SPEC).features, more.features, strict=True):
        assert torch.equal(fa, fb)


def test_each_active_tree_fires_exactly_one_root_to_leaf_path():
    tree, b = generate(SPEC), SPEC.branching
    tree_on = tree.active[0]  # [n, trees]: one root per tree
    for level in range(1, SPEC.depth + 1):
        per_tree = tree.active[level - 1].view(SPEC.n_samples, SPEC.n_trees, -1).sum(2)
        assert torch.equal(per_tree, tree_on.long())  # siblings exclusive: one per level per active tree
    for parent, child in itertools.pairwise(tree.active):
        rows, cols = child.nonzero(as_tuple=True)
        assert parent[rows, cols // b].all()  # every firing child's parent fires


def test_magnitudes_activity_rate_and_noise():
    tree = generate(dataclasses.replace(SPEC, n_samples=20_000))
    for c in tree.codes:
        on = c[c > 0]
        assert on.min() >= 0.5 and on.max() <= 1.5
    assert abs(float(tree.active[0].float().mean()) - 0.3) < 0.01
    clean = sum(c @ f for c, f in zip(tree.codes, tree.features, strict=True))
    assert abs(float((tree.acts - clean).std()) - 0.01) < 0.001


def test_labels_name_the_first_active_trees_path():
    tree = generate(SPEC)
    for i in range(200):
        trees = tree.active[0][i].nonzero().flatten()
        for level in range(1, SPEC.depth + 1):
            label = int(tree.level_labels(level)[i])
            if len(trees) == 0:
                assert label == -1
                continue
            assert tree.active[level - 1][i, label]
            assert label // SPEC.branching ** (level - 1) == int(trees[0])
    assert (tree.labels[~tree.active[0].any(1)] == -1).all()


@pytest.mark.parametrize("mix", [0.3, 0.8])
def test_child_parent_cosine_equals_mix(mix):
    tree = generate(dataclasses.replace(SPEC, child_parent_mix=mix))
    for parent, child in itertools.pairwise(tree.features):
        parents = parent.repeat_interleave(SPEC.branching, dim=0)
        torch.testing.assert_close((child * parents).sum(1), torch.full((len(child),), mix))


def test_without_mix_directions_are_independent():
    tree = generate(dataclasses.replace(SPEC, d=256))
    cos = cosine_matrix(tree.features[1], tree.features[0])
    assert cos.abs().max() < 0.35  # random unit vectors in 256 dims: |cos| ~ 1/16


def test_path_directions():
    tree = generate(SPEC)
    roots, mids, leaves = tree.features
    j = torch.arange(len(leaves))
    torch.testing.assert_close(tree.path_directions(), _unit(roots[j // 9] + mids[j // 3] + leaves))
    flat = generate(dataclasses.replace(SPEC, depth=1))
    torch.testing.assert_close(flat.path_directions(), flat.features[0])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_trees", 0),
        ("n_trees", 2.5),
        ("depth", 0),
        ("depth", 5),
        ("branching", 0),
        ("d", 1),
        ("n_samples", 0),
        ("p_active", 0.0),
        ("p_active", 1.5),
        ("magnitude", (0.0, 1.0)),
        ("magnitude", (2.0, 1.0)),
        ("magnitude", (1.0,)),
        ("noise", -0.1),
        ("noise", math.inf),
        ("child_parent_mix", 1.0),
        ("child_parent_mix", -0.1),
        ("seed", -1),
        ("seed", True),
        ("regime", "tree"),
    ],
)
def test_bad_spec_names_the_field(field, value):
    with pytest.raises(MetasaeError, match=rf"synth_tree\.{field}=.*must be"):
        dataclasses.replace(SPEC, **{field: value})


def test_magnitude_list_becomes_a_tuple():
    assert dataclasses.replace(SPEC, magnitude=[1, 2]).magnitude == (1, 2)


def test_level_labels_rejects_a_level_outside_the_tree():
    with pytest.raises(MetasaeError, match="level=4"):
        generate(SPEC).level_labels(4)


# -- scoring -----------------------------------------------------------------------------------------------
def test_cosine_scores_identity_permutation_sign_and_random():
    true = _unit(torch.randn(10, 64, generator=torch.Generator().manual_seed(0)))
    perm = true[torch.randperm(10, generator=torch.Generator().manual_seed(1))] * 3.0
    for learned in (true, perm):
        torch.testing.assert_close(max_cosine(learned, true), torch.ones(10, dtype=torch.float64))
        assert recovered_fraction(learned, true) == 1.0
        assert hungarian_mean_cosine(learned, true) == pytest.approx(1.0)
    assert max_cosine(-true, true).max() < 0.5  # signed: an anti-aligned row is no match
    rand = torch.randn(10, 64, generator=torch.Generator().manual_seed(2))
    assert recovered_fraction(rand, true) == 0.0 and hungarian_mean_cosine(rand, true) < 0.3


def test_hungarian_does_not_let_one_row_match_two_features():
    true = torch.eye(2)
    learned = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert max_cosine(true, learned).tolist() == [1.0, 0.0]
    assert hungarian_mean_cosine(learned, true) == pytest.approx(0.5)  # pairs (1.0, 0.0)
    assert hungarian_mean_cosine(torch.tensor([[0.0, 1.0]]), true) == pytest.approx(0.5)  # m < n: missing = 0
    extra = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert hungarian_mean_cosine(extra, true) == pytest.approx(2 / 3)  # m > n: an extra latent counts 0


def test_mcc_identity_permuted_scaled_random_and_constant():
    g = torch.Generator().manual_seed(0)
    true = torch.rand(2000, 6, generator=g) * (torch.rand(2000, 6, generator=g) < 0.2)
    assert mcc(true, true) == pytest.approx(1.0)
    assert mcc(true[:, [3, 1, 5, 0, 2, 4]] * torch.arange(1.0, 7.0), true) == pytest.approx(1.0)
    assert mcc(-true, true) == pytest.approx(1.0)  # absolute correlations
    assert mcc(torch.rand(2000, 6, generator=g), true) < 0.1
    with_constant = torch.cat([true, torch.ones(2000, 1)], 1)
    assert mcc(with_constant, true) == pytest.approx(6 / 7)  # a constant latent correlates 0, not NaN


def test_level_purity_is_multi_label_and_ignores_padding_and_unlabelled_rows():
    active = torch.tensor(  # rows x 3 nodes; row 2 has two active nodes (two trees), rows 3 and 5 none
        [[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1], [0, 0, 0]], dtype=torch.bool
    )
    top_rows = torch.tensor(
        [
            [0, 1, 2, -1],  # node 0 in 2 of 3
            [3, 4, -1, -1],  # row 3 ignored -> node 2 in 1 of 1
            [3, 5, -1, -1],  # nothing active -> NaN
            [4, 4, 4, 2],  # node 2 in all 4: row 2 counts for every node active in it
        ]
    )
    purity = level_purity(top_rows, active)
    assert purity[[0, 1, 3]].tolist() == pytest.approx([2 / 3, 1.0, 1.0]) and math.isnan(purity[2])


def test_match_levels_on_the_planted_features():
    tree = generate(dataclasses.replace(SPEC, d=128))
    rows = torch.cat(tree.features)
    result = match_levels(rows, tree)
    for entry, own in zip(result["levels"], tree.features, strict=True):
        assert entry["mean_max_cosine"] == pytest.approx(1.0)
        assert entry["hungarian_mean_cosine"] == pytest.approx(len(own) / len(rows))  # the rest are extra
        assert entry["fraction_matched"] == 1.0
        assert match_levels(own, tree)["levels"][entry["level"] - 1][
            "hungarian_mean_cosine"
        ] == pytest.approx(1)
    expected = torch.cat([torch.full((len(f),), level) for level, f in enumerate(tree.features, start=1)])
    assert torch.equal(result["best_level"], expected)
    assert result["levels"][2]["n_features"] == 36


# -- what a depth-1 TopK SAE learns from a planted L = 2 tree -----------------------------------------------
# 8 trees x branching 3: 8 roots, 24 leaves, d 64, 4096 samples, noise 0.01, child_parent_mix 0 (independent
# directions). Measured over 6 data seeds x 2 training seeds (fraction of features matched at cos > 0.9):
#   one latent per active tree (p_active 0.2 -> 1.6 trees per sample; k 2, width 32, magnitudes 0.5-1.5):
#     paths 0.96-1.00, leaves 0.00-0.04, roots 0.00. With room for only one latent per tree the SAE
#     absorbs the root into every leaf: its latents are whole root+leaf paths (cos ~0.7 with leaf and root).
#   a latent per feature (p_active 0.1; k 6, width 48 >= 32 roots + leaves, magnitudes 0.1-1.9):
#     leaves 0.92-1.00, roots 0.88-1.00, paths 0.00-0.12. Splitting needs spare k and width and magnitudes
#     that vary per level: at magnitudes 0.9-1.1 the same k and width learn neither cleanly (a path is then a
#     near-exact one-latent code).
def _depth1_topk(tmp_path, p_active, magnitude, width, k, epochs):
    spec = TreeSpec(
        regime="path",
        n_trees=8,
        depth=2,
        branching=3,
        d=64,
        n_samples=4096,
        p_active=p_active,
        magnitude=magnitude,
        noise=0.01,
        child_parent_mix=0.0,
        seed=0,
    )
    tree = generate(spec)
    sae = train_sae(
        tree.acts,
        SAEConfig("topk", 64, width, k=k),
        TrainConfig(lr=1e-2, batch_size=256, epochs=epochs, dead_after_examples=2048),
        tmp_path,
    )
    rows = sae.W_dec.detach()
    roots, leaves = (level["fraction_matched"] for level in match_levels(rows, tree)["levels"])
    return roots, leaves, recovered_fraction(rows, tree.path_directions())


def test_one_latent_per_active_tree_learns_paths_not_leaves(tmp_path):
    roots, leaves, paths = _depth1_topk(
        tmp_path, p_active=0.2, magnitude=(0.5, 1.5), width=32, k=2, epochs=20
    )
    assert paths >= 0.8, paths
    assert leaves <= 0.2 and roots <= 0.2, (leaves, roots)  # absorbed: no latent is a leaf or a root


def test_a_latent_per_feature_with_varied_magnitudes_learns_leaves_and_roots(tmp_path):
    roots, leaves, paths = _depth1_topk(
        tmp_path, p_active=0.1, magnitude=(0.1, 1.9), width=48, k=6, epochs=40
    )
    assert leaves >= 0.8 and roots >= 0.75, (leaves, roots)
    assert paths <= 0.25, paths
