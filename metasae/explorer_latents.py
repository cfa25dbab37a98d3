"""The explorer's per-latent views, computed at explore time from a depth's codes and decoder directions:
quantile-band samples, the depth's log10-density histogram, logit effects and cross-seed matches.

Kept apart from `metasae.explorer` (which reads folders and writes the page) so each computation is a
function of tensors that a test can check by hand.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from metasae.metrics import replace_output
from metasae.statistics.seed_stability import CodeColumns, similarity

N_BANDS = 4  # quantile bands of a latent's non-zero activations: 0-25, 25-50, 50-75, 75-100 %
PER_BAND = 3  # sample images shown per band
DENSITY_BINS = 24


def band_samples(codes: torch.Tensor, n_bands: int = N_BANDS, per_band: int = PER_BAND) -> list[list]:
    """Per latent, per quantile band of its non-zero activations (by rank: band b holds ranks
    [b n / B, (b + 1) n / B)): (lowest value, highest value, [(cache row, value)] of `per_band` images
    evenly spaced in the band). Beside the top images these show what the latent does at weaker strengths;
    a never-active latent has no bands."""
    coo = codes.coalesce()
    rows, cols = coo.indices().numpy()
    values = coo.values().numpy()
    order = np.lexsort((values, cols))  # by latent, then by value ascending
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(cols, np.arange(codes.shape[1] + 1))
    out: list[list] = []
    for latent in range(codes.shape[1]):
        lo, hi = starts[latent], starts[latent + 1]
        n = hi - lo
        bands = []
        for b in range(n_bands if n else 0):
            first, last = lo + b * n // n_bands, lo + (b + 1) * n // n_bands  # [first, last)
            if last <= first:
                continue
            picks = np.unique(np.linspace(first, last - 1, min(per_band, last - first)).round().astype(int))
            bands.append(
                (
                    float(values[first]),
                    float(values[last - 1]),
                    [(int(rows[i]), float(values[i])) for i in picks],
                )
            )
        out.append(bands)
    return out


def density_histogram(density: np.ndarray, n_bins: int = DENSITY_BINS) -> dict:
    """Histogram of log10 density over the depth's alive latents (dead ones have no logarithm: counted
    apart), on bins from the rarest latent's decade up to 0 (= active on every image)."""
    alive = density[density > 0]
    if not len(alive):
        return {"lo": 0.0, "hi": 0.0, "counts": [], "dead": int(len(density))}
    lo = math.floor(float(np.log10(alive.min())))
    lo = min(lo, -1)
    counts, _ = np.histogram(np.log10(alive), bins=n_bins, range=(lo, 0.0))
    return {"lo": lo, "hi": 0.0, "counts": counts.tolist(), "dead": int((density <= 0).sum())}


def latent_scale(codes: torch.Tensor, decoder: torch.Tensor) -> float:
    """The typical size of one depth-1 latent's term in a reconstruction: the mean over the non-zero codes
    of value x |decoder row|. Logit effects push every depth's unit directions by this much, so effects are
    comparable across depths and sized like one real latent firing."""
    coo = codes.coalesce()
    if not coo.values().numel():
        return 0.0
    norms = decoder.norm(dim=1)[coo.indices()[1]]
    return float((coo.values().abs() * norms).mean())


@torch.no_grad()
def logit_effects(
    model: torch.nn.Module,
    layer: str,
    directions: torch.Tensor,
    mean_act: torch.Tensor,
    scale: float,
    probe_image: torch.Tensor,
    batch_size: int = 512,
) -> torch.Tensor:
    """[latents, classes]: logits(x_mean + scale * u_j) - logits(x_mean), the layer's output replaced by
    the shifted mean activation and pushed through the classifier's layers after `layer` (a forward hook
    on that layer; the image fed in only gives the batch its shape)."""
    model.eval()
    base_rows = mean_act.reshape(1, -1)
    out = []
    for start in range(0, len(directions), batch_size):
        rows = torch.cat([base_rows, base_rows + scale * directions[start : start + batch_size]])
        with replace_output(model, layer, lambda _out, r=rows: r):
            logits = model(probe_image.expand(len(rows), *probe_image.shape[1:]))
        out.append(logits[1:] - logits[:1])
    return torch.cat(out) if out else torch.zeros(0, 0)


def seed_matches(
    matrices: dict[int, torch.Tensor | CodeColumns], alive: dict[int, list[int]]
) -> dict[int, dict[int, list]]:
    """Each seed's alive latents matched one-to-one (Hungarian, by signed similarity) to every other seed's:
    {seed: {latent: [(other seed, its latent, similarity)]}}. `matrices` are `stability_inputs`' rows of the
    alive latents (decoder rows or code columns, as the report's stability compares them), `alive` their
    latent ids in the same order."""
    out: dict[int, dict[int, list]] = {s: {} for s in matrices}
    for s in matrices:
        for t in matrices:
            if s >= t or not alive[s] or not alive[t]:
                continue
            score = similarity(matrices[s], matrices[t])
            for i, j in zip(*linear_sum_assignment(score, maximize=True), strict=True):
                a, b, sim = alive[s][i], alive[t][j], float(score[i, j])
                out[s].setdefault(a, []).append((t, b, sim))
                out[t].setdefault(b, []).append((s, a, sim))
    return out
