"""The figures of one analysed depth: drawing functions that take plain arrays (one PNG each), and
`write_depth_figures`, which picks what to show of a `DepthAnalysis` (densest and purest latents, density,
activation counts, decoder PCA, purity, feature visualisation, a lineage card).

Figures are for a person reading a depth: titles say what is shown, axes say in which units. Which of them a
depth gets is `figures` (the `analysis.figures` config key, `metasae analyse --figures`): `report` (the
default) draws only the ones the write-up embeds (REPORT_FIGURES: the top-image grids and the lineage card;
the explorer draws its own thumbnails), `all` every one, `none` none.

The image grids are drawn straight into one pixel array with Pillow (no matplotlib: a depth that draws only
the report's figures never imports it); the plots import matplotlib where they draw.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from metasae.analysis import FIGURE_SETS, DepthAnalysis, analyse_codes
from metasae.data import InputSpec, to_input_spec
from metasae.featviz import FeatureVizConfig, layer_objective, visualise
from metasae.io import atomic_path
from metasae.latent_stats import LOG_TOP
from metasae.models import check_layer
from metasae.seeds import generator
from metasae.stack import Depth

N_FEATURE_VIZ = 4  # latents and classifier neurons visualised by optimisation
N_LINEAGE = 3  # meta-latents, and siblings per meta-latent, on the lineage card
# The per-depth figures the report embeds (LINEAGE_FIGURES of metasae/writeup/sections/lineage.py names
# their prefixes).
REPORT_FIGURES = frozenset({"top_images_densest.png", "top_images_purest.png", "lineage_card.png"})

# Image grids: each image scaled up by a whole factor to about TILE_PX (nearest neighbour: pixels stay
# pixels), GAP_PX between tiles; text in DejaVu Sans, as the matplotlib figures.
TILE_PX, GAP_PX, MARGIN_PX = 64, 6, 10
TITLE_PT, ROW_PT, CAPTION_PT = 14, 11, 10
INK, FRAME = 20, 190  # grey levels of the text and of a 1-pixel frame around each image
PNG_LEVEL = 3  # zlib level; 6 (Pillow's default) took 1.6x as long on a lineage card for a 12% smaller file


@dataclass
class ImageRow:
    """One labelled row of a grid: a title and images [n, C, H, W] in [0, 1] with a caption each."""

    title: str
    images: torch.Tensor
    captions: Sequence[str] = ()


@cache
def _font(size: int):
    """DejaVu Sans, the font of the matplotlib figures, found without importing matplotlib; Pillow's own
    font where it is missing."""
    from importlib.util import find_spec

    from PIL import ImageFont

    spec = find_spec("matplotlib")
    for folder in spec.submodule_search_locations or [] if spec else []:
        path = Path(folder, "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    try:
        return ImageFont.load_default(size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or without FreeType: one bitmap size
        return ImageFont.load_default()


def _tiles(images: torch.Tensor, scale: int, channels: int) -> np.ndarray:
    """[n, C, H, W] in [0, 1] -> uint8 [n, H*scale, W*scale, channels] (grey repeated into RGB if 3)."""
    x = images.detach().float().cpu().clamp(0, 1).nan_to_num(0.0)
    x = x.expand(-1, 3, -1, -1) if channels == 3 and x.shape[1] == 1 else x[:, :channels]
    pixels = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return pixels.repeat(scale, axis=1).repeat(scale, axis=2)


@cache
def _line_height(pt: int) -> int:
    return _font(pt).getbbox("Ag|")[3] + 2


@cache
def _text(line: str, pt: int) -> np.ndarray:
    """One line of text as ink coverage, uint8 [line height, width] (255: ink); each string drawn once."""
    from PIL import Image, ImageDraw

    font = _font(pt)
    picture = Image.new("L", (max(1, font.getbbox(line)[2]), _line_height(pt)), 0)
    ImageDraw.Draw(picture).text((0, 0), line, fill=255, font=font)
    return np.asarray(picture)


def _text_size(text: str, pt: int) -> tuple[int, int]:
    lines = text.split("\n") if text else []
    return max([_text(line, pt).shape[1] for line in lines] + [0]), len(lines) * _line_height(pt)


def _write(canvas: np.ndarray, x: int, y: int, text: str, pt: int, align: str = "left") -> None:
    """Ink `text` onto canvas [H, W(, C)] with its top-left corner at (x, y); lines aligned left or right
    within the text's width."""
    width = _text_size(text, pt)[0]
    for n, line in enumerate(text.split("\n")):
        ink = _text(line, pt)
        left = x + (width - ink.shape[1] if align == "right" else 0)
        top = y + n * _line_height(pt)
        region = canvas[top : top + ink.shape[0], left : left + ink.shape[1]]
        shade = (255 - ink.astype(np.uint16) * (255 - INK) // 255).astype(np.uint8)
        shade = shade[: region.shape[0], : region.shape[1]]
        np.minimum(region, shade[..., None] if region.ndim == 3 else shade, out=region)


def image_grid(rows: Sequence[ImageRow], title: str, path: str | os.PathLike) -> None:
    """Rows of images, each titled on its left with a caption under each image: top-activating originals
    per latent, or optimised inputs. One pixel array (grey when every image is), written as one PNG; each
    distinct string is rendered once, so a 130-image lineage card takes milliseconds."""
    from PIL import Image

    shape = next((tuple(r.images.shape[1:]) for r in rows if len(r.images)), (1, 8, 8))
    h, w = shape[1:]
    scale = max(1, TILE_PX // max(h, w))
    th, tw = h * scale, w * scale
    channels = 1 if all(r.images.shape[1] == 1 for r in rows if len(r.images)) else 3
    n_cols = max([len(r.images) for r in rows] + [1])
    title_w, title_h = _text_size(title, TITLE_PT)
    label_w = max([_text_size(r.title, ROW_PT)[0] for r in rows] + [0]) + 2 * GAP_PX
    caption_h = _line_height(CAPTION_PT) + GAP_PX // 2 if any(len(r.captions) for r in rows) else 0
    cell_w = tw + GAP_PX
    cell_h = max(th + caption_h, max([_text_size(r.title, ROW_PT)[1] for r in rows] + [0])) + 2 * GAP_PX
    top = MARGIN_PX + title_h + GAP_PX
    width = max(2 * MARGIN_PX + label_w + n_cols * cell_w, 2 * MARGIN_PX + title_w)
    canvas = np.full((top + len(rows) * cell_h + MARGIN_PX, width, channels), 255, dtype=np.uint8)
    x0 = MARGIN_PX + label_w
    _write(canvas, MARGIN_PX, MARGIN_PX, title, TITLE_PT)
    counts = [len(r.images) for r in rows]
    every = [r.images for r in rows if len(r.images)]
    tiles = iter(_tiles(torch.cat(every), scale, channels) if every else [])  # all rows converted at once
    for r, row in enumerate(rows):
        y = top + r * cell_h + GAP_PX
        for k in range(counts[r]):
            x = x0 + k * cell_w
            canvas[y - 1 : y + th + 1, x - 1 : x + tw + 1] = FRAME  # a pale image still shows its edges
            canvas[y : y + th, x : x + tw] = next(tiles)
        text_w, text_h = _text_size(row.title, ROW_PT)  # right-aligned beside the row, centred on its tiles
        _write(canvas, x0 - GAP_PX - text_w, y + max(0, (th - text_h) // 2), row.title, ROW_PT, "right")
        for k, caption in enumerate(row.captions[: len(row.images)]):
            x = x0 + k * cell_w + (tw - _text_size(caption, CAPTION_PT)[0]) // 2
            _write(canvas, x, y + th + GAP_PX // 2, caption, CAPTION_PT)
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", compress_level=PNG_LEVEL)


def _pyplot():
    """pyplot and the package's `save`, imported where a plot is drawn (not with this module)."""
    import matplotlib.pyplot as plt

    from metasae.figures import save

    return plt, save


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
    plt, save = _pyplot()
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
    plt, save = _pyplot()
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
    plt, save = _pyplot()
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
    plt, save = _pyplot()
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
    figures: str = "report",
) -> list[str]:
    """The figures of one analysed depth that `figures` asks for (`all`, `report`: REPORT_FIGURES, `none`);
    returns their file names (relative to fig_dir). Feature visualisation comes with `all` and feature_viz."""
    if figures not in FIGURE_SETS:
        raise ValueError(f"figures={figures!r}: expected one of {', '.join(FIGURE_SETS)}")
    d = analysis.depth
    name = f"depth {d} ({analysis.mode})"
    written = []

    def wanted(file: str) -> bool:
        return figures == "all" or (figures == "report" and file in REPORT_FIGURES)

    def out(file: str) -> Path:
        written.append(file)
        return fig_dir / file

    if wanted("top_images_densest.png"):
        image_grid(
            [_row(analysis, i) for i in _densest(analysis, n_grid)],
            f"{name}: top images of the {n_grid} densest latents",
            out("top_images_densest.png"),
        )
    if wanted("top_images_purest.png"):
        image_grid(
            [_row(analysis, i) for i in _purest(analysis, n_grid)],
            f"{name}: top images of the {n_grid} purest latents",
            out("top_images_purest.png"),
        )
    if figures == "all":
        log_density_histogram(
            analysis.stats.density.numpy(), f"{name}: latent density", out("log10_density.png")
        )
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
    if figures == "all" and feature_viz:
        rows = _feature_viz_rows(analysis, depth, viz_cfg, device)
        image_grid(
            rows,
            f"{name}: inputs optimised to maximise latents and classifier neurons",
            out("feature_viz.png"),
        )
    if wanted("lineage_card.png") and d >= 2 and depth.lineage is not None:
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
    parent = analyse_codes(
        depth.parent.image_codes,
        analysis.probe,
        analysis.top.rows.shape[1],
        analysis.depth - 1,
        predict=False,
    )
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
