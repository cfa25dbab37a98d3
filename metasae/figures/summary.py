"""Study-level figures: each metric vs depth, one panel per mode, one line per dataset in one colour across
panels, seeds as a band (min to max), one legend per figure. The caller blanks values that must not be read
(image-level statistics of dense routed codes); a mode left without a curve of two depths gets no panel."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from metasae.figures import figure_legend, save

METRICS = {
    "fvu": "FVU (own inputs)",
    "stack_fvu": "FVU of the layer through the stack",
    "loss_recovered": "loss recovered, stack spliced in",
    "l0": "L0 (active latents per input)",
    "alive_latents": "alive latents",
    "dead_fraction": "dead fraction (never active on the probes)",
    "purity_mean": "mean label purity (top-10)",
    "entropy_mean": "mean label entropy (bits)",
    "count_all_top10_nonzero": "latents with all top-10 non-zero",
    "count_fraction": "share of the dictionary with all top-10 non-zero",
    "mean_active_per_image": "mean active latents per image",
    "mean_active_fraction": "mean active share of the dictionary",
    "spliced_accuracy": "classifier accuracy, stack spliced in",
    "stability_mean_cosine": "cross-seed stability (mean matched similarity)",
    "decoder_fve": "decoder FVE of the meta-SAE (SAEBench meta_structure)",
}

# Reference lines where a metric has a clean or chance value: (value, label).
REFERENCES = {
    "stack_fvu": [(1.0, "FVU 1: predicting the mean")],
    "fvu": [(1.0, "FVU 1: predicting the mean")],
    "loss_recovered": [(1.0, "1: the clean model"), (0.0, "0: zero-ablated layer")],
    "decoder_fve": [(0.0, "0: explains nothing")],
}

# Per-dataset chance levels (a column of depths.csv): a dotted line in the dataset's colour.
CHANCE = {"purity_mean": "purity_chance", "superclass_purity_mean": "superclass_purity_chance"}


MIN_DEPTHS = 2  # a panel needs this many depths with a value: one point is no curve


def _series(depths: pd.DataFrame, metric: str) -> dict[str, dict[tuple[str, str], pd.DataFrame]]:
    """Per mode, per (model, dataset): the metric's mean, min and max over seeds by depth; a mode keeps only
    the series of at least MIN_DEPTHS depths, and a mode left with none is dropped (no empty panel)."""
    out = {}
    for mode in sorted(depths["mode"].unique()):
        rows = depths[(depths["mode"] == mode) & (depths["status"] == "trained")]
        series = {
            key: stats
            for key, group in rows.groupby(["model", "dataset"])
            if len(stats := group.groupby("depth")[metric].agg(["mean", "min", "max"]).dropna()) >= MIN_DEPTHS
        }
        if series:
            out[mode] = series
    return out


def draw_metric_vs_depth(depths: pd.DataFrame, metric: str, label: str) -> plt.Figure | None:
    """`metric` vs depth, one panel per mode that has a curve, one line per (model, dataset) in the same
    colour in every panel, and one legend for the figure; None where no mode has a curve."""
    panels = _series(depths, metric)
    if not panels:
        return None
    keys = sorted({key for series in panels.values() for key in series})
    colours = {key: f"C{i % 10}" for i, key in enumerate(keys)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), sharey=True, squeeze=False)
    for ax, (mode, series) in zip(axes[0], panels.items(), strict=True):
        for key in keys:  # every key in every panel's handles, in one order, so one legend serves all
            stats = series.get(key)
            if stats is None:
                ax.plot([], [], marker="o", color=colours[key], label=f"{key[1]} ({key[0]})")
                continue
            ax.plot(stats.index, stats["mean"], marker="o", color=colours[key], label=f"{key[1]} ({key[0]})")
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colours[key], alpha=0.2)
            group = depths[
                (depths["mode"] == mode) & (depths["model"] == key[0]) & (depths["dataset"] == key[1])
            ]
            chance = group[CHANCE[metric]].median() if CHANCE.get(metric) in group else float("nan")
            if chance == chance:  # not NaN
                ax.axhline(chance, color=colours[key], linestyle=":", linewidth=1)
        for value, text in REFERENCES.get(metric, []):
            ax.axhline(value, color="0.3", linestyle="--", linewidth=1)
            ax.annotate(
                text, (0.01, value), xycoords=("axes fraction", "data"), fontsize=7, color="0.3", va="bottom"
            )
        ax.set_xlim(depths["depth"].min() - 0.2, depths["depth"].max() + 0.2)
        ax.set_title(f"{mode} mode")
        ax.set_xlabel("depth")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(label)
    figure_legend(fig, axes[0][-1], y=1.08)
    dotted = "; dotted: chance" if CHANCE.get(metric) in depths else ""
    fig.suptitle(f"{label} vs depth (line: mean over seeds; band: min-max{dotted})", y=1.15, fontsize=10)
    return fig


def plot_metric_vs_depth(depths: pd.DataFrame, metric: str, label: str, path: Path) -> list[str]:
    """Write `draw_metric_vs_depth`'s figure to `path` (nothing where it has no panel); returns the modes
    drawn, so that a caption can say which had no curve."""
    fig = draw_metric_vs_depth(depths, metric, label)
    if fig is None:
        return []
    save(fig, path)
    return [ax.get_title().removesuffix(" mode") for ax in fig.axes]


def plot_metrics_vs_depth(depths: pd.DataFrame, out_dir: Path) -> list[Path]:
    paths = []
    for metric, label in METRICS.items():
        path = out_dir / f"{metric}_vs_depth.png"
        if metric in depths and plot_metric_vs_depth(depths, metric, label, path):
            paths.append(path)
    return paths
