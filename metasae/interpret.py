"""Stage `analyse`: per-latent table, depth summary and figures for one depth of one run.

Reads a depth folder (cfg.json, metrics.json, sae.safetensors, codes.safetensors, lineage.parquet) and the
activation cache it was trained from; writes `latents.parquet`, `summary.json` and `figures/` into out_dir.
Images shown are the cache's own rows (dataset pixels, never augmented), so a latent's top images are the
images that produced its top codes. A depth whose latents never fire is reported as collapsed, not analysed
as zeros (the research log's argmax of all-zero codes named latent 0 for every image).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from metasae import plots
from metasae.activations import ActivationCache, load_activations
from metasae.codes import CODES_FILE, load_codes
from metasae.data import InputSpec, load_dataset, to_input_spec
from metasae.devices import resolve_device
from metasae.errors import MetasaeError
from metasae.featviz import DEFAULT_VIZ, FeatureVizConfig, layer_objective, visualise
from metasae.io import atomic_path, provenance, read_json, write_json
from metasae.latent_stats import (
    LOG_TOP,
    ColumnStats,
    TopActivations,
    auto_label,
    column_stats,
    label_histogram,
    max_correlation_to_parent,
    max_cosine_to_parent,
    purity_entropy,
    top_activations,
)
from metasae.meta import stack_metrics
from metasae.models import check_layer, load_classifier
from metasae.seeds import generator

LATENTS_FILE = "latents.parquet"
SUMMARY_FILE = "summary.json"
FIGURES_DIR = "figures"
LINEAGE_FILE = "lineage.parquet"
STATUSES = ("trained", "stopped")
MODES = ("base", "decoder", "activations")
N_FEATURE_VIZ = 4  # latents and classifier neurons visualised by optimisation
N_LINEAGE = 3  # meta-latents, and siblings per meta-latent, on the lineage card

# Column order and types of latents.parquet; a stopped depth writes zero rows of the same schema.
SCHEMA = pa.schema([
    ("latent", pa.int64()),
    ("density", pa.float64()),
    ("n_active", pa.int64()),
    ("mean_act_when_active", pa.float64()),
    ("max_act", pa.float64()),
    ("top_rows", pa.list_(pa.int64())),  # rows of the activation cache (= probe image order)
    ("top_indices", pa.list_(pa.int64())),  # dataset indices of those images
    ("top_values", pa.list_(pa.float64())),
    ("top_labels", pa.list_(pa.int64())),
    ("top_label_hist", pa.string()),  # JSON {label name: count}
    ("purity", pa.float64()),
    ("entropy_bits", pa.float64()),
    ("auto_label", pa.string()),
    ("predicted_labels", pa.list_(pa.int64())),  # classifier predictions for the top images
    ("parent_max_cosine", pa.float64()),  # decoder: cosine of decoder rows; activations: column correlation
    ("dead", pa.bool_()),
    ("all_top10_nonzero", pa.bool_()),
])


@dataclass
class Probe:
    """The probe images behind a depth's codes: labels, pixels of the cache rows and the classifier."""

    cache: ActivationCache
    label_names: list[str]
    images: torch.Tensor | None = None  # [N, C, H, W] in [0, 1], row i = cache row i
    classifier: torch.nn.Module | None = None
    classifier_label_names: list[str] = field(default_factory=list)  # the classes the classifier predicts

    def pixels(self, rows: torch.Tensor) -> torch.Tensor:
        if self.images is None:
            raise MetasaeError("probe images were not loaded (a collapsed depth draws no figures)")
        return self.images[rows]


