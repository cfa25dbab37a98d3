"""Columns derived from each depth row's raw statistics: explained variance, fractions, the abstraction gap
and the exclusions (`metasae.statistics.exclusions`).

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
    table["abstraction_gap"] = abstraction_gap(table)
    # derived anew from the raw columns, so a table whose raw values were edited can be passed again
    return pd.concat([table.drop(columns=EXCLUSION_COLUMNS, errors="ignore"), exclusions(table)], axis=1)


def abstraction_gap(table: pd.DataFrame) -> pd.Series:
    """Superclass purity's lift above its chance floor minus class purity's, each as (p - chance) /
    (1 - chance): 0 when latents are as pure by superclass as by class, 1 when they are pure by superclass and
    no purer than chance by class. NaN without a taxonomy (digits)."""

    def lift(purity: str, chance: str) -> pd.Series:
        if purity not in table or chance not in table:
            return pd.Series(math.nan, index=table.index)
        p, c = (pd.to_numeric(table[k], errors="coerce") for k in (purity, chance))
        return (p - c) / (1 - c)

    return lift("superclass_purity_mean", "superclass_purity_chance") - lift("purity_mean", "purity_chance")
