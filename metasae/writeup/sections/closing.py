"""Limitations, Reproduction and the appendix's last figures.

Limitations and the other figures read what the sections before them recorded (the sections left
unrun, the figures placed), so index.qmd calls them after those.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metasae.writeup.data import DEAD_GUARD, ReportData, fixed_rows
from metasae.writeup.format import fmt, plural


def limitations(report: ReportData) -> str:
    """What the numbers cannot say: stand-ins, few seeds, shrinking dictionaries, dead latents, and every
    section left unrun (so it must come after them)."""
    lines = []
    stand_ins = [d["name"] for d in report.datasets() if not d["is_real"]]
    if stand_ins:
        lines.append(
            f"- {', '.join(stand_ins)} are embedded stand-ins, not the real datasets; "
            "numbers on them say how the method behaves, not what real images contain."
        )
    if report.depths is not None:
        n = report.depths["seed"].nunique()
        few = report.rule("min_seeds", 5)
        lines.append(
            f"- Confidence intervals rest on {plural(n, 'seed')} per configuration"
            + (f", fewer than the {few} a real study uses: they are wide and coarse." if n < few else ".")
        )
        widths = report.trained.groupby("depth")["width"].median()
        if len(widths) > 1 and widths.iloc[-1] < widths.iloc[0]:
            lines.append(
                f"- Dictionaries shrink with depth ({fmt(widths.iloc[0])} to {fmt(widths.iloc[-1])} "
                "latents, median), so a statistic that rises with depth may rise with fewer, broader "
                "latents alone: a width-matched control (a depth-1 SAE of each deeper depth's width) "
                "is not part of this study."
            )
        if "dead_fraction" in report.trained:
            dead = report.trained.loc[report.trained["depth"] == 1, "dead_fraction"].max()
            if dead >= DEAD_GUARD:
                lines.append(
                    f"- Up to {dead:.0%} of the depth-1 latents are dead (never active on the probe "
                    "images); the meta-SAEs decompose dictionaries with that many unused rows."
                )
    lines += [
        f"- Not run, for want of {missing}: {'; '.join(whats)}." for missing, whats in report.skipped.items()
    ]
    return "\n".join(lines) + "\n" if lines else ""


def reproduction(report: ReportData) -> str:
    """The commands that rebuild this study and its report, at the commit study.json records."""
    config = report.study.get("config_file")
    commit = report.study.get("git_commit")
    at = f"At code commit `{commit}`, from" if commit else "From"
    snakemake = f"snakemake --cores all --configfile {config}" if config else "snakemake --cores all"
    return (
        f"{at} the repository root:\n\n"
        f"```sh\n{snakemake}\n"
        f"metasae report --results results --out results/report\n```\n"
    )


def other_figures(report: ReportData) -> str:
    """Every summary figure no section placed, so that none the aggregate stage drew goes unseen, less those
    of a statistic fixed by construction at every depth (a picture of k)."""
    trained = report.trained if report.trained is not None else pd.DataFrame()

    def fixed_everywhere(path: Path) -> bool:
        return not trained.empty and bool(fixed_rows(trained, path.stem.removesuffix("_vs_depth")).all())

    figures = sorted((report.summary / "figures").glob("*.png"))
    rest = [p for p in figures if p not in report.placed and not fixed_everywhere(p)]
    if not rest:
        return "*No other summary figures.*\n"
    return "\n".join(
        report.figure(
            p,
            p.stem.replace("_", " ").capitalize() + " (line: mean over seeds; band: min–max over seeds).",
        )
        for p in rest
    )