@dataclass
class DepthAnalysis:
    """Everything computed about one depth; `table()` is latents.parquet, `summary()` summary.json."""

    depth: int
    mode: str
    stats: ColumnStats
    top: TopActivations
    hist: torch.Tensor
    purity: torch.Tensor
    entropy: torch.Tensor
    labels: list[str]
    parent_similarity: torch.Tensor
    predicted: torch.Tensor  # int64 [M, top_n], -1 = padding
    probe: Probe
    notes: list[str] = field(default_factory=list)

    def table(self) -> pa.Table:
        n_top = self.top.n_nonzero.tolist()
        rows = self.top.rows.tolist()
        index = self.probe.cache.index
        names = self.probe.label_names
        hists = [json.dumps({names[c]: n for c, n in enumerate(h) if n}) for h in self.hist.tolist()]
        labels = self.probe.cache.labels
        data = {
            "latent": list(range(len(n_top))),
            "density": self.stats.density.tolist(),
            "n_active": self.stats.n_active.tolist(),
            "mean_act_when_active": self.stats.mean_when_active.tolist(),
            "max_act": self.stats.max_act.tolist(),
            "top_rows": [r[:k] for r, k in zip(rows, n_top, strict=True)],
            "top_indices": [index[r[:k]].tolist() for r, k in zip(rows, n_top, strict=True)],
            "top_values": [v[:k] for v, k in zip(self.top.values.tolist(), n_top, strict=True)],
            "top_labels": [labels[r[:k]].tolist() for r, k in zip(rows, n_top, strict=True)],
            "top_label_hist": hists,
            "purity": self.purity.tolist(),
            "entropy_bits": self.entropy.tolist(),
            "auto_label": self.labels,
            "predicted_labels": [p[:k] for p, k in zip(self.predicted.tolist(), n_top, strict=True)],
            "parent_max_cosine": self.parent_similarity.tolist(),
            "dead": self.stats.dead.tolist(),
            "all_top10_nonzero": (self.stats.n_active >= LOG_TOP).tolist(),
        }
        return pa.Table.from_pydict(data, schema=SCHEMA)

    def summary(self) -> dict[str, Any]:
        alive = ~self.stats.dead
        purity, entropy = self.purity[alive], self.entropy[alive]
        return {
            "status": "collapsed" if self.stats.collapsed else "analysed",
            "depth": self.depth,
            "mode": self.mode,
            "n_images": self.stats.n_images,
            "n_latents": len(alive),
            "alive_latents": int(alive.sum()),
            "dead_fraction": float(self.stats.dead.double().mean()) if len(alive) else None,
            "purity_mean": _number(purity.mean()),
            "purity_median": _number(purity.median()) if len(purity) else None,
            "entropy_mean": _number(entropy.mean()),
            "count_all_top10_nonzero": int((self.stats.n_active >= LOG_TOP).sum()),
            "mean_active_per_image": self.stats.mean_l0,
            "parent_similarity_mean": _number(self.parent_similarity[alive].nanmean()),
            "label_names": self.probe.label_names,
            "notes": self.notes,
        }


def _number(x: torch.Tensor | float) -> float | None:
    """A JSON-safe float: NaN (no alive latents) becomes null."""
    value = float(x)
    return None if math.isnan(value) else value


def _parent_similarity(depth_dir: Path, cfg: dict, codes: torch.Tensor) -> torch.Tensor:
    """Decoder mode: max cosine of decoder rows to the parent's; activations mode: max column correlation."""
    from metasae.sae import load_sae

    if cfg["mode"] == "base":
        return torch.full((codes.shape[1],), float("nan"))
    parent = Path(cfg["parent"])
    if cfg["mode"] == "decoder":
        return max_cosine_to_parent(load_sae(depth_dir).W_dec.detach(), load_sae(parent).W_dec.detach())
    return max_correlation_to_parent(codes, load_codes(parent / CODES_FILE))


def _load_probe(cache: ActivationCache, data_dir: str | Path | None, device: str) -> Probe:
    """The cache's dataset pixels (verified to be the same images, row for row) and its classifier."""
    manifest = cache.manifest
    data = load_dataset(manifest["dataset"], data_dir)
    if len(data) != len(cache.labels) or not torch.equal(data.index, cache.index):
        raise MetasaeError(f"dataset {manifest['dataset']!r} does not match its activation cache row for row "
                           f"({len(data)} images vs {len(cache.labels)} cached); re-cache the activations")
    model, model_cfg = load_classifier(manifest["source_model"], device=device)
    return Probe(cache, list(manifest["label_names"]), data.images, model, list(model_cfg.get("label_names", [])))


