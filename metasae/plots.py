"""One function per figure; each takes plain arrays and writes one PNG atomically (matplotlib Agg, no display).

Figures are for a person reading a depth: titles say what is shown, axes say in which units.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from metasae.io import atomic_path  # noqa: E402


@dataclass
class ImageRow:
    """One labelled row of a grid: a title and images [n, C, H, W] in [0, 1] with a caption each."""

    title: str
    images: torch.Tensor
    captions: Sequence[str] = ()


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    image = image.detach().float().cpu().clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def image_grid(rows: Sequence[ImageRow], title: str, path: str | os.PathLike) -> None:
    """Rows of images, each titled on its left: top-activating originals per latent, or optimised inputs.

    Drawn as one mosaic in one axes (one subplot per image made a 130-image lineage card take seconds).
    """
    n_cols = max([len(r.images) for r in rows] + [1])
    shape = next((r.images.shape[1:] for r in rows if len(r.images)), (1, 8, 8))
    c, h, w = shape
    pad = max(2, h // 6)
    cell_h, cell_w = h + 2 * pad + pad, w + pad  # room under each tile for its caption
    mosaic = np.ones((len(rows) * cell_h, n_cols * cell_w, 3))
    for r, row in enumerate(rows):
        for k, image in enumerate(row.images):
            tile = _to_hwc(image)
            y, x = r * cell_h + pad, k * cell_w
            mosaic[y:y + h, x:x + w] = tile[..., None] if tile.ndim == 2 else tile
    fig, ax = plt.subplots(figsize=(1.05 * n_cols + 2.4, 1.25 * len(rows) + 0.7))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for r, row in enumerate(rows):
        ax.text(-pad, r * cell_h + pad + h / 2, row.title, ha="right", va="center", fontsize=8)
        for k, caption in enumerate(row.captions[:len(row.images)]):
            ax.text(k * cell_w + w / 2, r * cell_h + pad + h + pad * 0.4, caption, ha="center", va="top", fontsize=7)
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def lineage_card(parent: ImageRow, metas: Sequence[tuple[ImageRow, Sequence[ImageRow]]], title: str,
                 path: str | os.PathLike) -> None:
    """One depth d-1 latent, then each of its meta-latents at depth d followed by the sibling latents sharing it."""
    rows = [parent]
    for meta, siblings in metas:
        rows.append(meta)
        rows.extend(ImageRow("\u21b3 " + s.title, s.images, s.captions) for s in siblings)
    image_grid(rows, title, path)


def log_density_histogram(density: np.ndarray, title: str, path: str | os.PathLike) -> None:
    """log10 firing density of alive latents; dead latents are counted in the title (log10 0 is -inf)."""
    alive = density[density > 0]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if len(alive):
        ax.hist(np.log10(alive), bins=min(50, max(5, len(alive) // 5)), color="tab:blue")
    ax.set_xlabel("log10 density (fraction of probe images on which the latent fires)")
    ax.set_ylabel("latents")
    ax.set_title(f"{title}\n{len(density) - len(alive)} of {len(density)} latents dead", fontsize=10)
    _save(fig, path)


def activation_count_bars(n_top_nonzero: np.ndarray, top: int, mean_l0: float, title: str,
                          path: str | os.PathLike) -> None:
    """How many latents have k non-zero activations among their top `top` (k = top is the log's statistic)."""
    counts = np.bincount(np.minimum(n_top_nonzero, top), minlength=top + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    colors = ["tab:gray"] * top + ["tab:green"]
    ax.bar(np.arange(top + 1), counts, color=colors)
    ax.set_xticks(np.arange(top + 1))
    ax.set_xlabel(f"non-zero activations among a latent's top {top}")
    ax.set_ylabel("latents")
    ax.set_title(f"{title}\n{counts[top]} latents with all top-{top} non-zero; mean L0 = {mean_l0:.2f} per image",
                 fontsize=10)
    _save(fig, path)


def decoder_pca(w_dec: np.ndarray, labels: Sequence[str], title: str, path: str | os.PathLike,
                max_legend: int = 12) -> None:
    """Decoder rows projected on their top two principal components, coloured by the latent's label group."""
    centred = w_dec - w_dec.mean(0, keepdims=True)
    if len(centred) >= 2:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.c_[centred @ vt[:1].T, np.zeros(len(centred))]
        explained = (s[:2] ** 2) / max(float((s ** 2).sum()), 1e-30)
    else:
        xy, explained = np.zeros((len(centred), 2)), np.zeros(2)
    groups, sizes = np.unique(np.asarray(labels), return_counts=True)
    shown = set(groups[np.argsort(-sizes, kind="stable")][:max_legend])
    fig, ax = plt.subplots(figsize=(6.5, 5))
    cmap = plt.get_cmap("tab20")
    other = np.array([lab not in shown for lab in labels], dtype=bool)
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=6, c="lightgray", label="other")
    for i, group in enumerate(sorted(shown)):
        mask = np.asarray(labels) == group
        ax.scatter(xy[mask, 0], xy[mask, 1], s=8, color=cmap(i % 20), label=group)
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1] if len(explained) > 1 else 0:.0%} of variance)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    _save(fig, path)


def purity_entropy_distributions(purity: np.ndarray, entropy: np.ndarray, title: str,
                                 path: str | os.PathLike) -> None:
    """Histograms of label purity (max label share) and label entropy (bits) of alive latents' top images."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    ok_p, ok_e = purity[np.isfinite(purity)], entropy[np.isfinite(entropy)]
    a.hist(ok_p, bins=20, range=(0, 1), color="tab:green")
    a.set_xlabel("label purity (max label share among top images)")
    a.set_ylabel("latents")
    a.set_title(f"purity: mean {ok_p.mean() if len(ok_p) else float('nan'):.2f}", fontsize=9)
    b.hist(ok_e, bins=20, color="tab:orange")
    b.set_xlabel("label entropy of top images (bits)")
    b.set_ylabel("latents")
    b.set_title(f"entropy: mean {ok_e.mean() if len(ok_e) else float('nan'):.2f} bits", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
