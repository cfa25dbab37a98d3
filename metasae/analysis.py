"""One depth's per-latent analysis over its probe images: the statistics behind latents.parquet and
summary.json, computed from codes in memory (no files touched; the `analyse` stage reads and writes).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import torch

from metasae.activations import ActivationCache
from metasae.data import InputSpec, to_input_spec
from metasae.errors import MetasaeError
from metasae.latent_stats import (
    LOG_TOP,
    ColumnStats,
    TopActivations,
    auto_label,
    chance_purity,
    column_stats,
    label_histogram,
    purity_entropy,
    top_activations,
)
from metasae.taxonomy import coarsen, superclasses

# Which per-depth figures an analysis draws (`analysis.figures`, `metasae analyse --figures`): every one, the
# ones the report embeds (metasae.figures.depth.REPORT_FIGURES), or none.
FIGURE_SETS = ("all", "report", "none")

# Column order and types of latents.parquet; a stopped depth writes zero rows of the same schema.
SCHEMA = pa.schema(
    [
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
        (
            "parent_max_cosine",
            pa.float64(),
        ),  # decoder: cosine of decoder rows; activations: column correlation
        ("dead", pa.bool_()),
        ("all_top10_nonzero", pa.bool_()),
    ]
)


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
            **self._rated_purity(),
            "entropy_mean": _number(entropy.mean()),
            "count_all_top10_nonzero": int((self.stats.n_active >= LOG_TOP).sum()),
            "mean_active_per_image": self.stats.mean_l0,
            "parent_similarity_mean": _number(self.parent_similarity[alive].nanmean()),
            **self._purity_levels(alive),
            "label_names": self.probe.label_names,
            "notes": self.notes,
        }

    def _rated_purity(self) -> dict[str, Any]:
        """Purity over the latents with a full top-n (rated), beside its chance floor: a latent firing on one
        image has purity 1 by arithmetic, so rare latents are counted apart and kept out of the mean."""
        n_top = self.top.n_nonzero
        rated = n_top >= self.top.rows.shape[1]
        full = torch.full((1,), self.top.rows.shape[1], dtype=n_top.dtype)
        chance = chance_purity(self.probe.cache.labels, full, len(self.probe.label_names))
        return {
            "rated_latents": int(rated.sum()),
            "rare_latents": int(((n_top > 0) & ~rated).sum()),
            "purity_rated_mean": _number(self.purity[rated].mean()),
            "purity_rated_chance": _number(chance) if bool(rated.any()) else None,
        }

    def _purity_levels(self, alive: torch.Tensor) -> dict[str, Any]:
        """Purity's chance floor (random top images), and purity one level up where the labels have a
        taxonomy (Fashion-MNIST's superclasses): deeper latents that grow more abstract would lose class
        purity and keep superclass purity."""
        labels, n_top = self.probe.cache.labels, self.top.n_nonzero[alive]
        n_classes = len(self.probe.label_names)
        out: dict[str, Any] = {"purity_chance": _number(chance_purity(labels, n_top, n_classes))}
        taxonomy = superclasses(self.probe.label_names)
        if taxonomy is not None:
            names, index = taxonomy
            purity, _ = purity_entropy(coarsen(self.hist[alive], index, len(names)))
            out |= {
                "superclass_purity_mean": _number(purity.mean()),
                "superclass_purity_chance": _number(chance_purity(index[labels], n_top, len(names))),
                "superclasses": names,
            }
        return out


def _number(x: torch.Tensor | float) -> float | None:
    """A JSON-safe float: NaN (no alive latents) becomes null."""
    value = float(x)
    return None if math.isnan(value) else value


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
    preds = torch.cat(
        [
            probe.classifier(to_input_spec(probe.images[rows[i : i + batch_size]], spec).to(device))
            .argmax(1)
            .cpu()
            for i in range(0, len(rows), batch_size)
        ]
    )
    lookup = torch.full((len(probe.cache.labels),), -1, dtype=torch.int64)
    lookup[rows] = preds
    predicted[valid] = lookup[top_rows[valid]]
    return predicted


def analyse_codes(
    codes: torch.Tensor,
    probe: Probe,
    top_n: int,
    depth: int = 1,
    mode: str = "base",
    parent_similarity: torch.Tensor | None = None,
    predict: bool = True,
) -> DepthAnalysis:
    """Per-latent statistics of one depth's codes over the probe images (no files touched). `predict`:
    classify each top image (False: `predicted` is all -1, for a figure that shows no predictions)."""
    if codes.shape[0] != len(probe.cache.labels):
        raise MetasaeError(
            f"codes have {codes.shape[0]} rows but the activation cache has "
            f"{len(probe.cache.labels)}; they must be the same probe images"
        )
    if top_n < 1:
        raise MetasaeError(f"--top-n {top_n}: must be >= 1")
    stats = column_stats(codes)
    top = top_activations(codes, top_n)
    hist = label_histogram(top.rows, probe.cache.labels, len(probe.label_names))
    purity, entropy = purity_entropy(hist)
    labels = [auto_label(h, probe.label_names) for h in hist.tolist()]
    similarity = (
        parent_similarity if parent_similarity is not None else torch.full((codes.shape[1],), math.nan)
    )
    predicted = _predict(probe, top.rows) if predict else torch.full_like(top.rows, -1)
    return DepthAnalysis(depth, mode, stats, top, hist, purity, entropy, labels, similarity, predicted, probe)
