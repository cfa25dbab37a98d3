"""Score learned latents against planted features (metasae.synth_tree): directions, codes and labels.

Cosines are signed throughout: a latent's code is non-negative, so a decoder row reconstructs a feature only
when it points along +feature; a row along -feature explains none of it and must not count as a match.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from metasae.latent_stats import label_histogram, purity_entropy
from metasae.synth_tree import SynthTree

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
    """Mean score over a one-to-one matching maximising the total (min(m, n) pairs)."""
    rows, cols = linear_sum_assignment(score.numpy(), maximize=True)
    return float(score[rows, cols].mean())


def hungarian_mean_cosine(learned: Tensor, true: Tensor) -> float:
    """Mean cosine over the best one-to-one matching: unlike max cosine, one latent cannot stand for two
    features. Averaged over the min(m, n) matched pairs."""
    return _hungarian_mean(cosine_matrix(learned, true))


def correlation_matrix(x: Tensor, y: Tensor) -> Tensor:
    """[m, n] Pearson correlations between the columns of x [N, m] and y [N, n]; constant columns give 0."""
    x, y = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    x = x / x.norm(dim=0).clamp_min(1e-12)
    y = y / y.norm(dim=0).clamp_min(1e-12)
    return x.T @ y


def mcc(learned_codes: Tensor, true_codes: Tensor) -> float:
    """Mean correlation coefficient (ICA literature, SynthSAEBench): mean |Pearson r| over the Hungarian
    matching of learned latents to true features by |r|, over the min(m, n_true) matched pairs."""
    return _hungarian_mean(correlation_matrix(learned_codes, true_codes).abs())


def level_purity(top_rows: Tensor, level_labels: Tensor) -> Tensor:
    """[m]: share of the most common tree-level label among each latent's top rows (top_rows [m, top_n],
    -1 = padding, as metasae.latent_stats.top_activations gives); rows with label -1 (no active tree) are
    ignored; NaN where a latent has no labelled row."""
    labelled = top_rows.clone()
    labelled[(top_rows >= 0) & (level_labels[top_rows.clamp_min(0)] < 0)] = -1
    n_classes = int(level_labels.max()) + 1 if len(level_labels) else 0
    return purity_entropy(label_histogram(labelled, level_labels, max(n_classes, 1)))[0]


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
