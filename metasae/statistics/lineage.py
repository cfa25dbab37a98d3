"""Latent-level statistics of a meta-SAE (depth >= 2): how it decomposes its parent's latents.

The decoder FVE is the fraction of variance of the parent's unit-normed decoder rows the meta-SAE explains
(decoder mode only: its metrics.json FVU is measured on those rows, so this is SAEBench's meta_structure
number); the lineage gives parents per alive meta-latent and meta-latents per decomposed parent, and the
metrics the share of parent latents decomposed at all.
"""

from __future__ import annotations

from metasae.stack import Depth

LINEAGE_COLUMNS = (
    "decoder_fve",
    "parents_per_meta_latent",
    "meta_latents_per_parent",
    "parents_decomposed_fraction",
)


def lineage_statistics(folder: Depth) -> dict:
    """The LINEAGE_COLUMNS of one depth folder; all None at depth 1 or where the stack stopped."""
    out: dict = dict.fromkeys(LINEAGE_COLUMNS)
    if folder.stopped or folder.depth < 2:
        return out
    metrics = folder.metrics
    if folder.mode == "decoder" and metrics.get("fvu") is not None:
        out["decoder_fve"] = 1 - float(metrics["fvu"])
    lineage = folder.lineage
    if lineage is not None and len(lineage):
        out["parents_per_meta_latent"] = float(lineage.groupby("meta_latent").size().mean())
        out["meta_latents_per_parent"] = float(lineage.groupby("parent_latent").size().mean())
    if metrics.get("parent_width"):
        out["parents_decomposed_fraction"] = (
            metrics.get("parent_latents_decomposed", 0) / metrics["parent_width"]
        )
    return out
