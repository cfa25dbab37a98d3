"""Setup's out-of-distribution probes: which probe datasets lie outside the classifier's training
distribution, said in a sentence (they are the stand-ins' reason to exist) and tabled."""

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
    real = {d["name"]: d["is_real"] for d in report.datasets()}
    sentences = []
    for (model, trained), g in table.loc[table["distribution"] == "out"].groupby(
        ["model", "classifier trained on"], sort=False
    ):
        probes = sorted(g["dataset"])
        one = len(probes) == 1
        stand_in = " (an embedded stand-in)" if one else " (embedded stand-ins)"
        kind = stand_in if not any(real.get(p, True) for p in probes) else ""
        sentences.append(
            f"{', '.join(probes)}{kind} {'is an' if one else 'are'} out-of-distribution "
            f"{'probe' if one else 'probes'} of the `{model}` classifier trained on "
            f"{dataset_name(trained)}: images unlike its training images, as EMNIST, Fashion-MNIST and "
            "CIFAR were for the log's MNIST classifier. There its labels are not the classifier's classes, "
            "so spliced accuracy is agreement with the classifier's own predictions."
        )
    return (
        " ".join(sentences)
        + "\n\n"
        + md_table(
            table,
            "Which probe datasets are in and out of the classifier's training distribution; every table and "
            "figure has a row or line per probe dataset.",
        )
    )
