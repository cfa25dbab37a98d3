"""Stage `analyse`: per-latent table, depth summary and figures for one depth of one run.

Reads a depth folder (as a `stack.Depth`, each file once) and the activation cache it was trained from; writes
`latents.parquet`, `figures/` and, last, `summary.json` into out_dir. Images shown are the cache's own rows
(dataset pixels, never augmented), so a latent's top images are the images that produced its top codes. A
depth whose latents never fire is reported as collapsed, not analysed as zeros (the research log's argmax of
all-zero codes named latent 0 for every image).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from metasae.activations import ActivationCache, load_activations
from metasae.analysis import FIGURE_SETS, SCHEMA, Probe, analyse_codes
from metasae.data import InputSpec, load_dataset, to_input_spec
from metasae.devices import resolve_device
from metasae.errors import MetasaeError
from metasae.featviz import DEFAULT_VIZ, FeatureVizConfig
from metasae.frozen_codes import mean_l0
from metasae.io import atomic_path, provenance, read_json, stage_output, write_json
from metasae.latent_stats import column_stats, max_correlation_to_parent, max_cosine_to_parent
from metasae.layout import BASE_MODE, FIGURES_DIR, LATENTS_FILE, MANIFEST_FILE, SUMMARY_FILE
from metasae.metrics import splice_baselines
from metasae.models import load_classifier
from metasae.stack import Depth
from metasae.statistics.meta_gain import depth_meta_gain


def _parent_similarity(depth: Depth) -> torch.Tensor:
    """Decoder mode: max cosine of decoder rows to the parent's; activations mode: max column correlation."""
    if depth.mode == BASE_MODE:
        return torch.full((depth.image_codes.shape[1],), float("nan"))
    if depth.mode == "decoder":
        return max_cosine_to_parent(depth.sae.W_dec.detach(), depth.parent.sae.W_dec.detach())
    return max_correlation_to_parent(depth.image_codes, depth.parent.image_codes)


Labels = tuple[torch.Tensor, str]  # what a splice is scored against, and where they come from


def _routed(depth: Depth, splice: tuple, labels: Labels, baselines: dict[str, float]) -> dict:
    """Decoder mode d >= 2: the routed codes' L0 and the layer rebuilt by routing, under `routed_` names (they
    are reported, never a verdict: from depth 2-3 routed codes are dense). Nothing for other depths."""
    routed = depth.routed_codes
    if routed is None:
        return {}
    spliced = depth.splice_metrics(
        *splice, *labels, reconstruction=depth.routed_reconstruction(), baselines=baselines
    )
    keys = ("stack_fvu", "spliced_accuracy", "loss_recovered")
    return {"routed_mean_active_per_image": mean_l0(routed), **{f"routed_{k}": spliced[k] for k in keys}}


def _load_probe(cache: ActivationCache, data_dir: str | Path | None, device: str) -> Probe:
    """The cache's dataset pixels (verified to be the same images, row for row) and its classifier."""
    manifest = cache.manifest
    data = load_dataset(manifest["dataset"], data_dir)
    if len(data) != len(cache.labels) or not torch.equal(data.index, cache.index):
        raise MetasaeError(
            f"dataset {manifest['dataset']!r} does not match its activation cache row for row "
            f"({len(data)} images vs {len(cache.labels)} cached); re-cache the activations"
        )
    model, model_cfg = load_classifier(manifest["source_model"], device=device)
    return Probe(
        cache, list(manifest["label_names"]), data.images, model, list(model_cfg.get("label_names", []))
    )


@torch.no_grad()
def _splice_labels(probe: Probe, images: torch.Tensor) -> Labels:
    """The probe's labels when they are the classifier's classes (and not shuffled); otherwise
    (out-of-distribution probes, the shuffled-label control) the clean classifier's own predictions, so
    spliced accuracy reads as agreement with the unmodified model."""
    if probe.classifier_label_names == probe.label_names and not probe.cache.manifest.get("labels_shuffled"):
        return probe.cache.labels, "dataset_labels"
    return probe.classifier(images).argmax(1), "clean_predictions"


