"""Study-level figures: each metric vs depth, one line per dataset, seeds as a band (min to max). The caller
blanks values that must not be read (image-level statistics of dense routed codes)."""

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


def plot_metric_vs_depth(depths: pd.DataFrame, metric: str, label: str, path: Path) -> None:
    modes = sorted(depths["mode"].unique())
    fig, axes = plt.subplots(1, len(modes), figsize=(4.5 * len(modes), 3.4), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        rows = depths[(depths["mode"] == mode) & (depths["status"] == "trained")]
        for (model, dataset), group in rows.groupby(["model", "dataset"]):
            stats = group.groupby("depth")[metric].agg(["mean", "min", "max"]).dropna()
            if stats.empty:
                continue
            line = ax.plot(stats.index, stats["mean"], marker="o", label=f"{dataset} ({model})")[0]
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
            chance = group[CHANCE[metric]].median() if CHANCE.get(metric) in group else float("nan")
            if chance == chance:  # not NaN
                ax.axhline(chance, color=line.get_color(), linestyle=":", linewidth=1)
        for value, text in REFERENCES.get(metric, []):
            ax.axhline(value, color="0.3", linestyle="--", linewidth=1)
            ax.annotate(
                text, (0.01, value), xycoords=("axes fraction", "data"), fontsize=7, color="0.3", va="bottom"
            )
        ax.set_xlim(depths["depth"].min() - 0.2, depths["depth"].max() + 0.2)  # one depth: no fractional axis
        ax.set_title(f"{mode} mode")
        ax.set_xlabel("depth")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(label)
    figure_legend(fig, axes[0][-1], y=1.08)
    dotted = "; dotted: chance" if CHANCE.get(metric) in depths else ""
    fig.suptitle(f"{label} vs depth (line: mean over seeds; band: min-max{dotted})", y=1.15, fontsize=10)
    save(fig, path)


def plot_metrics_vs_depth(depths: pd.DataFrame, out_dir: Path) -> list[Path]:
    paths = []
    for metric, label in METRICS.items():
        if metric in depths and depths[metric].notna().any():
            path = out_dir / f"{metric}_vs_depth.png"
            plot_metric_vs_depth(depths, metric, label, path)
            paths.append(path)
    return paths
