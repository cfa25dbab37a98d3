"""Appendix C: cross-seed stability, the lineage statistics and SAEBench's meta_structure number."""

from __future__ import annotations

import pandas as pd

from metasae.io import read_json
from metasae.writeup.by_depth import metric_tables
from metasae.writeup.data import ReportData
from metasae.writeup.format import md_table


def stability(report: ReportData) -> str:
    """Cross-seed stability and the lineage statistics by depth: a depth is real only if it reproduces."""
    if report.depths is None:
        return report.skip("cross-seed stability and meta-structure", report.summary / "depths.csv")
    d = report.trained
    threshold = report.rule("stable_cosine", 0.9)
    parts = [
        metric_tables(
            report,
            [
                ("stability_mean_cosine", "Cross-seed stability: mean Hungarian-matched similarity"),
                (
                    "stability_fraction_matched",
                    f"Cross-seed stability: share of matched latents above {threshold}",
                ),
            ],
        )
    ]
    if "stability_basis" in d and d["stability_basis"].notna().any():
        bases = ", ".join(sorted(d["stability_basis"].dropna().unique()))
        parts.append(f"Latents were matched on: {bases}.\n")
    parts.append(
        metric_tables(
            report,
            [
                ("decoder_fve", "Decoder FVE of the meta-SAE on its parent's unit-normed decoder rows"),
                ("parents_per_meta_latent", "Parent latents per alive meta-latent (lineage)"),
                (
                    "meta_latents_per_parent",
                    "Meta-latents per decomposed parent latent (set by the meta-SAE's k)",
                ),
            ],
        )
    )
    parts.append(_meta_structure(report))
    return "\n".join(p for p in parts if p)


def _meta_structure(report: ReportData) -> str:
    """SAEBench's meta_structure number per dataset and depth, beside its published reference value."""
    path = report.summary / "meta_structure.json"
    if not path.is_file():
        return ""
    report.inputs.add(path)
    data = read_json(path)
    rows = [
        {
            "dataset": r["sae_cfg_dict"]["dataset"],
            "depth": f"{r['sae_cfg_dict']['depth']} → {r['sae_cfg_dict']['depth'] + 1}",
            "fve": r["eval_result_metrics"]["meta_structure"]["decoder_fraction_variance_explained"],
        }
        for r in data.get("results", [])
    ]
    if not rows:
        return ""
    table = (
        pd.DataFrame(rows)
        .groupby(["dataset", "depth"])["fve"]
        .agg(["mean", "min", "max", "count"])
        .reset_index()
        .rename(columns={"mean": "decoder FVE (mean)", "count": "seeds"})
    )
    ref = data.get("reference") or {}
    caption = (
        "SAEBench's meta_structure number (summary/meta_structure.json, in its MetaStructureEvalOutput "
        "shape): the fraction of variance of an SAE's decoder rows that a BatchTopK meta-SAE explains. "
        f"Published beside it: {ref.get('decoder_fraction_variance_explained', '–')} on "
        f"{ref.get('model', '–')} ({ref.get('settings', '')})."
    )
    return md_table(table, caption)
