"""The leaf regime of the planted trees, the scoring a learnable stack can pass (max(m, n) matching, clade
recovery) and the analytic oracle / shuffled stacks (stage synth-oracle)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from metasae.groundtruth import clade_recovery, cosine_matrix, is_clade, leaf_clusters, match_levels
from metasae.layout import CFG_FILE, CODES_FILE, LINEAGE_FILE, META_CODES_FILE, METRICS_FILE, SAE_WEIGHTS
from metasae.stack import Depth
from metasae.stages.score_synth import score_depth
from metasae.stages.synth_acts import synth_activations, tree_spec
from metasae.stages.synth_oracle import oracle_parents, stack_rows, synth_oracle
from metasae.synth_tree import TreeSpec, centroids, generate

LEAF = TreeSpec(
    regime="leaf",
    n_trees=4,
    depth=3,
    branching=2,
    d=64,
    n_samples=3000,
    p_active=0.25,
    magnitude=(0.5, 1.5),
    noise=0.01,
    child_parent_mix=0.0,
    seed=0,
)


def _common_level(i: int, j: int, spec: TreeSpec) -> int:
    """Level of the deepest common ancestor of leaves i and j (0: different trees): sharing an ancestor at a
    level implies sharing every shallower one, so count the levels they share."""
    return sum(
        i // spec.branching ** (spec.depth - lvl) == j // spec.branching ** (spec.depth - lvl)
        for lvl in range(1, spec.depth + 1)
    )


# -- the leaf regime -----------------------------------------------------------------------------------------
def test_leaf_cosines_follow_the_common_ancestor_level():
    spec = dataclasses.replace(LEAF, d=4096, n_samples=1)
    leaves = generate(spec).features[-1]
    cos = cosine_matrix(leaves, leaves)
    for i, j in itertools.combinations(range(len(leaves)), 2):
        assert float(cos[i, j]) == pytest.approx(_common_level(i, j, spec) / spec.depth, abs=0.06), (i, j)


def test_only_leaves_fire_with_one_magnitude_per_tree():
    tree = generate(LEAF)
    torch.testing.assert_close(tree.acts, (tree.codes[-1] @ tree.features[-1]).float(), atol=0.06, rtol=0)
    per_tree = [c.view(LEAF.n_samples, LEAF.n_trees, -1).sum(2) for c in tree.codes]
    for level in per_tree[1:]:
        assert torch.equal(level, per_tree[0])  # every active node of a tree carries the tree's magnitude
    on = tree.active[0]
    assert abs(float(on.float().mean()) - LEAF.p_active) < 0.02 and (on.sum(1) > 1).any()  # multi-label
    for parent, child in itertools.pairwise(tree.active):
        rows, cols = child.nonzero(as_tuple=True)
        assert parent[rows, cols // LEAF.branching].all()


def test_truth_above_the_leaves_is_the_unit_mean_of_children():
    tree = generate(LEAF)
    for parent, child in itertools.pairwise(tree.features):
        torch.testing.assert_close(parent, centroids(child, torch.arange(len(child)) // 2, len(parent)))
        torch.testing.assert_close(parent.norm(dim=1), torch.ones(len(parent)))
    assert torch.equal(tree.path_directions(), tree.features[-1])


def test_data_seed_fixes_the_tree_whatever_the_run_seed():
    params = {"depth": 2, "n_trees": 2, "branching": 2, "d": 8, "n_samples": 50, "data_seed": 7}
    a, b = generate(tree_spec(params, 0)), generate(tree_spec(params, 3))
    other = generate(tree_spec({**params, "data_seed": 8}, 0))
    assert torch.equal(a.acts, b.acts) and torch.equal(a.features[-1], b.features[-1])
    assert not torch.equal(a.acts, other.acts)
    del params["data_seed"]
    assert tree_spec(params, 3).seed == 3 and tree_spec(params, 3).regime == "leaf"  # new configs: leaf


# -- scoring ------------------------------------------------------------------------------------------------
def _data_centroid_stack(spec: TreeSpec) -> list[torch.Tensor]:
    """What a perfect halving stack learns, estimated from the samples alone: depth 1 = each leaf's mean
    activation over samples where only its tree fires (and it), deeper = centroids of the children."""
    tree = generate(spec)
    alone = tree.active[0].sum(1) == 1
    leaf_on = tree.active[-1][alone].float()
    leaves = (leaf_on.T @ tree.acts[alone]) / leaf_on.sum(0, keepdim=True).T
    return stack_rows(leaves, oracle_parents(spec, extra_depths=0)), tree


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_a_centroid_stack_matches_level_l_minus_d_plus_1_at_depth_d(depth):
    rows, tree = _data_centroid_stack(dataclasses.replace(LEAF, depth=depth, n_samples=4000))
    for d, depth_rows in enumerate(rows, start=1):
        levels = match_levels(depth_rows, tree)["levels"]
        best = max(levels, key=lambda e: e["hungarian_mean_cosine"])["level"]
        assert best == depth - d + 1, (d, [round(e["hungarian_mean_cosine"], 3) for e in levels])


def test_is_clade():
    spec = dataclasses.replace(LEAF, depth=3, branching=2)  # leaves 0..15, 4 per tree
    assert all(is_clade(c, spec) for c in ([5], [4, 5], [7, 6], [0, 1, 2, 3], [12, 13, 14, 15]))
    assert not any(is_clade(c, spec) for c in ([], [5, 6], [0, 2], [2, 3, 4, 5], list(range(8)), [0, 1, 2]))


def test_leaf_clusters_follow_the_heaviest_meta_code_and_lose_zero_rows():
    leaves = torch.eye(4)
    root_rows = torch.eye(4)[[1, 0, 2, 3]]  # latent 0 = leaf 1, latent 1 = leaf 0
    meta = torch.tensor([[0.2, 0.9], [1.0, 0.0], [0.0, 0.5], [0.0, 0.0]])  # latent 3 maps nowhere
    assert leaf_clusters(root_rows, leaves, [meta]).tolist() == [0, 1, 1, -1]


def test_clade_recovery_share_and_ari():
    spec = dataclasses.replace(LEAF, n_trees=2, depth=2, branching=2)  # leaves 0-1 (tree 0), 2-3 (tree 1)
    perfect = clade_recovery(torch.tensor([0, 0, 1, 1]), torch.arange(2), spec)
    assert perfect["clade_share"] == 1 and perfect["ari"][0] == pytest.approx(1.0) and perfect["ari"][1] < 1
    crossed = clade_recovery(torch.tensor([0, 1, 0, 1]), torch.arange(3), spec)  # latent 2 gets no leaf
    assert crossed["clade_share"] == 0 and crossed["ari"][0] < 0.5
    lost = clade_recovery(torch.tensor([0, 0, 1, -1]), torch.arange(2), spec)  # leaf 3: a cluster of its own
    assert lost["clade_share"] == 1 and lost["ari"][0] < 1  # latent 1 holds leaf 2 alone: a (leaf) clade
    mixed = clade_recovery(torch.tensor([0, 0, 1, 0]), torch.arange(2), spec)
    assert mixed["clade_share"] == 0.5


# -- the analytic stacks -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    spec = tree_spec({"depth": 3, "n_trees": 4, "branching": 2, "d": 32, "n_samples": 400}, 0)
    synth_activations(spec, root / "acts")
    return {kind: synth_oracle(root / "acts", root / kind, kind, seed=0) for kind in ("oracle", "shuffled")}


def test_analytic_stacks_are_ordinary_depth_folders(stacks):
    names = [f.relative_to(stacks["oracle"][0].parent).as_posix() for f in stacks["oracle"]]
    assert names == ["depth1"] + [f"{m}/depth{d}" for m in ("decoder", "activations") for d in range(2, 7)]
    assert Depth.load(stacks["oracle"][5]).stopped  # depth 6 of a depth-3 tree: past L + 2
    for folder in [f for f in stacks["oracle"][1:] if not Depth.load(f).stopped]:
        for name in (CFG_FILE, SAE_WEIGHTS, CODES_FILE, META_CODES_FILE, LINEAGE_FILE, METRICS_FILE):
            assert (folder / name).is_file(), (folder, name)
        depth = Depth.load(folder)
        assert depth.parent is not None and depth.lineage is not None
    widths = [Depth.load(f).width for f in stacks["oracle"][:5]]
    assert widths == [16, 8, 4, 2, 1] == [Depth.load(f).width for f in stacks["shuffled"][:5]]


def test_oracle_scores_clade_ari_1_at_every_planted_depth_and_less_past_it(stacks):
    for folder in stacks["oracle"]:
        score = score_depth(folder)
        if score["status"] == "stopped":
            continue
        d, level = score["depth"], 3 - score["depth"] + 1
        if d <= 3:
            assert score["best_matched_level"] == level and score["clade_share"] == 1, folder
            entry = score["levels"][level - 1]
            assert entry["clade_ari"] == pytest.approx(1.0) and entry[
                "hungarian_mean_cosine"
            ] == pytest.approx(1.0)
            assert entry["mcc"] == pytest.approx(1.0), folder
        else:  # merged roots: no level's clades
            assert score["clade_share"] == 0 and max(e["clade_ari"] for e in score["levels"]) < 1, folder


def test_shuffled_control_does_not(stacks):
    for folder in [f for f in stacks["shuffled"][1:] if not Depth.load(f).stopped]:
        score = score_depth(folder)
        assert score["clade_share"] < 1 and max(e["clade_ari"] for e in score["levels"]) < 0.9, folder
