"""Score learned latents against planted features (metasae.synth_tree): directions, codes, labels and clades.

Cosines are signed throughout: a latent's code is non-negative, so a decoder row reconstructs a feature only
when it points along +feature; a row along -feature explains none of it and must not count as a match.

One-to-one matchings are averaged over max(m, n) slots (an unmatched latent or feature scores 0): averaged
over the min(m, n) matched pairs instead, a level with few features (the roots) is matched by the best few
of many latents and wins the comparison between levels at every depth.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from metasae.synth_tree import SynthTree, TreeSpec

MATCH_COSINE = 0.9  # a planted feature counts as recovered when some learned row has cosine above this


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """[m, n] signed cosines between the rows of a [m, d] and b [n, d] (zero rows give 0)."""
    return _unit_rows(a) @ _unit_rows(b).T


def _unit_rows(x: Tensor) -> Tensor:
    x = x.double()
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def max_cosine(learned: Tensor, true: Tensor) -> Tensor:
    """[m]: each learned row's largest signed cosine with any true feature. Swap the arguments for each
    true feature's best learned match (recovery)."""
    return cosine_matrix(learned, true).max(1).values


def recovered_fraction(learned: Tensor, true: Tensor, threshold: float = MATCH_COSINE) -> float:
    """Share of true features that some learned row matches with cosine > threshold."""
    return float((max_cosine(true, learned) > threshold).double().mean())


def _hungarian_mean(score: Tensor) -> float:
    """Total score of a one-to-one matching maximising it, over max(m, n) (unmatched rows count 0)."""
    rows, cols = linear_sum_assignment(score.numpy(), maximize=True)
    return float(score[rows, cols].sum()) / max(score.shape)


def hungarian_mean_cosine(learned: Tensor, true: Tensor) -> float:
    """Mean cosine over the best one-to-one matching: unlike max cosine, one latent cannot stand for two
    features. Averaged over max(m, n): a missing feature or an extra latent counts 0."""
    return _hungarian_mean(cosine_matrix(learned, true))


def correlation_matrix(x: Tensor, y: Tensor) -> Tensor:
    """[m, n] Pearson correlations between the columns of x [N, m] and y [N, n]; constant columns give 0."""
    x, y = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    x = x / x.norm(dim=0).clamp_min(1e-12)
    y = y / y.norm(dim=0).clamp_min(1e-12)
    return x.T @ y


def mcc(learned_codes: Tensor, true_codes: Tensor) -> float:
    """Mean correlation coefficient (ICA literature, SynthSAEBench): mean |Pearson r| over the Hungarian
    matching of learned latents to true features by |r|, averaged over max(m, n_true)."""
    return _hungarian_mean(correlation_matrix(learned_codes, true_codes).abs())


def level_purity(top_rows: Tensor, level_active: Tensor) -> Tensor:
    """[m]: the largest share of each latent's top rows (top_rows [m, top_n], -1 = padding, as
    metasae.latent_stats.top_activations gives) in which one node of the level is active (level_active:
    bool [n, n_nodes], the multi-label truth, since several trees fire in a sample); rows with no active
    node are ignored; NaN where a latent has no such row."""
    valid = top_rows >= 0
    active = level_active[top_rows.clamp_min(0)] & valid.unsqueeze(-1)  # [m, top_n, n_nodes]
    counted = active.any(-1).sum(1)
    return torch.where(counted > 0, active.sum(1).amax(-1) / counted.clamp_min(1), torch.nan)


def match_levels(decoder_rows: Tensor, tree: SynthTree, threshold: float = MATCH_COSINE) -> dict:
    """Which planted level the learned rows recover. Per level (list index l - 1): mean over its features
    of the best learned cosine, the Hungarian mean cosine, and the share matched above `threshold`; per
    learned row: the level (1-based) of its best-matching feature and that cosine."""
    per_level = [cosine_matrix(decoder_rows, f) for f in tree.features]
    best = torch.stack([c.max(1).values for c in per_level])  # [depth, m]
    best_cosine, best_level = best.max(0)
    levels = [
        {
            "level": level,
            "n_features": c.shape[1],
            "mean_max_cosine": float(c.max(0).values.mean()),
            "hungarian_mean_cosine": _hungarian_mean(c),
            "fraction_matched": float((c.max(0).values > threshold).double().mean()),
        }
        for level, c in enumerate(per_level, start=1)
    ]
    return {"levels": levels, "best_level": best_level + 1, "best_cosine": best_cosine}


