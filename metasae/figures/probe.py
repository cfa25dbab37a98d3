"""The dSprites probe figures: score vs layer (one line per factor) and score vs training step.

Both read the probes.csv table; trained checkpoints are solid, the random-init control dashed, the pixel
control and the orientation symmetry ceiling are horizontal reference lines.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from metasae.figures import figure_legend, save

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
    figure_legend(fig, axes[0], y=1.12, ncol=3)
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


# -- every run side by side (stage probe-summary): one figure per question --------------------------------

FACTOR_TASKS = [("shape", "accuracy"), ("scale", "accuracy"), ("posX", "r2"), ("posY", "r2")]
SHAPES = ("square", "ellipse", "heart")


def trained_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the trained checkpoints (not the controls)."""
    return table[~table["train_set"].isin(["random_init", "pixels", "symmetry_ceiling"])]


def best_pooling(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run and stage (embed, block0, ...): the row of the better pooling (CLS token or patch mean)."""
    rows = rows.assign(stage=rows["layer"].str.split(".").str[0])
    return rows.loc[rows.groupby(["run", "stage"])["value"].idxmax()]


def run_colors(table: pd.DataFrame) -> dict[str, str]:
    """One colour per run, in the order the runs appear, the same in every figure."""
    return {run: f"C{i}" for i, run in enumerate(table["run"].unique())}


def _stage_order(stages: pd.Series) -> list[str]:
    return sorted(stages.unique(), key=lambda s: -1 if s == "embed" else int(s.removeprefix("block")))


def _per_layer(ax: plt.Axes, table: pd.DataFrame, factor: str, metric: str, probe: str) -> None:
    """Each run's last checkpoint (solid, 95% CI bars), the random init (dashed) and raw pixels (dotted)."""
    sel = table[(table["factor"] == factor) & (table["metric"] == metric) & (table["probe"] == probe)]
    trained = trained_rows(sel)
    trained = trained[trained["step"] == trained.groupby("run")["step"].transform("max")]
    colors = run_colors(table)
    curves = [(run, rows) for run, rows in best_pooling(trained).groupby("run", sort=False)]
    init = sel[sel["train_set"] == "random_init"]
    if not init.empty:  # runs sharing architecture and seed share their initialisation: one curve
        curves.append(("random init", best_pooling(init[init["run"] == init["run"].iloc[0]])))
    for label, rows in curves:
        rows = rows.set_index("stage").loc[_stage_order(rows["stage"])]
        err = [
            (rows["value"] - rows["ci_low"]).clip(lower=0),
            (rows["ci_high"] - rows["value"]).clip(lower=0),
        ]
        style = dict(color="0.45", linestyle="--") if label == "random init" else dict(color=colors[label])
        ax.errorbar(
            rows.index, rows["value"], yerr=err, marker="o", markersize=3, capsize=2, label=label, **style
        )
    pixels = sel[sel["train_set"] == "pixels"]
    if not pixels.empty:
        ax.axhline(
            float(pixels["value"].iloc[0]), color="0.45", linestyle=":", linewidth=1, label="raw pixels"
        )


def runs_vs_layer(table: pd.DataFrame, path: Path, probe: str = "linear") -> None:
    """Question: which ViT represents shape, scale, position linearly, and from which layer?"""
    fig, axes = plt.subplots(1, len(FACTOR_TASKS), figsize=(3.2 * len(FACTOR_TASKS), 3.4), sharey=True)
    for ax, (factor, metric) in zip(axes, FACTOR_TASKS, strict=True):
        _per_layer(ax, table, factor, metric, probe)
        ax.set_title(f"{factor} ({'accuracy' if metric == 'accuracy' else 'R²'})", fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylim(-0.05, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{probe} probe score, held-out sprites")
    figure_legend(fig, axes[0], y=0.0, ncol=6)
    fig.suptitle(
        "Last checkpoint of each ViT, better of CLS / patch-mean pooling per layer; bars: 95% bootstrap CI",
        y=1.03,
        fontsize=9,
    )
    save(fig, path)


def runs_vs_step(table: pd.DataFrame, path: Path, factor: str = "shape", probe: str = "linear") -> None:
    """Question: at which training step does a factor become linearly decodable? Each run at the layer that
    scores best at its last checkpoint; step 0 is the random initialisation."""
    sel = table[(table["factor"] == factor) & (table["metric"] == "accuracy") & (table["probe"] == probe)]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    colors = run_colors(table)
    for run, rows in sel[sel["train_set"] != "pixels"].groupby("run", sort=False):
        trained = trained_rows(rows)
        if trained.empty:
            continue
        last = trained[trained["step"] == trained["step"].max()]
        layer = last.loc[last["value"].idxmax(), "layer"]
        curve = rows[rows["layer"] == layer].sort_values("step")
        ax.plot(
            curve["step"] + 1,
            curve["value"],
            marker="o",
            markersize=3,
            color=colors[run],
            label=f"{run} ({layer})",
        )
        ax.fill_between(curve["step"] + 1, curve["ci_low"], curve["ci_high"], color=colors[run], alpha=0.15)
    pixels = sel[sel["train_set"] == "pixels"]
    if not pixels.empty:
        ax.axhline(
            float(pixels["value"].iloc[0]), color="0.45", linestyle=":", linewidth=1, label="raw pixels"
        )
    ax.set_xscale("log")
    ax.set_xlabel("training step + 1 (log scale; 1 = random init)")
    ax.set_ylabel(f"{factor}: {probe} probe accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{factor} over training, each ViT at its best layer; band: 95% bootstrap CI", fontsize=9)
    save(fig, path)


def orientation_per_shape(table: pd.DataFrame, path: Path, probe: str = "linear") -> None:
    """Question: where is orientation encoded, up to each shape's symmetry? Top: 40-way accuracy within one
    shape against its symmetry ceiling (dash-dot); bottom: R² of (cos fθ, sin fθ), ceiling 1."""
    fig, axes = plt.subplots(2, len(SHAPES), figsize=(3.4 * len(SHAPES), 6.2), sharex=True)
    for col, shape in enumerate(SHAPES):
        for row, metric in enumerate(("accuracy", "r2_sincos_fold")):
            ax = axes[row, col]
            _per_layer(ax, table, f"orientation_{shape}", metric, probe)
            ceiling = table[
                (table["train_set"] == "symmetry_ceiling")
                & (table["factor"] == f"orientation_{shape}")
                & (table["metric"] == metric)
            ]
            if not ceiling.empty:
                ax.axhline(
                    float(ceiling["value"].iloc[0]), color="k", linestyle="-.", linewidth=1, label="ceiling"
                )
            ax.set_ylim(-0.05, 1.02)
            ax.grid(alpha=0.3)
            ax.set_title(
                f"{shape}: {'40-way accuracy' if metric == 'accuracy' else 'R² of (cos fθ, sin fθ)'}",
                fontsize=9,
            )
        axes[1, col].set_xlabel("layer")
    figure_legend(fig, axes[0, 0], y=0.0, ncol=7)
    fig.suptitle(
        f"Orientation within each shape ({probe} probes, last checkpoint); dash-dot: the symmetry ceiling",
        fontsize=9,
    )
    save(fig, path)
