"""The dSprites probe figures: score vs layer (one line per factor) and score vs training step.

Both read the probes.csv table; trained checkpoints are solid, the random-init control dashed, the pixel
control and the orientation symmetry ceiling are horizontal reference lines.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from metasae.figures import save

TASKS = [
    ("shape", "accuracy"),
    ("scale", "accuracy"),
    ("orientation", "accuracy"),
    ("orientation", "r2_sincos"),
    ("posX", "r2"),
    ("posY", "r2"),
]


def _layer_order(layers: pd.Series) -> list[str]:
    """embed first, then block0, block1, ... (numeric, not lexicographic)."""

    def key(name: str) -> tuple[int, str]:
        stage = name.split(".")[0]
        return (-1 if stage == "embed" else int(stage.removeprefix("block")), name)

    return sorted(layers.unique(), key=key)


def _reference(ax: plt.Axes, rows: pd.DataFrame, factor: str, metric: str, color: str, style: str) -> None:
    hit = rows[(rows["factor"] == factor) & (rows["metric"] == metric)]
    if not hit.empty:
        ax.axhline(float(hit["value"].iloc[0]), color=color, linestyle=style, linewidth=0.8)


def score_vs_layer(table: pd.DataFrame, probe: str, trained: str, path: Path) -> None:
    """At the last trained checkpoint, per pooling (CLS / mean of patches): score per layer and task."""
    final = table[(table["train_set"] == trained) & (table["probe"] == probe)]
    final = final[final["step"] == final["step"].max()]
    init = table[(table["train_set"] == "random_init") & (table["probe"] == probe)]
    pixels = table[(table["train_set"] == "pixels") & (table["probe"] == probe)]
    ceiling = table[table["train_set"] == "symmetry_ceiling"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, pooling in zip(axes, ("cls", "mean"), strict=True):
        for i, (factor, metric) in enumerate(TASKS):
            color = f"C{i}"
            for rows, style, label in ((final, "-", f"{factor} {metric}"), (init, "--", None)):
                sel = rows[
                    rows["layer"].str.endswith(f".{pooling}")
                    & (rows["factor"] == factor)
                    & (rows["metric"] == metric)
                ]
                if sel.empty:
                    continue
                order = _layer_order(sel["layer"])
                values = sel.set_index("layer").loc[order, "value"]
                ax.plot(
                    [o.split(".")[0] for o in order],
                    values.to_numpy(),
                    style,
                    marker="o",
                    color=color,
                    label=label,
                    markersize=3,
                )
            _reference(ax, pixels, factor, metric, color, ":")
        _reference(ax, ceiling, "orientation", "accuracy", "C2", "-.")
        ax.set_title(f"{pooling} pooling")
        ax.set_xlabel("layer")
        ax.set_ylim(-0.1, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{probe} probe score (accuracy / R²)")
    fig.legend(
        *axes[0].get_legend_handles_labels(),
        loc="upper center",
        ncol=3,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1.12),
    )
    fig.suptitle(
        f"ViT trained on {trained}, last checkpoint (solid); random init (dashed); raw pixels (dotted); "
        "orientation ceiling (dash-dot)",
        y=1.18,
        fontsize=9,
    )
    save(fig, path)


def score_vs_step(table: pd.DataFrame, probe: str, trained: str, path: Path) -> None:
    """Each task at its best layer (at the last checkpoint) over training steps; step 0 is the random init."""
    rows = table[table["train_set"].isin([trained, "random_init"]) & (table["probe"] == probe)]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    last = rows["step"].max()
    for i, (factor, metric) in enumerate(TASKS):
        sel = rows[(rows["factor"] == factor) & (rows["metric"] == metric)]
        at_last = sel[sel["step"] == last]
        if at_last.empty:
            continue
        layer = at_last.loc[at_last["value"].idxmax(), "layer"]
        curve = sel[sel["layer"] == layer].sort_values("step")
        ax.plot(
            curve["step"] + 1,
            curve["value"],
            marker="o",
            color=f"C{i}",
            markersize=3,
            label=f"{factor} {metric} ({layer})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("training step + 1 (log scale; 1 = random init)")
    ax.set_ylabel(f"{probe} probe score")
    ax.set_ylim(-0.1, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"ViT trained on {trained}: probe score over training", fontsize=9)
    save(fig, path)
