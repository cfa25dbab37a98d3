"""Is there an optimal depth, and do the criteria find a known one (the planted-tree runs)?"""

from __future__ import annotations

import pandas as pd

from metasae.writeup.columns import CONFIGURATION_COLUMNS
from metasae.writeup.data import ReportData
from metasae.writeup.format import configuration_keys, fmt, md_table, row_labels

SYNTH_SUMMARY_DIR = "synth_summary"  # `metasae synth-summary`'s folder in a results folder


def optimal_depth(report: ReportData) -> str:
    """One row per configuration, one column per criterion: each optimum with its CI, or why there is
    none, so that the log's "depth 2" can be read off against every criterion."""
    if report.optimal is None:
        return report.skip("optimal depth with confidence intervals", report.summary / "optimal_depth.csv")
    o = report.optimal.copy()
    keys = configuration_keys(o, [*CONFIGURATION_COLUMNS, "architecture"])
    measured = o["basis"].eq("measured") if "basis" in o else pd.Series(True, index=o.index)
    o["cell"] = [
        f"{fmt(d)} [{fmt(lo)}, {fmt(hi)}]" if ok else f"– ({basis})"
        for d, lo, hi, ok, basis in zip(
            o["optimal_depth"], o["ci_low"], o["ci_high"], measured, o.get("basis", measured), strict=True
        )
    ]
    o["configuration"] = row_labels(o, keys)
    wide = o.pivot_table(
        index="configuration", columns="criterion", values="cell", aggfunc="first", sort=False
    )
    wide = wide[list(dict.fromkeys(o["criterion"]))].reset_index().fillna("–")
    wide.columns.name = None
    seeds = sorted(n for n in o["n_seeds"].dropna().astype(int).unique() if n > 0)
    span = "–".join(map(str, sorted({seeds[0], seeds[-1]}))) if seeds else "0"
    caption = (
        "Optimal depth per configuration (rows: " + " · ".join(k.replace("_", " ") for k in keys) + ") and "
        "criterion (columns; defined in Method): the median over seeds of each seed's best depth, with "
        f"its 95% percentile-bootstrap CI over {span} seeds. The log's \"depth 2 "
        'is optimal" holds where the CI lies within (1.5, 2.5), fails where it lies outside, is '
        "inconclusive where it crosses; a criterion whose statistic is fixed by construction, rests on "
        "dense routed codes or lacks depths 1-3 gives no optimum (–, with the reason)."
    )
    return md_table(wide, caption, right=[])


def known_depth(report: ReportData) -> str:
    """Do the criteria find a known depth? The planted-tree runs (issue 16): synth_depth.csv and
    synth_accuracy.csv of `metasae synth-summary`, and its figure."""
    folder = report.results / SYNTH_SUMMARY_DIR  # its own folder: aggregate replaces summary/ whole
    path = folder / "synth_depth.csv"
    depth = report.load(path, ["criterion", "mode", "true_depth", "estimated_median", "ci_low", "ci_high"])
    if depth is None:
        return report.skip("optimal-depth criteria on planted trees of known depth", path)
    table = depth[["criterion", "mode", "true_depth"]].rename(columns={"true_depth": "true L"})
    table["estimated depth [95% CI]"] = [
        f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]"
        for m, lo, hi in zip(depth["estimated_median"], depth["ci_low"], depth["ci_high"], strict=True)
    ]
    table["cases"] = depth["n_cases"]
    table["right"] = depth["fraction_correct"].map(lambda f: f"{f:.0%}")
    text = md_table(
        table.sort_values(["criterion", "mode", "true L"]),
        "Each criterion's optimal depth on stacks trained on planted trees of depth L (config synth): "
        "median over seeds, percentile-bootstrap CI, and the share of (tree, seed) cases whose estimate "
        "is L. root_match is not a criterion but the oracle: the first depth whose latents best match "
        "the planted roots.",
    )
    accuracy = report.load(folder / "synth_accuracy.csv", ["criterion", "mode", "fraction_correct"])
    if accuracy is not None:
        right = accuracy["fraction_correct"].map(lambda f: f"{f:.0%}")
        accuracy = accuracy.assign(fraction_correct=right)
        text += "\n" + md_table(accuracy, "Share of all (L, seed) cases each criterion gets right.")
    figure = folder / "synth_depth.png"
    if figure.is_file():
        text += "\n" + report.figure(
            figure,
            "Estimated vs planted depth per criterion. What to see: how close each criterion's estimate "
            "comes to the planted depth L; root_match, the oracle, shows what is achievable.",
        )
    return text