def _dataset_is_real(acts_dir: str | None) -> bool:
    """A stopped depth's probe: real or embedded, as its activation cache's manifest says (train-sae records
    the stack's acts_dir in a stopped depth's metrics; without it: False, as for a stand-in)."""
    manifest = Path(acts_dir) / MANIFEST_FILE if acts_dir else None
    return bool(read_json(manifest).get("dataset_is_real")) if manifest and manifest.is_file() else False


def _write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@stage_output(SUMMARY_FILE)
def analyse(
    depth_dir: str | Path,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    top_n: int = 10,
    n_grid: int = 8,
    feature_viz: bool = True,
    device: str = "cpu",
    viz_cfg: FeatureVizConfig = DEFAULT_VIZ,
    figures: str = "report",
    null_memo: str | Path | None = None,
) -> dict:
    """Analyse one depth folder into out_dir; returns the summary it wrote. `figures`: which per-depth
    figures to draw (`report`: those the write-up embeds; `all`; `none`: tables and summary only).
    `null_memo`: a folder where the meta gain's nulls are kept for the study's other analyses (they share
    them); it changes no value, only how often one is computed."""
    if figures not in FIGURE_SETS:
        raise MetasaeError(f"--figures {figures}: expected one of {', '.join(FIGURE_SETS)}")
    depth_dir, out_dir = Path(depth_dir), Path(out_dir)
    device = str(resolve_device(device))
    depth = Depth.load(depth_dir)
    settings = {
        "depth_dir": str(depth_dir),
        "top_n": top_n,
        "n_grid": n_grid,
        "feature_viz": feature_viz,
        "viz": vars(viz_cfg),
        "figures": figures,
    }
    if depth.stopped:
        _write_table(out_dir / LATENTS_FILE, SCHEMA.empty_table())
        summary = {
            "status": "stopped",
            "stop_reason": depth.metrics.get("stop_reason"),
            "depth": depth.metrics.get("depth"),
            "mode": depth.metrics.get("mode"),
            "n_latents": 0,
            "dataset_is_real": _dataset_is_real(depth.metrics.get("acts_dir")),
            "figures": [],
            "provenance": provenance(settings),
        }
        write_json(out_dir / SUMMARY_FILE, summary)
        return summary

    codes = depth.image_codes
    cache = load_activations(depth.acts_dir)
    probe = Probe(cache, list(cache.manifest["label_names"]))
    collapsed = column_stats(codes).collapsed
    if not collapsed:
        probe = _load_probe(cache, data_dir, device)
    analysis = analyse_codes(codes, probe, top_n, depth.depth, depth.mode, _parent_similarity(depth))
    _write_table(out_dir / LATENTS_FILE, analysis.table())
    drawn: list[str] = []
    stack = {}
    if not collapsed:
        if figures != "none":
            from metasae.figures.depth import write_depth_figures  # Pillow; matplotlib only for `all`

            drawn = write_depth_figures(
                analysis, depth, out_dir / FIGURES_DIR, n_grid, feature_viz, viz_cfg, device, figures
            )
        images = to_input_spec(probe.images, InputSpec(*probe.classifier.input_shape))
        splice = (probe.classifier.cpu(), cache.manifest["layer"], cache.acts, images)
        labels = _splice_labels(probe, images)
        # the classifier without an SAE, once for both splices (a decoder depth's frozen and routed codes)
        baselines = splice_baselines(
            probe.classifier, cache.manifest["layer"], images, labels[0], acts=cache.acts
        )
        stack = depth.splice_metrics(*splice, *labels, baselines=baselines) | _routed(
            depth, splice, labels, baselines
        )
    summary = {
        **analysis.summary(),
        "codes_used": depth.codes_used,
        **stack,
        # the label-free depth statistic (criterion deepest_meta_gain)
        **depth_meta_gain(depth, memo=null_memo),
        "dataset_is_real": bool(cache.manifest.get("dataset_is_real")),  # as cache-acts recorded it
        "effective_rank": cache.manifest.get("effective_rank"),  # of the eval images' activations
        "labels_shuffled": bool(cache.manifest.get("labels_shuffled")),
        "stop_reason": None,
        "figures": drawn,
        "provenance": provenance(settings),
    }
    write_json(out_dir / SUMMARY_FILE, summary)
    return summary
