"""Per-latent statistics of one depth's sparse codes, computed with vectorised sparse ops.

A depth has up to tens of thousands of latents over tens of thousands of probe images; everything here works
on the non-zeros of the COO code matrix (sorts, bincounts, scatters), never on python loops over latents, so
60k x 8192 codes analyse in seconds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

# The research log's statistic is "latents whose top-10 activations are all non-zero", whatever top-n is
# shown.
LOG_TOP = 10
# A label that holds at least this share of a latent's top activations names it on its own.
DOMINANT_SHARE = 0.6
# At most this many labels are listed in a mixed latent's name ("letters o/c/e").
MAX_LISTED = 3


@dataclass
class ColumnStats:
    """How often and how strongly each latent fires over the probe images."""

    n_images: int
    n_active: torch.Tensor  # int64 [M]: images on which the latent is non-zero
    density: torch.Tensor  # float [M]
    mean_when_active: torch.Tensor  # float [M], NaN where dead
    max_act: torch.Tensor  # float [M], NaN where dead
    mean_l0: float  # mean active latents per image

    @property
    def dead(self) -> torch.Tensor:
        return self.n_active == 0

    @property
    def collapsed(self) -> bool:
        """All latents dead: nothing to analyse (the log's argmax of all-zero codes picked latent 0)."""
        return bool(self.dead.all())


@dataclass
class TopActivations:
    """Each latent's largest non-zero activations, padded to top_n (rows -1, values NaN) where it fires
    less."""

    rows: torch.Tensor  # int64 [M, top_n]: row of the activation cache (= image), -1 = padding
    values: torch.Tensor  # float [M, top_n], descending, NaN = padding

    @property
    def n_nonzero(self) -> torch.Tensor:
        return (self.rows >= 0).sum(1)


def _nonzero_parts(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, values) of the explicit non-zeros of a sparse COO matrix (stored zeros dropped)."""
    codes = codes.coalesce()
    rows, cols = codes.indices()
    values = codes.values()
    keep = values != 0
    return rows[keep], cols[keep], values[keep].float()


def column_stats(codes: torch.Tensor) -> ColumnStats:
    n, m = codes.shape
    _, cols, values = _nonzero_parts(codes)
    n_active = torch.bincount(cols, minlength=m)
    total = torch.zeros(m, dtype=torch.float64).index_add_(0, cols, values.double())
    max_act = torch.full((m,), float("nan")).scatter_reduce(
        0, cols, values, reduce="amax", include_self=False
    )
    mean_when_active = (total / n_active.clamp(min=1)).float()
    mean_when_active[n_active == 0] = float("nan")
    return ColumnStats(
        n_images=n,
        n_active=n_active,
        density=n_active.double() / max(n, 1),
        mean_when_active=mean_when_active,
        max_act=max_act,
        mean_l0=len(values) / max(n, 1),
    )


def top_activations(codes: torch.Tensor, top_n: int) -> TopActivations:
    """Top-n non-zero activations of every latent by one stable sort of the non-zeros (ties: lower row
    first)."""
    _, m = codes.shape
    rows, cols, values = _nonzero_parts(codes)  # coalesced COO: sorted by row, so stable sorts keep row order
    by_value = torch.argsort(values, descending=True, stable=True)
    order = by_value[torch.argsort(cols[by_value], stable=True)]
    rows, cols, values = rows[order], cols[order], values[order]
    counts = torch.bincount(cols, minlength=m)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(cols)) - starts[cols]
    keep = rank < top_n
    top_rows = torch.full((m, top_n), -1, dtype=torch.int64)
    top_values = torch.full((m, top_n), float("nan"))
    top_rows[cols[keep], rank[keep]] = rows[keep]
    top_values[cols[keep], rank[keep]] = values[keep]
    return TopActivations(top_rows, top_values)


def label_histogram(top_rows: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """[M, n_classes] counts of the true labels of each latent's top images (padding ignored)."""
    valid = top_rows >= 0
    latent = torch.arange(top_rows.shape[0]).unsqueeze(1).expand_as(top_rows)[valid]
    hist = torch.zeros(top_rows.shape[0], n_classes, dtype=torch.int64)
    hist.index_put_((latent, labels[top_rows[valid]]), torch.ones_like(latent), accumulate=True)
    return hist


def purity_entropy(hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max label share and label entropy in bits per row of a label histogram; NaN for empty rows."""
    total = hist.sum(1, keepdim=True).double()
    p = hist.double() / total.clamp(min=1)
    purity = p.max(1).values
    entropy = -(p * torch.log2(p.where(p > 0, torch.ones_like(p)))).sum(1) + 0.0  # no -0.0
    empty = total.squeeze(1) == 0
    purity[empty] = float("nan")
    entropy[empty] = float("nan")
    return purity, entropy


def chance_purity(
    labels: torch.Tensor, n_top: torch.Tensor, n_classes: int, draws: int = 2000, seed: int = 0
) -> float:
    """Mean purity a latent would have by chance: its top images drawn at random from the probe images
    (with replacement, seeded), each latent with its own number of top images `n_top`; 0-image latents are
    left out. The floor under a mean purity: a few classes, or one frequent class, give a high one."""
    n_top = n_top[n_top > 0]
    if len(n_top) == 0 or len(labels) == 0:
        return float("nan")
    longest = int(n_top.max())
    g = torch.Generator().manual_seed(seed)
    drawn = labels[torch.randint(len(labels), (draws, longest), generator=g)]
    onehot = torch.nn.functional.one_hot(drawn, n_classes).cumsum(1)  # [draws, n, classes] counts so far
    by_n = (onehot.max(2).values.double() / torch.arange(1, longest + 1)).mean(0)  # mean purity of n draws
    return float(by_n[n_top - 1].mean())


def _kind(names: list[str]) -> tuple[str, str]:
    """('digit', 'digits') when every name is one digit, letters likewise, else no prefix."""
    if all(len(x) == 1 and x.isdigit() for x in names):
        return "digit", "digits"
    if all(len(x) == 1 and x.isalpha() for x in names):
        return "letter", "letters"
    return "", ""


def auto_label(counts: list[int], label_names: list[str]) -> str:
    """A short human name from a latent's top-image label counts, e.g. 'digit 3 (82%)' or 'letters o/c/e
    (70%)'."""
    total = sum(counts)
    if total == 0:
        return "dead"
    ranked = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    listed, share = [], 0.0
    for i in ranked[:MAX_LISTED]:
        listed.append(label_names[i])
        share += counts[i] / total
        if share >= DOMINANT_SHARE - 1e-9:
            break
    if share < DOMINANT_SHARE - 1e-9:
        return f"mixed ({sum(c > 0 for c in counts)} labels)"
    singular, plural = _kind(listed)
    prefix = singular if len(listed) == 1 else plural
    body = "/".join(listed)
    return f"{prefix + ' ' if prefix else ''}{body} ({round(100 * share)}%)"


def max_cosine_to_parent(w_dec: torch.Tensor, parent_w_dec: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """For each decoder row, its max cosine to any parent decoder row (rows must live in the same space)."""
    a = torch.nn.functional.normalize(w_dec.double(), dim=1)
    b = torch.nn.functional.normalize(parent_w_dec.double(), dim=1)
    best = torch.full((a.shape[0],), -math.inf, dtype=torch.float64)
    for start in range(0, b.shape[0], chunk):
        best = torch.maximum(best, (a @ b[start : start + chunk].T).amax(1))
    return best.float()


def _column_moments(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, m = codes.shape
    _, cols, values = _nonzero_parts(codes)
    v = values.double()
    mean = torch.zeros(m, dtype=torch.float64).index_add_(0, cols, v) / n
    sq = torch.zeros(m, dtype=torch.float64).index_add_(0, cols, v * v) / n
    sd = (sq - mean * mean).clamp(min=0).sqrt()
    # a constant column's E[x^2] - E[x]^2 is rounding error (~1e-8 |mean|), not spread: call it 0
    return mean, torch.where(sd <= 1e-6 * mean.abs(), torch.zeros_like(sd), sd)


def max_correlation_to_parent(
    codes: torch.Tensor, parent_codes: torch.Tensor, chunk: int = 128
) -> torch.Tensor:
    """For each latent, the max Pearson correlation of its activation column with any parent column.

    Columns are compared over the same probe images; constant (dead) columns have no correlation (NaN).
    Works on sparse codes: X^T Y is a sparse-dense product against `chunk` densified parent columns at a time.
    """
    n = codes.shape[0]
    if parent_codes.shape[0] != n:
        raise ValueError(f"codes have {n} rows but parent codes {parent_codes.shape[0]}")
    mx, sx = _column_moments(codes)
    my, sy = _column_moments(parent_codes)
    with warnings.catch_warnings():  # CSR is "beta" in torch but is the fast path for sparse @ dense
        warnings.simplefilter("ignore", UserWarning)
        xt = codes.coalesce().double().t().coalesce().to_sparse_csr()
    p_rows, p_cols, p_values = _nonzero_parts(parent_codes)
    order = torch.argsort(p_cols, stable=True)
    p_rows, p_cols, p_values = p_rows[order], p_cols[order], p_values[order].double()
    bounds = torch.searchsorted(p_cols, torch.arange(0, parent_codes.shape[1] + chunk, chunk))
    best = torch.full((codes.shape[1],), -math.inf, dtype=torch.float64)
    for k, start in enumerate(range(0, parent_codes.shape[1], chunk)):
        stop = min(start + chunk, parent_codes.shape[1])
        lo, hi = bounds[k], bounds[k + 1]
        y = torch.zeros(n, stop - start, dtype=torch.float64)
        y[p_rows[lo:hi], p_cols[lo:hi] - start] = p_values[lo:hi]
        cov = (xt @ y) / n - mx[:, None] * my[None, start:stop]
        corr = cov / (sx[:, None] * sy[None, start:stop])
        corr[:, sy[start:stop] == 0] = -math.inf
        best = torch.maximum(best, corr.nan_to_num(nan=-math.inf, posinf=-math.inf, neginf=-math.inf).amax(1))
    best[(sx == 0) | torch.isinf(best)] = float("nan")
    return best.float()
