"""The per-depth tables and main-text figures that the results sections share.

Each blanks the image-level statistics of dense routed codes the same way, so that no section shows
a number the verdicts leave out.
"""

from __future__ import annotations

from metasae.writeup.data import ReportData, dense_rows, fixed_rows
from metasae.writeup.format import depth_table, figure_size, fmt


def metric_tables(report: ReportData, metrics: list[tuple[str, str]]) -> str:
    """Tables over trained depths of the metrics this results folder has; image-level statistics of
    dense routed codes are blanked (they measure the dictionary size, not the images), and so are values
    fixed by construction (a table left with none is not shown)."""
    d = report.trained.copy()
    fixed = [m for m, _ in metrics if m in d and fixed_rows(d, m).any()]
    for m in fixed:
        d[m] = d[m].astype(float).where(~fixed_rows(d, m))
    dense = dense_rows(d)
    image = [*report.rule("image_statistics", []), "stability_mean_cosine", "stability_fraction_matched"]
    blanked = [m for m, _ in metrics if m in d and m in image and dense.any()]
    on_codes = d["stability_basis"].eq("codes") if "stability_basis" in d else dense
    for m in blanked:
        d[m] = d[m].astype(float).where(~(dense & on_codes if m.startswith("stability") else dense))
    tables = "\n".join(depth_table(d, m, label) for m, label in metrics if m in d and d[m].notna().any())
    if fixed and tables:
        tables += "\n*Values fixed by construction (set by the SAE's k, not by the data) are left out (–).*\n"
    if blanked:
        tables += (
            "\n*Decoder-mode depths whose routed codes are dense are blanked (–) in the tables of "
            f"{', '.join(f'`{m}`' for m in blanked)}.*\n"
        )
    return tables


def main_figure(report: ReportData, metric: str, what: str) -> str:
    """A main-text figure of `metric` vs depth, drawn here from depths.csv (with the metric's reference
    lines, image-level statistics of dense routed codes blanked); `what`: the sentence saying what to
    see. The aggregate stage's copy of the same figure is left out of the appendix."""
    from metasae.figures.summary import METRICS, plot_metric_vs_depth

    d = report.depths.copy()
    if metric not in d or d[metric].isna().all():
        return ""
    image = [*report.rule("image_statistics", []), "count_fraction", "purity_mean"]
    if metric in image:
        d[metric] = d[metric].astype(float).where(~dense_rows(d))
    report.figures_dir.mkdir(parents=True, exist_ok=True)
    name = f"main-{metric}_vs_depth.png"
    drawn = plot_metric_vs_depth(d, metric, METRICS.get(metric, metric), report.figures_dir / name)
    report.placed.add(report.summary / "figures" / f"{metric}_vs_depth.png")
    if not drawn:
        return f"*No figure: no mode has `{metric}` at two or more depths.*\n"
    left = sorted(set(d["mode"]) - set(drawn))
    if left:
        what += (
            f" No panel for {' or '.join(f'`{m}`' for m in left)} mode: it has fewer than two depths to draw."
        )
    return f"![{what}]({report.figures_dir.name}/{name}){figure_size(report.figures_dir / name)}\n"


def median_trend(report: ReportData, metric: str) -> str:
    """`metric`'s median over the headline rows at the first and the last depth, per mode."""
    head, _ = report.headline()
    if metric not in head:
        return ""
    parts = []
    for mode, g in head.groupby("mode"):
        g = g.loc[~dense_rows(g)] if metric in ("count_fraction", "purity_mean") else g
        med = g.groupby("depth")[metric].median().dropna()
        if len(med) >= 2:
            parts.append(
                f"`{mode}` mode {fmt(med.iloc[0])} at depth {med.index[0]} to {fmt(med.iloc[-1])} at "
                f"depth {med.index[-1]}"
            )
    return "; ".join(parts)
