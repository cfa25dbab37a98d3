"""Do latents get purer in label with depth? Class purity by depth, and superclass purity where the
labels have a taxonomy.
"""

from __future__ import annotations

import math

import pandas as pd

from metasae.writeup.by_depth import main_figure, median_trend, metric_tables
from metasae.writeup.data import ReportData, dense_rows
from metasae.writeup.format import configuration_keys, fmt, md_table, row_labels


def purity(report: ReportData) -> str:
    """Mean label purity by depth, its figure, and superclass purity where the labels have a taxonomy."""
    if report.depths is None:
        return report.skip("label purity vs depth", report.summary / "depths.csv")
    tables = metric_tables(report, [("purity_mean", "Mean label purity of alive latents' top images")])
    trend = median_trend(report, "purity_mean")
    what = (
        "Mean label purity of alive latents' top-10 images vs depth. What to see: whether the curves "
        'rise with depth, as "latents become more atomic" asserts'
        + (f" (median {trend}; depths with dense routed codes left out)" if trend else "")
        + (
            ", and how far they stay above the dotted chance level of each dataset (the purity of random "
            "top images)"
            if "purity_chance" in report.trained
            else ""
        )
        + "."
    )
    return tables + "\n" + main_figure(report, "purity_mean", what) + _superclass_purity(report)


def _superclass_purity(report: ReportData) -> str:
    """Class vs superclass purity by depth where the probe's labels have a taxonomy (Fashion-MNIST): more
    abstract deeper latents keep superclass purity while class purity falls (the abstraction gap)."""
    d = report.trained
    if "superclass_purity_mean" not in d or d["superclass_purity_mean"].isna().all():
        return ""
    d = d.loc[d["superclass_purity_mean"].notna() & ~dense_rows(d)]
    keys = configuration_keys(d)
    means = d.groupby([*keys, "depth"]).mean(numeric_only=True).reset_index()
    table = pd.DataFrame({"configuration": row_labels(means, keys)})
    table["depth"] = means["depth"]
    for level, prefix in (("class", ""), ("superclass", "superclass_")):
        chance = means.get(f"{prefix}purity_chance", pd.Series(math.nan, index=means.index))
        table[f"{level} purity (chance)"] = [
            f"{fmt(p)} ({fmt(c)})" for p, c in zip(means[f"{prefix}purity_mean"], chance, strict=True)
        ]
    if "abstraction_gap" in means:
        table["abstraction gap"] = means["abstraction_gap"]
    return "\n" + md_table(
        table,
        "Purity one level up (labels with superclasses: Fashion-MNIST's tops, footwear, Trouser, Bag), "
        "mean over seeds: class and superclass purity of alive latents' top images, each beside its "
        "chance level (random top images), and the abstraction gap (superclass lift minus class lift, "
        "lift = (purity - chance) / (1 - chance)): a gap rising with depth means deeper latents group "
        "classes into superclasses. Decoder-mode depths with dense routed codes are left out; the "
        "claim's verdict is in the claims table.",
    )


def purity_and_atomicity() -> str:
    """What label purity does and does not say about atomicity: the caveat every reading of the purity
    results needs (prose: it states no number)."""
    return (
        "**What purity says about atomicity.** A latent whose top images share one label is selective: "
        'it fires most on one class. That is what the research log meant by "more atomic" (a neuron on '
        "three digits, a latent on two, a meta-latent on one), and it is what purity measures. It is not "
        "atomicity in the meta-SAE sense, where an atomic latent is one that no meta-SAE rebuilds from "
        'other latents. A latent can be pure and composite (a "3" made of an upper and a lower curve) '
        "or impure and atomic (a stroke that 4, 7 and 9 share). Purity also sees nothing finer than the "
        "labels, and its floor depends on how the labels are spread, hence lift above chance. So purity "
        "rising with depth would show more class-selective latents, not more atomic ones; the meta-SAE's "
        "own measure is how much of the decoder directions the next depth explains (decoder FVE, Appendix "
        "C), and the worked example below shows what a decomposition looks like.\n"
    )
