"""Columns derived from each depth row's raw statistics: explained variance, fractions, purity's lift above
chance, the abstraction gap and the exclusions (`metasae.statistics.exclusions`); and each stack depth beside
its width-matched control (`control_columns`).

Raw counts of latents are bounded by the dictionary size, which the width schedule changes from depth to
depth; every count is also given as a fraction of its depth's dictionary (`FRACTIONS`), and only the
fractions enter optima and verdicts.
"""

from __future__ import annotations

import math

import pandas as pd

from metasae.statistics.exclusions import EXCLUSION_COLUMNS, exclusions

FRACTIONS = {  # fraction of the depth's dictionary -> the raw count it divides
    "alive_fraction": "alive_latents",
    "count_fraction": "count_all_top10_nonzero",
    "mean_active_fraction": "mean_active_per_image",
}


def derived_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Explained variance, every count as a fraction of its depth's dictionary, and the exclusions."""
    table = table.copy()
    table["explained_variance"] = 1 - pd.to_numeric(table["fvu"], errors="coerce")
    size = pd.to_numeric(table["width"], errors="coerce").where(lambda d: d > 0)
    for fraction, count in FRACTIONS.items():
        table[fraction] = pd.to_numeric(table[count], errors="coerce") / size
    table["purity_lift"] = lift(table, "purity_rated_mean", "purity_rated_chance")
    table["abstraction_gap"] = abstraction_gap(table)
    # derived anew from the raw columns, so a table whose raw values were edited can be passed again
    return pd.concat([table.drop(columns=EXCLUSION_COLUMNS, errors="ignore"), exclusions(table)], axis=1)


def lift(table: pd.DataFrame, purity: str, chance: str) -> pd.Series:
    """(purity - chance) / (1 - chance): 0 at the chance floor, 1 for pure latents, whatever the number of
    classes; NaN where either column is absent or chance is 1 (one class)."""
    if purity not in table or chance not in table:
        return pd.Series(math.nan, index=table.index)
    p, c = (pd.to_numeric(table[k], errors="coerce") for k in (purity, chance))
    return (p - c) / (1 - c).where(c < 1)


def abstraction_gap(table: pd.DataFrame) -> pd.Series:
    """Superclass purity's lift above its chance floor minus class purity's: 0 when latents are as pure by
    superclass as by class, 1 when they are pure by superclass and no purer than chance by class. NaN without
    a taxonomy (digits)."""
    superclass = lift(table, "superclass_purity_mean", "superclass_purity_chance")
    return superclass - lift(table, "purity_mean", "purity_chance")


CONTROL_STATISTICS = ("purity_rated_mean", "purity_lift", "dead_fraction", "count_fraction", "stack_fvu")
CONTROL_KEY = ["model", "dataset", "layer", "sae_config", "sae_seed", "mode", "seed"]
CONTROL_COLUMNS = [
    "control_width",
    *[f"control_{s}" for s in CONTROL_STATISTICS],
    *[f"{s}_minus_control" for s in CONTROL_STATISTICS],
]


def control_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Each stack depth (d >= 2) beside the direct SAE of its width on the same fit activations (its
    width-matched control, a `role: control` row of the same run and mode): `control_width`, `control_<s>`
    and `<s>_minus_control` for the `CONTROL_STATISTICS`; NaN where no control has the depth's width (depth
    1, widths below k, SAEs without controls). A control row's `control_width` is its own width."""
    table = table.drop(columns=CONTROL_COLUMNS, errors="ignore")
    controls = table[table["role"] == "control"][[*CONTROL_KEY, "width", *CONTROL_STATISTICS]]
    paired = controls.rename(columns={s: f"control_{s}" for s in CONTROL_STATISTICS})
    out = table.merge(paired.assign(control_width=paired["width"]), on=[*CONTROL_KEY, "width"], how="left")
    stack = ((table["role"] == "stack") & (pd.to_numeric(table["depth"]) >= 2)).to_numpy()
    out.loc[~stack, [f"control_{s}" for s in CONTROL_STATISTICS]] = math.nan
    out["control_width"] = out["control_width"].where(stack | (table["role"] == "control").to_numpy())
    for s in CONTROL_STATISTICS:
        control = pd.to_numeric(out[f"control_{s}"], errors="coerce")
        out[f"{s}_minus_control"] = pd.to_numeric(out[s], errors="coerce") - control
    return out
