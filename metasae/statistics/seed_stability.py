"""Cross-seed stability: how well a depth's latents are reproduced by the same depth of another seed.

Each pair of seeds' alive latents is matched one-to-one (Hungarian, by signed similarity); a seed's
stability is its mean matched similarity and the share of matches above `STABLE_COSINE`, both over the larger
seed's latents (a latent left unmatched counts 0, so a seed with extra latents is not scored on its best
subset), averaged over its matchings with every other seed. The seeds are a stack's classifier seeds or, on
one classifier, its SAE seeds (`stability`'s `replicate`). Latents are compared as decoder rows where every
seed's rows live in one space, otherwise as the correlation of their codes over the same probe images
(`stability_inputs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse
import torch
from scipy.optimize import linear_sum_assignment

from metasae.errors import MetasaeError
from metasae.groundtruth import cosine_matrix
from metasae.io import read_json
from metasae.layout import MANIFEST_FILE
from metasae.stack import Depth
from metasae.statistics.groups import GROUP

STABLE_COSINE = 0.9  # a latent is reproduced in another seed when its Hungarian match exceeds this
STABILITY_COLUMNS = ("stability_mean_cosine", "stability_fraction_matched", "stability_basis")


@dataclass(frozen=True)
class CodeColumns:
    """A seed's alive latents as columns of its codes over the probe images, correlated with another seed's
    without densifying sparse codes: corr = (X^T Y - n mu_x mu_y^T) / (|x - mu_x| |y - mu_y|^T), the cosine
    of the centred columns (a TopK code of 16 in 2304 latents multiplies 16 x 16 pairs per image)."""

    columns: scipy.sparse.csc_matrix  # [n_images, alive latents]
    mean: np.ndarray
    norm: np.ndarray  # of the centred columns

    @classmethod
    def of(cls, codes: torch.Tensor, alive: torch.Tensor) -> CodeColumns:
        rows, cols = codes.indices().numpy()
        matrix = scipy.sparse.csc_matrix(
            (codes.values().double().numpy(), (rows, cols)), shape=tuple(codes.shape)
        )[:, alive.numpy()]
        n = matrix.shape[0]
        mean = np.asarray(matrix.mean(axis=0)).ravel()
        sumsq = np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel()
        spread = sumsq - n * mean * mean  # a constant column leaves rounding noise: it is 0
        return cls(matrix, mean, np.sqrt(np.where(spread > 1e-12 * sumsq, spread, 0.0)))

    def __len__(self) -> int:
        return self.columns.shape[1]

    def correlation(self, other: CodeColumns) -> np.ndarray:
        """[m, n] Pearson correlations of this seed's latents with the other's (constant columns give 0)."""
        x, y = self.columns, other.columns
        dense = max(x.nnz / max(x.shape[0] * x.shape[1], 1), y.nnz / max(y.shape[0] * y.shape[1], 1)) > 0.05
        gram = x.toarray().T @ y.toarray() if dense else (x.T @ y).toarray()
        centred = gram - x.shape[0] * np.outer(self.mean, other.mean)
        scale = np.outer(self.norm, other.norm)
        return np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 0)


def similarity(a: torch.Tensor | CodeColumns, b: torch.Tensor | CodeColumns) -> np.ndarray:
    """[m, n] signed cosines of rows (decoder rows), or correlations of code columns."""
    if isinstance(a, CodeColumns) and isinstance(b, CodeColumns):
        return a.correlation(b)
    return cosine_matrix(a, b).numpy()


def matched_similarity(
    a: torch.Tensor | CodeColumns, b: torch.Tensor | CodeColumns, threshold: float = STABLE_COSINE
) -> tuple[float, float]:
    """Hungarian one-to-one matching of the latents of a and b by signed similarity: (mean similarity, share
    of latents matched above `threshold`), both over max(m, n) latents, an unmatched one counting 0; NaN
    where either has no latents."""
    if not len(a) or not len(b):
        return math.nan, math.nan
    score = similarity(a, b)
    rows, cols = linear_sum_assignment(score, maximize=True)
    matched, n = score[rows, cols], max(score.shape)
    return float(matched.sum() / n), float((matched > threshold).sum() / n)


def seed_stability(matrices: dict[int, torch.Tensor | CodeColumns]) -> dict[int, tuple[float, float]]:
    """Each seed's (mean matched cosine, share matched above STABLE_COSINE), averaged over its matchings with
    every other seed."""
    pairs = {
        (s, t): matched_similarity(matrices[s], matrices[t]) for s in matrices for t in matrices if s < t
    }
    out = {}
    for seed in matrices:
        mine = np.array([v for (s, t), v in pairs.items() if seed in (s, t)], dtype=float)
        out[seed] = (
            (float(np.nanmean(mine[:, 0])), float(np.nanmean(mine[:, 1])))
            if len(mine)
            else (math.nan, math.nan)
        )
    return out


def stability_inputs(seeds: dict[int, Depth]) -> tuple[str, dict[int, torch.Tensor | CodeColumns]]:
    """What the seeds' latents are matched on, and each seed's alive latents as rows.

    Decoder rows where every seed's rows live in one space: depth 1 or decoder mode, over one activation
    cache's source model. Otherwise (each seed its own classifier, or activations mode, whose rows live in
    the parent's latent space) the latents' code columns over the probe images, centred, so that their cosine
    is the Pearson correlation of the latents' activations on the same images.
    """
    folders = list(seeds.values())
    sources = {read_json(f.acts_dir / MANIFEST_FILE).get("source_model") for f in folders}
    alive = {
        s: torch.bincount(f.image_codes.indices()[1], minlength=f.image_codes.shape[1]) > 0
        for s, f in seeds.items()
    }
    if len(sources) == 1 and all(f.mode in ("base", "decoder") for f in folders):
        return "decoder rows", {s: f.sae.W_dec.detach()[alive[s]] for s, f in seeds.items()}
    if len({f.image_codes.shape[0] for f in folders}) != 1:
        raise MetasaeError(
            "stability: the seeds' codes cover different numbers of probe images: "
            + ", ".join(f"{f.path} ({f.image_codes.shape[0]})" for f in folders)
        )
    return "codes", {s: CodeColumns.of(f.image_codes.coalesce(), alive[s]) for s, f in seeds.items()}


def stability(
    folders: dict[tuple, Depth], modes: list[str], group: Sequence[str] = GROUP, replicate: str = "seed"
) -> pd.DataFrame:
    """Stability of every (group, depth) that two or more replicates trained: one row per replicate.
    `folders` is keyed (*group values, replicate, depth); a `mode` of None (depth 1) gives a row per mode."""
    by_depth: dict[tuple, dict[int, Depth]] = {}
    for (*key, seed, depth), folder in folders.items():
        if not folder.stopped:
            by_depth.setdefault((*key, depth), {})[seed] = folder
    mode_at = list(group).index("mode")
    rows = []
    for (*key, depth), seeds in sorted(by_depth.items(), key=lambda kv: str(kv[0])):
        if len(seeds) < 2:
            continue
        basis, matrices = stability_inputs(seeds)
        for folder in seeds.values():  # this group's codes are done with: free them (peak RSS, issue 17)
            folder.__dict__.pop("codes", None)
        for seed, (mean_cosine, matched) in seed_stability(matrices).items():
            for mode in [key[mode_at]] if key[mode_at] else modes:
                rows.append(
                    {
                        **dict(zip(group, key, strict=True)),
                        "mode": mode,
                        replicate: seed,
                        "depth": depth,
                        "stability_mean_cosine": mean_cosine,
                        "stability_fraction_matched": matched,
                        "stability_basis": basis,
                    }
                )
    return pd.DataFrame(rows, columns=[*group, replicate, "depth", *STABILITY_COLUMNS])