def leaf_clusters(root_rows: Tensor, leaves: Tensor, meta_codes: list[Tensor]) -> Tensor:
    """int64 [n_leaves]: the latent of a depth that each true leaf belongs to, through the stack's lineage:
    the depth-1 latent whose row best matches the leaf, then at each deeper depth the meta-latent its parent
    latent's meta-code weighs most (meta_codes: C_2 .. C_d, [parent latents, latents]); -1 where a latent's
    meta-code is all zero (the leaf is lost)."""
    cluster = cosine_matrix(leaves, root_rows).argmax(1)
    for codes in meta_codes:
        row = codes[cluster.clamp_min(0)]
        cluster = torch.where((cluster >= 0) & (row.amax(1) > 0), row.argmax(1), -1)
    return cluster


def is_clade(leaves: list[int], spec: TreeSpec) -> bool:
    """Whether a set of leaves (global indices) is exactly the leaf set of one true node: leaves are
    numbered tree by tree, so a node of level l owns the aligned run of b^(L - l) consecutive leaves."""
    sizes = {spec.branching ** (spec.depth - level) for level in range(1, spec.depth + 1)}
    first, n = min(leaves, default=0), len(leaves)
    return n in sizes and first % n == 0 and sorted(leaves) == list(range(first, first + n))


def clade_recovery(cluster: Tensor, latents: Tensor, spec: TreeSpec) -> dict:
    """How a depth's latents partition the true leaves (cluster: leaf_clusters). clade_share: the share of
    `latents` (the depth's alive ones) whose leaf set is exactly one true clade; ari: per level l (list
    index l - 1), the adjusted Rand index of the partition against the level's (leaves by their ancestor),
    a lost leaf counting as a cluster of its own. A perfect depth d of a halving stack has share 1 and ARI 1
    at level L - d + 1; merging across trees (past the roots) lowers both."""
    from sklearn.metrics import adjusted_rand_score  # scikit-learn's import: 0.75 s, for synth scoring only

    members = {int(j): [] for j in latents}
    for leaf, j in enumerate(cluster.tolist()):
        if j in members:
            members[j].append(leaf)
    share = sum(is_clade(leaves, spec) for leaves in members.values() if leaves) / max(len(members), 1)
    predicted = torch.where(cluster >= 0, cluster, -1 - torch.arange(len(cluster))).numpy()
    leaf = torch.arange(len(cluster))
    ari = [
        float(adjusted_rand_score((leaf // spec.branching ** (spec.depth - level)).numpy(), predicted))
        for level in range(1, spec.depth + 1)
    ]
    return {"clade_share": share, "ari": ari}


def tree_identity(codes: Tensor, tree_active: Tensor) -> Tensor:
    """[m]: how well each latent is one planted tree: the largest, over trees, F1 of the samples it fires
    on (codes [n, m] > 0) against those its tree is active in (tree_active: bool [n, n_trees], the
    multi-label truth of level 1). Purity alone (the share of its firing samples in which one tree is
    active) is 1 for a latent of any node below the roots too, so it cannot tell depth 1 from L; F1 also
    asks it to cover the tree, which only a root does: 1 at the roots, b^-(L-l)-ish below, under 1 for a
    latent merging trees. 0 for a latent that never fires."""
    fires = (codes > 0).double()
    active = tree_active.double()
    both = fires.T @ active  # [m, n_trees]
    sizes = fires.sum(0).unsqueeze(1) + active.sum(0).unsqueeze(0)
    return (2 * both / sizes.clamp_min(1)).amax(1) if both.numel() else torch.zeros(codes.shape[1])
