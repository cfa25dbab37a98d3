"""Do more latents fire on all their top images? The log's activation count by depth, as a share of the
dictionary where the aggregate stage wrote it (the width schedule shrinks the dictionary).
"""

from __future__ import annotations

import pandas as pd

from metasae.writeup.by_depth import main_figure, metric_tables
from metasae.writeup.data import ReportData, dense_rows
from metasae.writeup.format import fmt


def _headline_count(g: pd.DataFrame) -> str:
    """Where the activation count peaks over depths, as a share of the dictionary where one was written
    (depths with dense routed codes left out: their count measures the dictionary size)."""
    if "count_fraction" in g and g["count_fraction"].notna().any():
        share = g.loc[~dense_rows(g)].groupby("depth")["count_fraction"].median().dropna()
        if len(share) < 2:
            where = f"beyond depth {share.index[0]}" if len(share) else "at every depth"
            return f"routed codes are dense {where}, so no activation-count peak is reported"
        return (
            f"the share of the dictionary whose top-10 activations are all non-zero peaks at depth "
            f"{share.idxmax()} (median {share.max():.0%}; depths with dense routed codes left out)"
        )
    count = g.groupby("depth")["count_all_top10_nonzero"].median()
    return (
        f"the count of latents whose top-10 activations are all non-zero peaks at depth {count.idxmax()} "
        f"(median {fmt(count.max())})"
    )


def activation_counts(report: ReportData) -> str:
    """The log's activation count as a share of the dictionary: its table and figure."""
    if report.depths is None:
        return report.skip("activation counts vs depth", report.summary / "depths.csv")
    d = report.trained
    metric = "count_fraction" if "count_fraction" in d and d["count_fraction"].notna().any() else None
    metric = metric or "count_all_top10_nonzero"
    label = (
        "Share of the dictionary whose top-10 activations are all non-zero (the log's count / dictionary "
        "size)"
        if metric == "count_fraction"
        else "Latents whose top-10 activations are all non-zero (the log's count)"
    )
    head, _ = report.headline()
    peaks = "; ".join(f"`{mode}` mode: {_headline_count(g)}" for mode, g in head.groupby("mode"))
    what = (
        (
            "The log's activation count as a share of each depth's dictionary"
            if metric == "count_fraction"
            else "The log's activation count"
        )
        + f" vs depth. What to see: where each curve peaks, the depth the log's criterion calls optimal "
        f"({peaks})."
    )
    return "\n".join([metric_tables(report, [(metric, label)]), main_figure(report, metric, what)])
