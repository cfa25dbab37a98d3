"""What does depth cost in reconstruction? The stack FVU by depth, its table and figure."""

from __future__ import annotations

from metasae.writeup.by_depth import main_figure, median_trend, metric_tables
from metasae.writeup.data import ReportData


def reconstruction(report: ReportData) -> str:
    """The headline reconstruction: the stack FVU table and its figure (other statistics: appendix)."""
    if report.depths is None:
        return report.skip("reconstruction and sparsity vs depth", report.summary / "depths.csv")
    metric = (
        "stack_fvu" if "stack_fvu" in report.trained and report.trained["stack_fvu"].notna().any() else "fvu"
    )
    label = (
        "FVU of the layer rebuilt from each depth (one input at every depth)"
        if metric == "stack_fvu"
        else "FVU of each depth's own inputs"
    )
    trend = median_trend(report, metric)
    what = (
        "Stack FVU vs depth (line: mean over seeds; band: min–max). What to see: how fast the curves "
        "climb towards the dashed line at 1, the FVU of predicting the mean"
        + (f" (median {trend})" if trend else "")
        + "."
    )
    return "\n".join([metric_tables(report, [(metric, label)]), main_figure(report, metric, what)])
