"""Setup: the datasets, what was run (from depths.csv) and how (from study.json)."""

from __future__ import annotations

import pandas as pd

from metasae.writeup.columns import ID_COLUMNS, OPTIONAL_ID_COLUMNS
from metasae.writeup.data import ReportData
from metasae.writeup.format import fmt, md_table


def setup(report: ReportData) -> str:
    """The datasets (real or stand-in), the settings depths.csv shows were run, and how the study ran."""
    parts = []
    datasets = report.datasets()
    if datasets:
        table = pd.DataFrame(
            {
                "dataset": [d["name"] for d in datasets],
                "kind": ["real" if d["is_real"] else "embedded stand-in" for d in datasets],
                **{
                    k: [d.get(k, "") for d in datasets]
                    for k in ("ref", "description")
                    if any(d.get(k) for d in datasets)
                },
            }
        )
        parts.append(
            md_table(
                table,
                "Datasets: real ones are read from local copies of the official files and checksummed; "
                "embedded stand-ins are generated offline and are not the real datasets.",
            )
        )
    if report.depths is None:
        parts.append(report.skip("the run's configuration table", report.summary / "depths.csv"))
        return "\n".join(parts)
    d = report.depths
    ids = [c for c in ID_COLUMNS + OPTIONAL_ID_COLUMNS if c in d]
    facts = pd.DataFrame(
        {
            "setting": [c.replace("_", " ") for c in ids] + ["seeds", "depths"],
            "values": [", ".join(map(str, sorted(d[c].unique()))) for c in ids]
            + [", ".join(map(str, sorted(d["seed"].unique()))), f"{d['depth'].min()}–{d['depth'].max()}"],
        }
    )
    parts.append(md_table(facts, "What was run (from depths.csv); dictionary sizes are in the appendix."))
    run = []
    if "config_file" in report.study:
        run.append(f"configuration `{report.study['config_file']}`")
    if "wall_time_s" in report.study:
        run.append(f"wall time {fmt(report.study['wall_time_s'] / 60)} min")
    if "git_commit" in report.study:
        run.append(f"code at commit `{report.study['git_commit']}`")
    if run:
        parts.append("The study ran with " + ", ".join(run) + ".\n")
    if report.study.get("headline") is True:
        parts.append("This study is marked as the report's headline run.\n")
    return "\n".join(parts)
