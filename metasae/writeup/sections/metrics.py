"""Appendix B: every other statistic by depth, the log's counts beside ours, the statistics that enter no
verdict, the depths that did not train and the dictionary sizes.
"""

from __future__ import annotations

import math

import pandas as pd

from metasae.writeup.by_depth import metric_tables
from metasae.writeup.data import ReportData, dense_rows
from metasae.writeup.format import configuration_keys, depth_table, fmt, md_table
from metasae.writeup.sections.log_comparison import LOG_NUMBERS, LOG_WIDTH


def more_metrics(report: ReportData) -> str:
    """Appendix: every other statistic by depth, the depths that did not train, the dictionary sizes, the
    log's counts beside ours, and the statistics that enter no verdict."""
    if report.depths is None:
        return report.skip("the other statistics by depth", report.summary / "depths.csv")
    tables = metric_tables(
        report,
        [
            ("loss_recovered", "Loss recovered with the layer rebuilt from each depth spliced in"),
            ("spliced_accuracy", "Classifier accuracy with the stack spliced in"),
            (
                "fvu",
                "FVU of each depth's own inputs (depth 1: the layer; decoder mode: the parent's decoder "
                "rows; activations mode: the parent's codes), not comparable across depths",
            ),
            ("l0", "L0 (mean active latents per input)"),
            ("alive_fraction", "Alive latents as a share of the dictionary"),
            ("dead_fraction", "Dead fraction: latents never active on the probe images"),
            ("mean_active_fraction", "Mean active latents per image as a share of the dictionary"),
            ("mean_active_per_image", "Mean active latents per image"),
            ("entropy_mean", "Mean label entropy (bits) of top images"),
        ],
    )
    counts = _log_count_fractions(report)  # empty where the main text's table is the raw count already
    sizes = depth_table(
        report.trained,
        "width",
        "Dictionary size (latents)",
        keys=configuration_keys(report.trained, ["mode", "architecture"]),
        spread=False,
    )
    parts = [tables, counts, _exclusions(report), _stops(report), sizes]
    return "\n".join(p for p in parts if p)


def _log_count_fractions(report: ReportData) -> str:
    """The log's counts per depth (raw and as a share of its 2304 latents) beside ours (mean count and
    mean share of the dictionary over seeds)."""
    d = report.trained
    if "count_fraction" not in d or d["count_fraction"].isna().all():
        return ""
    rows = []
    for quantity, name in (("emnist_count", "EMNIST"), ("fashion_count", "Fashion-MNIST")):
        counts = {depth: v for (q, depth), v in LOG_NUMBERS.items() if q == quantity}
        rows.append(
            {
                "source": f"research log: {name} ({LOG_WIDTH} latents)",
                **{f"d{k}": f"{v:.0f} ({v / LOG_WIDTH:.2f})" for k, v in sorted(counts.items())},
            }
        )
    keys = configuration_keys(d)
    for key, g in d.groupby(keys):
        by_depth = g.groupby("depth")[["count_all_top10_nonzero", "count_fraction"]].mean()
        label = " / ".join(map(str, key if isinstance(key, tuple) else (key,)))
        rows.append(
            {
                "source": f"ours: {label}",
                **{f"d{k}": f"{fmt(c)} ({f:.2f})" for k, (c, f) in by_depth.iterrows()},
            }
        )
    table = pd.DataFrame(rows).fillna("–")
    columns = ["source", *sorted((c for c in table.columns if c != "source"), key=lambda c: int(c[1:]))]
    return md_table(
        table[columns],
        "Latents whose top-10 activations are all non-zero: the log's raw count (its share of 2304 "
        "latents) beside ours (mean over seeds; share of that depth's dictionary). Raw counts fall "
        "wherever the width schedule shrinks the dictionary; compare the shares.",
        right=columns[1:],
    )


def _exclusions(report: ReportData) -> str:
    """Per mode and depth: the statistics the architecture fixes, and how many rows had dense routed
    codes (whose image-level statistics enter no verdict)."""
    d = report.trained
    if "fixed_by_construction" not in d:
        return ""
    rows = []
    for (mode, depth), g in d.groupby(["mode", "depth"]):
        fixed = sorted({name for v in g["fixed_by_construction"].fillna("") for name in str(v).split()})
        dense = dense_rows(g)
        if not fixed and not dense.any():
            continue
        share = g["mean_active_fraction"].median() if "mean_active_fraction" in g else math.nan
        rows.append(
            {
                "mode": mode,
                "depth": depth,
                "fixed by construction": ", ".join(fixed) or "–",
                "dense routed codes": f"{int(dense.sum())} of {len(g)}" if dense.any() else "–",
                "median active share": share,
            }
        )
    if not rows:
        return ""
    return md_table(
        pd.DataFrame(rows),
        "Statistics that enter no optimum and no verdict: fixed by construction (the SAE's L0 is set "
        "by its k) and image-level statistics of dense routed codes (runs x seeds whose mean active "
        f"share exceeds {report.rule('dense_routed_fraction', 0.5):.0%}).",
    )


def _stops(report: ReportData) -> str:
    """How many runs stopped or collapsed at each depth, and why (the stack's stop rules)."""
    d = report.depths
    if "status" not in d or (d["status"] == "trained").all():
        return ""
    reason = d["stop_reason"].fillna("") if "stop_reason" in d else ""
    stopped = d.assign(reason=reason).loc[d["status"] != "trained"]
    table = stopped.groupby(["mode", "depth", "status", "reason"]).size().rename("runs × seeds").reset_index()
    return md_table(
        table,
        "Depths that did not train: stopped by a stop rule or collapsed (all latents dead); "
        "they are left out of the tables above.",
    )
