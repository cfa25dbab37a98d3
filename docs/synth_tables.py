"""Refresh the README's planted-hierarchy tables from a finished `config/synth.yaml` study (nothing typed
by hand).

    python docs/synth_tables.py results_synth   # after: snakemake --cores all --configfile config/synth.yaml

Reads synth_summary/synth_accuracy.csv (each stack and criterion: share right, Spearman),
synth_summary/synth_recovery.csv (depth d against level L - d + 1: the diagonal a perfect stack follows) and
synth_summary/statistics_accuracy.csv (the plain statistics read as criteria) and rewrites the README between
its `synth-tables` markers.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
from refresh import write_between_markers  # docs/refresh.py: this script's folder is first on sys.path

START = (
    "<!-- synth-tables:start (written by `python docs/synth_tables.py <results>`; do not edit by hand) -->"
)
END = "<!-- synth-tables:end -->"
STACK_NAMES = {
    "oracle": "oracle",
    "shuffled": "shuffled",
    "trained": "trained",
    "matryoshka": "Matryoshka + meta-SAEs",
}
MODES = ("decoder", "activations")
# (stack, mode, planted depth) rows of the recovery table: the trained stacks of every L in decoder mode,
# the deepest tree in activations mode and the Matryoshka reference
RECOVERY_ROWS = [("trained", "decoder", L) for L in (2, 3, 4)] + [
    ("trained", "activations", 4),
    ("matryoshka", "decoder", 4),
]


def _accuracy_cell(row: pd.Series | None, rho_ci: bool) -> str:
    """`share% [CI], Spearman [CI]` (Spearman's interval only where `rho_ci`; – where it is undefined)."""
    if row is None:
        return ""
    low, high = 100 * row["correct_low"], 100 * row["correct_high"]
    right = f"{100 * row['fraction_correct']:.0f}% [{low:.0f}, {high:.0f}]"
    if math.isnan(row["spearman"]):
        return f"{right}, –"
    rho = f"{row['spearman']:.2f}"
    if rho_ci and not math.isnan(row["spearman_low"]):
        rho += f" [{row['spearman_low']:.2f}, {row['spearman_high']:.2f}]"
    return f"{right}, {rho}"


def accuracy_table(accuracy: pd.DataFrame) -> str:
    """Stack x criterion: share right [CI] and Spearman [CI] per mode."""
    lines = [
        "| stack | criterion | decoder: right [95% CI], Spearman(estimate, L) [95% CI] "
        "| activations: right [95% CI], Spearman |",
        "|---|---|---|---|",
    ]
    for stack, name in STACK_NAMES.items():
        for criterion in sorted(accuracy.loc[accuracy["stack"] == stack, "criterion"].unique()):
            cells = []
            for mode in MODES:
                found = accuracy[
                    (accuracy["stack"] == stack)
                    & (accuracy["criterion"] == criterion)
                    & (accuracy["mode"] == mode)
                ]
                cells.append(_accuracy_cell(found.iloc[0] if len(found) else None, rho_ci=mode == "decoder"))
            lines.append(f"| {name} | `{criterion}` | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def recovery_table(recovery: pd.DataFrame) -> str:
    """Depth d against level L - d + 1: Hungarian mean cosine over max(m, n) pairs / clade ARI."""
    depths = range(1, int(recovery["planted_depth"].max()) + 1)
    lines = [
        "| planted L | stack, mode | " + " | ".join(f"depth {d}" for d in depths) + " |",
        "|---|---|" + "---|" * len(depths),
    ]
    for stack, mode, planted in RECOVERY_ROWS:
        rows = recovery[
            (recovery["stack"] == stack) & (recovery["mode"] == mode) & (recovery["planted_depth"] == planted)
        ]
        cells = []
        for depth in depths:
            at = rows[(rows["depth"] == depth) & (rows["level"] == planted - depth + 1)]
            if not len(at):
                cells.append("")
                continue
            hungarian, ari = float(at["hungarian"].iloc[0]), float(at["clade_ari"].iloc[0])
            cells.append(f"{hungarian:.2f}" if depth == 1 else f"{hungarian:.2f} / {ari:.2f}")
        lines.append(f"| {planted} | {STACK_NAMES[stack]}, {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def statistics_table(accuracy: pd.DataFrame) -> str:
    """Each plain statistic read as a criterion, decoder mode: share right [CI], Spearman, per stack."""
    stacks = [k for k in STACK_NAMES if (accuracy["stack"] == k).any()]
    lines = [
        "| plain statistic (decoder mode) | " + " | ".join(STACK_NAMES[k] for k in stacks) + " |",
        "|---|" + "---|" * len(stacks),
    ]
    decoder = accuracy[accuracy["mode"] == "decoder"]
    for statistic in sorted(decoder["criterion"].unique()):
        cells = []
        for stack in stacks:
            found = decoder[(decoder["stack"] == stack) & (decoder["criterion"] == statistic)]
            cells.append(_accuracy_cell(found.iloc[0] if len(found) else None, rho_ci=False))
        lines.append(f"| `{statistic}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the planted-hierarchy study's results folder")
    summary = parser.parse_args().results / "synth_summary"
    names = ("synth_accuracy.csv", "synth_recovery.csv", "statistics_accuracy.csv")
    paths = [summary / name for name in names]
    for path in paths:
        if not path.is_file():
            sys.exit(f"{path}: missing (run the study to the end first)")
    accuracy, recovery, statistics = (pd.read_csv(p) for p in paths)
    tables = [accuracy_table(accuracy), recovery_table(recovery), statistics_table(statistics)]
    write_between_markers(START, END, tables)
    print(f"README planted-hierarchy tables refreshed from {summary}")


if __name__ == "__main__":
    main()