@torch.no_grad()
def _predict(probe: Probe, top_rows: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Classifier predictions for every top image (each distinct image classified once)."""
    predicted = torch.full_like(top_rows, -1)
    valid = top_rows >= 0
    if probe.classifier is None or not valid.any():
        return predicted
    rows = top_rows[valid].unique()
    spec = InputSpec(*probe.classifier.input_shape)
    device = next(probe.classifier.parameters()).device
    preds = torch.cat([probe.classifier(to_input_spec(probe.images[rows[i:i + batch_size]], spec).to(device))
                       .argmax(1).cpu() for i in range(0, len(rows), batch_size)])
    lookup = torch.full((len(probe.cache.labels),), -1, dtype=torch.int64)
    lookup[rows] = preds
    predicted[valid] = lookup[top_rows[valid]]
    return predicted


def analyse_codes(codes: torch.Tensor, probe: Probe, top_n: int, depth: int = 1, mode: str = "base",
                  parent_similarity: torch.Tensor | None = None) -> DepthAnalysis:
    """Per-latent statistics of one depth's codes over the probe images (no files touched)."""
    if codes.shape[0] != len(probe.cache.labels):
        raise MetasaeError(f"codes have {codes.shape[0]} rows but the activation cache has "
                           f"{len(probe.cache.labels)}; they must be the same probe images")
    if top_n < 1:
        raise MetasaeError(f"--top-n {top_n}: must be >= 1")
    stats = column_stats(codes)
    top = top_activations(codes, top_n)
    hist = label_histogram(top.rows, probe.cache.labels, len(probe.label_names))
    purity, entropy = purity_entropy(hist)
    labels = [auto_label(h, probe.label_names) for h in hist.tolist()]
    similarity = parent_similarity if parent_similarity is not None else torch.full((codes.shape[1],), math.nan)
    return DepthAnalysis(depth, mode, stats, top, hist, purity, entropy, labels, similarity,
                         _predict(probe, top.rows), probe)


def _read_depth(depth_dir: Path) -> tuple[dict, dict]:
    metrics = read_json(depth_dir / "metrics.json")
    if metrics.get("status") not in STATUSES:
        raise MetasaeError(f"{depth_dir / 'metrics.json'}: status={metrics.get('status')!r}; "
                           f"allowed: {', '.join(STATUSES)}")
    if metrics["status"] == "stopped":
        return {}, metrics
    cfg = read_json(depth_dir / "cfg.json")
    for key in ("depth", "mode", "acts_dir", "parent"):
        if key not in cfg:
            raise MetasaeError(f"{depth_dir / 'cfg.json'}: missing key {key!r}")
    if cfg["mode"] not in MODES:
        raise MetasaeError(f"{depth_dir / 'cfg.json'}: mode={cfg['mode']!r}; allowed: {', '.join(MODES)}")
    if cfg["mode"] != "base" and not cfg["parent"]:
        raise MetasaeError(f"{depth_dir / 'cfg.json'}: mode={cfg['mode']!r} needs a parent depth folder")
    return cfg, metrics


@torch.no_grad()
def _splice_labels(probe: Probe, images: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The probe's labels when they are the classifier's classes; otherwise (out-of-distribution probes) the
    clean classifier's own predictions, so spliced accuracy reads as agreement with the unmodified model."""
    if probe.classifier_label_names == probe.label_names:
        return probe.cache.labels, "dataset_labels"
    return probe.classifier(images).argmax(1), "clean_predictions"


def _write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def analyse_depth(depth_dir: str | Path, out_dir: str | Path, data_dir: str | Path | None = None, top_n: int = 10,
                  n_grid: int = 8, feature_viz: bool = True, device: str = "cpu",
                  viz_cfg: FeatureVizConfig = DEFAULT_VIZ) -> dict:
    """Analyse one depth folder into out_dir; returns the summary it wrote."""
    depth_dir, out_dir = Path(depth_dir), Path(out_dir)
    device = str(resolve_device(device))
    cfg, metrics = _read_depth(depth_dir)
    settings = {"depth_dir": str(depth_dir), "top_n": top_n, "n_grid": n_grid, "feature_viz": feature_viz,
                "viz": vars(viz_cfg)}
    if metrics["status"] == "stopped":
        _write_table(out_dir / LATENTS_FILE, SCHEMA.empty_table())
        summary = {"status": "stopped", "stop_reason": metrics.get("stop_reason"), "depth": metrics.get("depth"),
                   "mode": metrics.get("mode"), "n_latents": 0, "figures": [], "provenance": provenance(settings)}
        write_json(out_dir / SUMMARY_FILE, summary)
        return summary

    codes = load_codes(depth_dir / CODES_FILE)
    cache = load_activations(cfg["acts_dir"])
    probe = Probe(cache, list(cache.manifest["label_names"]))
    if not column_stats(codes).collapsed:
        probe = _load_probe(cache, data_dir, device)
    analysis = analyse_codes(codes, probe, top_n, cfg["depth"], cfg["mode"],
                             _parent_similarity(depth_dir, cfg, codes))
    _write_table(out_dir / LATENTS_FILE, analysis.table())
    figures: list[str] = []
    if not analysis.stats.collapsed:
        figures = write_figures(analysis, depth_dir, cfg, out_dir / FIGURES_DIR, n_grid, feature_viz, viz_cfg,
                                device)
    stack = {}
    if not analysis.stats.collapsed:
        images = to_input_spec(probe.images, InputSpec(*probe.classifier.input_shape))
        stack = stack_metrics(depth_dir, probe.classifier.cpu(), cache.manifest["layer"], cache.acts, images,
                              *_splice_labels(probe, images))
    summary = {**analysis.summary(), **stack, "stop_reason": None, "figures": figures,
               "provenance": provenance(settings)}
    write_json(out_dir / SUMMARY_FILE, summary)
    return summary


# -- figures -------------------------------------------------------------------------------------------------

def _row(analysis: DepthAnalysis, latent: int, prefix: str = "") -> plots.ImageRow:
    k = int(analysis.top.n_nonzero[latent])
    rows = analysis.top.rows[latent, :k]
    title = (f"{prefix}latent {latent}\n{analysis.labels[latent]}\n"
             f"density {float(analysis.stats.density[latent]):.2g}")
    captions = [f"{v:.2g}" for v in analysis.top.values[latent, :k].tolist()]
    return plots.ImageRow(title, analysis.probe.pixels(rows), captions)


def _densest(analysis: DepthAnalysis, n: int) -> list[int]:
    alive = (~analysis.stats.dead).nonzero().squeeze(1)
    order = torch.argsort(analysis.stats.density[alive], descending=True, stable=True)
    return alive[order][:n].tolist()


def _purest(analysis: DepthAnalysis, n: int) -> list[int]:
    """Highest purity first; among equals, those with more non-zero top images, then stronger activations."""
    alive = (~analysis.stats.dead).nonzero().squeeze(1).tolist()
    key = {i: (-float(analysis.purity[i]), -int(analysis.top.n_nonzero[i]), -float(analysis.stats.max_act[i]), i)
           for i in alive}
    return sorted(alive, key=key.__getitem__)[:n]


def write_figures(analysis: DepthAnalysis, depth_dir: Path, cfg: dict, fig_dir: Path, n_grid: int,
                  feature_viz: bool, viz_cfg: FeatureVizConfig, device: str) -> list[str]:
    """All depth-level figures; returns their file names (relative to fig_dir)."""
    from metasae.sae import load_sae

    d = analysis.depth
    name = f"depth {d} ({analysis.mode})"
    written = []

    def out(file: str) -> Path:
        written.append(file)
        return fig_dir / file

    plots.image_grid([_row(analysis, i) for i in _densest(analysis, n_grid)],
                     f"{name}: top images of the {n_grid} densest latents", out("top_images_densest.png"))
    plots.image_grid([_row(analysis, i) for i in _purest(analysis, n_grid)],
                     f"{name}: top images of the {n_grid} purest latents", out("top_images_purest.png"))
    plots.log_density_histogram(analysis.stats.density.numpy(), f"{name}: latent density",
                                out("log10_density.png"))
    plots.activation_count_bars(analysis.stats.n_active.clamp(max=LOG_TOP).numpy(), LOG_TOP,
                                analysis.stats.mean_l0, f"{name}: activation counts", out("activation_counts.png"))
    alive = (~analysis.stats.dead).nonzero().squeeze(1)
    w_dec = load_sae(depth_dir).W_dec.detach()[alive].numpy()
    groups = [_group(analysis.labels[i]) for i in alive.tolist()]
    plots.decoder_pca(w_dec, groups, f"{name}: decoder rows of alive latents (PCA)", out("decoder_pca.png"))
    plots.purity_entropy_distributions(analysis.purity[alive].numpy(), analysis.entropy[alive].numpy(),
                                       f"{name}: label purity and entropy of top images", out("purity_entropy.png"))
    if feature_viz:
        rows = _feature_viz_rows(analysis, depth_dir, cfg, viz_cfg, device)
        plots.image_grid(rows, f"{name}: inputs optimised to maximise latents and classifier neurons",
                         out("feature_viz.png"))
    if d >= 2 and (depth_dir / LINEAGE_FILE).is_file():
        card = _lineage_card(analysis, depth_dir, cfg)
        if card is None:
            analysis.notes.append("lineage card skipped: no parent latent decomposes into an alive meta-latent")
        else:
            plots.lineage_card(*card, f"{name}: a depth-{d - 1} latent, its meta-latents and their siblings",
                               out("lineage_card.png"))
    return written


def _group(label: str) -> str:
    """Colour group for the PCA plot: the auto-label without its percentage ('digit 3 (82%)' -> 'digit 3')."""
    return label.rsplit(" (", 1)[0]


def _feature_viz_rows(analysis: DepthAnalysis, depth_dir: Path, cfg: dict, viz_cfg: FeatureVizConfig,
                      device: str) -> list[plots.ImageRow]:
    """Optimised inputs for the purest latents (through classifier layer -> this depth's encoder) and for the
    classifier neurons with the largest mean activation on the probe images."""
    from metasae.sae import load_sae

    model = analysis.probe.classifier
    layer_name = analysis.probe.cache.manifest["layer"]
    layer = check_layer(model, layer_name, where=str(analysis.probe.cache.manifest["source_model"]))
    shape = tuple(model.input_shape)
    gen = generator("feature-viz", cfg.get("seed", 0), analysis.depth)
    for p in model.parameters():
        p.requires_grad_(False)

    latents = torch.tensor(_purest(analysis, N_FEATURE_VIZ))
    if analysis.depth == 1:  # pre-activations: a gradient even where the latent is off
        readout = load_sae(depth_dir, device=device).eval().pre_acts
    else:
        from metasae.meta import stack_encoder

        encode = stack_encoder(depth_dir)
        readout = lambda acts: encode(acts.cpu())  # noqa: E731  (the stack encoder lives on the CPU)
    # Start from the mean probe image (conversion is linear, so convert the mean, not 60k images).
    start = to_input_spec(analysis.probe.images.mean(0, keepdim=True), InputSpec(*shape))[0]
    latent_images = visualise(layer_objective(model, layer, readout, latents), len(latents), shape, gen, viz_cfg,
                              device, start)
    neurons = torch.argsort(analysis.probe.cache.acts.mean(0), descending=True, stable=True)[:N_FEATURE_VIZ]
    neuron_images = visualise(layer_objective(model, layer, lambda a: a, neurons), len(neurons), shape, gen,
                              viz_cfg, device, start)
    return [plots.ImageRow(f"depth {analysis.depth}\nlatents", latent_images, [f"latent {i}" for i in latents.tolist()]),
            plots.ImageRow(f"classifier\n{layer_name}", neuron_images, [f"neuron {i}" for i in neurons.tolist()])]


def _lineage_card(analysis: DepthAnalysis, depth_dir: Path, cfg: dict
                  ) -> tuple[plots.ImageRow, list[tuple[plots.ImageRow, list[plots.ImageRow]]]] | None:
    """The parent latent that decomposes into the most alive meta-latents (ties: larger total weight)."""
    lineage = pd.read_parquet(depth_dir / LINEAGE_FILE)
    missing = {"parent_latent", "meta_latent", "weight"} - set(lineage.columns)
    if missing:
        raise MetasaeError(f"{depth_dir / LINEAGE_FILE}: missing column(s) {sorted(missing)}")
    alive_meta = (~analysis.stats.dead).numpy()
    lineage = lineage[(lineage.weight != 0) & alive_meta[lineage.meta_latent.to_numpy()]]
    parent_codes = load_codes(Path(cfg["parent"]) / CODES_FILE)
    parent = analyse_codes(parent_codes, analysis.probe, analysis.top.rows.shape[1], analysis.depth - 1)
    lineage = lineage[~parent.stats.dead.numpy()[lineage.parent_latent.to_numpy()]]
    if lineage.empty:
        return None
    per_parent = lineage.groupby("parent_latent").weight.agg(["size", "sum"]).reset_index()
    chosen = int(per_parent.sort_values(["size", "sum", "parent_latent"], ascending=[False, False, True],
                                        kind="stable").parent_latent.iloc[0])
    metas = lineage[lineage.parent_latent == chosen].sort_values(["weight", "meta_latent"],
                                                                 ascending=[False, True], kind="stable")
    card = []
    for m, w in zip(metas.meta_latent.head(N_LINEAGE).tolist(), metas.weight.head(N_LINEAGE).tolist(), strict=True):
        siblings = lineage[(lineage.meta_latent == m) & (lineage.parent_latent != chosen)].sort_values(
            ["weight", "parent_latent"], ascending=[False, True], kind="stable")
        sibling_rows = [_row(parent, p, f"d{analysis.depth - 1} sibling w={sw:.2g} ")
                        for p, sw in zip(siblings.parent_latent.head(N_LINEAGE).tolist(),
                                         siblings.weight.head(N_LINEAGE).tolist(), strict=True)]
        card.append((_row(analysis, m, f"d{analysis.depth} meta w={w:.2g} "), sibling_rows))
    return _row(parent, chosen, f"d{analysis.depth - 1} "), card
