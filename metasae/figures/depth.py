"""The figures of one analysed depth: drawing functions that take plain arrays (one PNG each), and
`write_depth_figures`, which picks what to show of a `DepthAnalysis` (densest and purest latents, density,
activation counts, decoder PCA, purity, feature visualisation, a lineage card).

Figures are for a person reading a depth: titles say what is shown, axes say in which units.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from metasae.analysis import DepthAnalysis, analyse_codes
from metasae.data import InputSpec, to_input_spec
from metasae.featviz import FeatureVizConfig, layer_objective, visualise
from metasae.figures import save
from metasae.latent_stats import LOG_TOP
from metasae.models import check_layer
from metasae.seeds import generator
from metasae.stack import Depth

N_FEATURE_VIZ = 4  # latents and classifier neurons visualised by optimisation
N_LINEAGE = 3  # meta-latents, and siblings per meta-latent, on the lineage card


@dataclass
class ImageRow:
    """One labelled row of a grid: a title and images [n, C, H, W] in [0, 1] with a caption each."""

    title: str
    images: torch.Tensor
    captions: Sequence[str] = ()


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
            mosaic[y : y + h, x : x + w] = tile[..., None] if tile.ndim == 2 else tile
    fig, ax = plt.subplots(figsize=(1.05 * n_cols + 2.4, 1.25 * len(rows) + 0.7))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for r, row in enumerate(rows):
        ax.text(-pad, r * cell_h + pad + h / 2, row.title, ha="right", va="center", fontsize=8)
        for k, caption in enumerate(row.captions[: len(row.images)]):
            ax.text(
                k * cell_w + w / 2,
                r * cell_h + pad + h + pad * 0.4,
                caption,
                ha="center",
                va="top",
                fontsize=7,
            )
    ax.set_title(title, fontsize=10)
    save(fig, path)


def lineage_card(
    parent: ImageRow,
    metas: Sequence[tuple[ImageRow, Sequence[ImageRow]]],
    title: str,
    path: str | os.PathLike,
) -> None:
    """One depth d-1 latent, then each of its meta-latents at depth d followed by the sibling latents
    sharing it."""
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
    save(fig, path)


def activation_count_bars(
    n_top_nonzero: np.ndarray, top: int, mean_l0: float, title: str, path: str | os.PathLike
) -> None:
    """How many latents have k non-zero activations among their top `top` (k = top is the log's statistic)."""
    counts = np.bincount(np.minimum(n_top_nonzero, top), minlength=top + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    colors = ["tab:gray"] * top + ["tab:green"]
    ax.bar(np.arange(top + 1), counts, color=colors)
    ax.set_xticks(np.arange(top + 1))
    ax.set_xlabel(f"non-zero activations among a latent's top {top}")
    ax.set_ylabel("latents")
    ax.set_title(
        f"{title}\n{counts[top]} latents with all top-{top} non-zero; mean L0 = {mean_l0:.2f} per image",
        fontsize=10,
    )
    save(fig, path)


def decoder_pca(
    w_dec: np.ndarray, labels: Sequence[str], title: str, path: str | os.PathLike, max_legend: int = 12
) -> None:
    """Decoder rows projected on their top two principal components, coloured by the latent's label group."""
    centred = w_dec - w_dec.mean(0, keepdims=True)
    if len(centred) >= 2:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.c_[centred @ vt[:1].T, np.zeros(len(centred))]
        explained = (s[:2] ** 2) / max(float((s**2).sum()), 1e-30)
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
    save(fig, path)


def purity_entropy_distributions(
    purity: np.ndarray, entropy: np.ndarray, title: str, path: str | os.PathLike
) -> None:
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
    save(fig, path)


# -- what one depth shows ---------------------------------------------------------------------------------


def _row(analysis: DepthAnalysis, latent: int, prefix: str = "") -> ImageRow:
    k = int(analysis.top.n_nonzero[latent])
    rows = analysis.top.rows[latent, :k]
    title = (
        f"{prefix}latent {latent}\n{analysis.labels[latent]}\n"
        f"density {float(analysis.stats.density[latent]):.2g}"
    )
    captions = [f"{v:.2g}" for v in analysis.top.values[latent, :k].tolist()]
    return ImageRow(title, analysis.probe.pixels(rows), captions)


def _densest(analysis: DepthAnalysis, n: int) -> list[int]:
    alive = (~analysis.stats.dead).nonzero().squeeze(1)
    order = torch.argsort(analysis.stats.density[alive], descending=True, stable=True)
    return alive[order][:n].tolist()


def _purest(analysis: DepthAnalysis, n: int) -> list[int]:
    """Highest purity first; among equals, those with more non-zero top images, then stronger activations."""
    alive = (~analysis.stats.dead).nonzero().squeeze(1).tolist()
    key = {
        i: (-float(analysis.purity[i]), -int(analysis.top.n_nonzero[i]), -float(analysis.stats.max_act[i]), i)
        for i in alive
    }
    return sorted(alive, key=key.__getitem__)[:n]


def write_depth_figures(
    analysis: DepthAnalysis,
    depth: Depth,
    fig_dir: Path,
    n_grid: int,
    feature_viz: bool,
    viz_cfg: FeatureVizConfig,
    device: str,
) -> list[str]:
    """All figures of one analysed depth; returns their file names (relative to fig_dir)."""
    d = analysis.depth
    name = f"depth {d} ({analysis.mode})"
    written = []

    def out(file: str) -> Path:
        written.append(file)
        return fig_dir / file

    image_grid(
        [_row(analysis, i) for i in _densest(analysis, n_grid)],
        f"{name}: top images of the {n_grid} densest latents",
        out("top_images_densest.png"),
    )
    image_grid(
        [_row(analysis, i) for i in _purest(analysis, n_grid)],
        f"{name}: top images of the {n_grid} purest latents",
        out("top_images_purest.png"),
    )
    log_density_histogram(analysis.stats.density.numpy(), f"{name}: latent density", out("log10_density.png"))
    activation_count_bars(
        analysis.stats.n_active.clamp(max=LOG_TOP).numpy(),
        LOG_TOP,
        analysis.stats.mean_l0,
        f"{name}: activation counts",
        out("activation_counts.png"),
    )
    alive = (~analysis.stats.dead).nonzero().squeeze(1)
    w_dec = depth.sae.W_dec.detach()[alive].numpy()
    groups = [_group(analysis.labels[i]) for i in alive.tolist()]
    decoder_pca(w_dec, groups, f"{name}: decoder rows of alive latents (PCA)", out("decoder_pca.png"))
    purity_entropy_distributions(
        analysis.purity[alive].numpy(),
        analysis.entropy[alive].numpy(),
        f"{name}: label purity and entropy of top images",
        out("purity_entropy.png"),
    )
    if feature_viz:
        rows = _feature_viz_rows(analysis, depth, viz_cfg, device)
        image_grid(
            rows,
            f"{name}: inputs optimised to maximise latents and classifier neurons",
            out("feature_viz.png"),
        )
    if d >= 2 and depth.lineage is not None:
        card = _lineage_card(analysis, depth)
        if card is None:
            analysis.notes.append(
                "lineage card skipped: no parent latent decomposes into an alive meta-latent"
            )
        else:
            lineage_card(
                *card,
                f"{name}: a depth-{d - 1} latent, its meta-latents and their siblings",
                out("lineage_card.png"),
            )
    return written


def _group(label: str) -> str:
    """Colour group for the PCA plot: the auto-label without its percentage ('digit 3 (82%)' -> 'digit 3')."""
    return label.rsplit(" (", 1)[0]


def _feature_viz_rows(
    analysis: DepthAnalysis, depth: Depth, viz_cfg: FeatureVizConfig, device: str
) -> list[ImageRow]:
    """Optimised inputs for the purest latents (through classifier layer -> this depth's encoder) and for the
    classifier neurons with the largest mean activation on the probe images."""
    model = analysis.probe.classifier
    layer_name = analysis.probe.cache.manifest["layer"]
    layer = check_layer(model, layer_name, where=str(analysis.probe.cache.manifest["source_model"]))
    shape = tuple(model.input_shape)
    gen = generator("feature-viz", depth.cfg.get("seed", 0), analysis.depth)
    for p in model.parameters():
        p.requires_grad_(False)

    latents = torch.tensor(_purest(analysis, N_FEATURE_VIZ))
    if analysis.depth == 1:  # pre-activations: a gradient even where the latent is off
        readout = copy.deepcopy(depth.sae).to(device).pre_acts
    else:
        encode = depth.encoder()
        readout = lambda acts: encode(acts.cpu())  # noqa: E731  (the stack encoder lives on the CPU)
    # Start from the mean probe image (conversion is linear, so convert the mean, not 60k images).
    start = to_input_spec(analysis.probe.images.mean(0, keepdim=True), InputSpec(*shape))[0]
    latent_images = visualise(
        layer_objective(model, layer, readout, latents), len(latents), shape, gen, viz_cfg, device, start
    )
    neurons = torch.argsort(analysis.probe.cache.acts.mean(0), descending=True, stable=True)[:N_FEATURE_VIZ]
    neuron_images = visualise(
        layer_objective(model, layer, lambda a: a, neurons), len(neurons), shape, gen, viz_cfg, device, start
    )
    return [
        ImageRow(
            f"depth {analysis.depth}\nlatents", latent_images, [f"latent {i}" for i in latents.tolist()]
        ),
        ImageRow(f"classifier\n{layer_name}", neuron_images, [f"neuron {i}" for i in neurons.tolist()]),
    ]


def _lineage_card(
    analysis: DepthAnalysis, depth: Depth
) -> tuple[ImageRow, list[tuple[ImageRow, list[ImageRow]]]] | None:
    """The parent latent that decomposes into the most alive meta-latents (ties: larger total weight)."""
    lineage = depth.lineage
    alive_meta = (~analysis.stats.dead).numpy()
    lineage = lineage[(lineage.weight != 0) & alive_meta[lineage.meta_latent.to_numpy()]]
    parent = analyse_codes(depth.parent.codes, analysis.probe, analysis.top.rows.shape[1], analysis.depth - 1)
    lineage = lineage[~parent.stats.dead.numpy()[lineage.parent_latent.to_numpy()]]
    if lineage.empty:
        return None
    per_parent = lineage.groupby("parent_latent").weight.agg(["size", "sum"]).reset_index()
    chosen = int(
        per_parent.sort_values(
            ["size", "sum", "parent_latent"], ascending=[False, False, True], kind="stable"
        ).parent_latent.iloc[0]
    )
    metas = lineage[lineage.parent_latent == chosen].sort_values(
        ["weight", "meta_latent"], ascending=[False, True], kind="stable"
    )
    card = []
    for m, w in zip(
        metas.meta_latent.head(N_LINEAGE).tolist(), metas.weight.head(N_LINEAGE).tolist(), strict=True
    ):
        siblings = lineage[(lineage.meta_latent == m) & (lineage.parent_latent != chosen)].sort_values(
            ["weight", "parent_latent"], ascending=[False, True], kind="stable"
        )
        sibling_rows = [
            _row(parent, p, f"d{analysis.depth - 1} sibling w={sw:.2g} ")
            for p, sw in zip(
                siblings.parent_latent.head(N_LINEAGE).tolist(),
                siblings.weight.head(N_LINEAGE).tolist(),
                strict=True,
            )
        ]
        card.append((_row(analysis, m, f"d{analysis.depth} meta w={w:.2g} "), sibling_rows))
    return _row(parent, chosen, f"d{analysis.depth - 1} "), card
