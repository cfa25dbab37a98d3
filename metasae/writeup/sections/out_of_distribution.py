"""Appendix D: which probe datasets lie outside the classifier's training distribution."""

from __future__ import annotations

from metasae.writeup.data import ReportData, dataset_name
from metasae.writeup.format import md_table


def out_of_distribution(report: ReportData) -> str:
    """Which probe datasets lie outside the classifier's training distribution: the tables above have a
    row per probe dataset, and this says which of them are out of distribution."""
    if report.depths is None:
        return report.skip("out-of-distribution probes", report.summary / "depths.csv")
    probe = report.trained["dataset_ref"] if "dataset_ref" in report.trained else report.trained["dataset"]
    same = probe.map(dataset_name) == report.trained["train_dataset"].map(dataset_name)
    d = report.trained.assign(distribution=same.map({True: "in", False: "out"}))
    if (d["distribution"] == "in").all():
        report.skipped.setdefault("a probe dataset other than the training one", []).append(
            "out-of-distribution probes"
        )
        return "*Not run: every probe dataset in `summary/depths.csv` is the training dataset.*\n"
    table = (
        d.groupby(["model", "dataset"], sort=False)
        .agg(trained_on=("train_dataset", "first"), distribution=("distribution", "first"))
        .reset_index()
        .rename(columns={"trained_on": "classifier trained on"})
    )
    return md_table(
        table,
        "Which probe datasets are in and out of the classifier's training distribution; every table and "
        "figure above has a row or line per probe dataset.",
    )
