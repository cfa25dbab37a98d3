"""Appendix E: the research log's own numbers, depth by depth, beside the log preset's and the fixed
setup's, whether the preset reproduces each, and where not, why.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from metasae.io import read_json
from metasae.writeup.data import ReportData, dataset_name
from metasae.writeup.format import fmt, md_table

# The research log's own numbers (../shared/research/log-facts.md, read from the log's code repository
# jain18ayush/mnist-sae at 9e786df): the ColoredMNISTModel's test accuracy (§1.1), the fc1 stack's test
# loss per depth (§1.3, `log.txt` of `infinite_sae`), the count of latents whose top-10 activations are all
# non-zero per depth (§1.5, tallied from `docs/neuron_{DS}_depth_{d}/`) and the EMNIST L0 per depth
# (§1.5, `plots/saebench-metrics/EMNIST_l0_sparsity.png`; "~0" at depth 5 read as 0).
LOG_SOURCE = "log-facts.md §1.1, §1.3, §1.5, read from the log's repository jain18ayush/mnist-sae at 9e786df"
LOG_WIDTH = 2304
LOG_NUMBERS = {  # (quantity, depth) -> the log's number; depth 0: not per depth
    ("accuracy", 0): 0.9752,
    **{
        ("loss", d): v
        for d, v in enumerate(
            (34.04, 0.01775, 2.35e-4, 4.6e-7, 4.5e-10, 1.6e-20, 3.64e-44, 3.64e-44, 3.64e-44, 3.64e-44), 1
        )
    },
    **{("alive", d): 0.0 for d in range(7, 11)},  # loss 3.64e-44: every code zero (§1.3, §1.5)
    **{("emnist_count", d): float(v) for d, v in enumerate((961, 2304, 1756, 202, 15, 1, 0, 0, 0), 1)},
    **{("emnist_l0", d): v for d, v in enumerate((0.4, 18.4, 3.1, 0.3, 0.0), 1)},
    **{("fashion_count", d): float(v) for d, v in enumerate((463, 2304, 2115, 1339, 318, 26, 2, 0, 0), 1)},
}
LOG_QUANTITIES = {  # quantity -> (row label, the log's dataset, why ours may differ: a LOG_DIFFERENCES key)
    "accuracy": ("MNIST test accuracy", "mnist", "accuracy"),
    "loss": ("SAE training loss (last batch)", "mnist", "loss"),
    "alive": ("alive latents", "mnist", "loss"),
    "emnist_count": ("top-10 count", "emnist", "emnist"),
    "emnist_l0": ("L0", "emnist", "emnist"),
    "fashion_count": ("top-10 count", "fashion_mnist", "fashion_mnist"),
}
LOG_DATASET_NAMES = {"mnist": "MNIST", "emnist": "EMNIST", "fashion_mnist": "Fashion-MNIST"}
LOG_WIDTH_QUANTITIES = ("alive", "emnist_count", "fashion_count")  # shown as value/width
# Why a number of ours can differ from the log's, per quantity (printed where the log preset misses it).
LOG_DIFFERENCES = {
    "accuracy": "one training run each, in another order of batches; the log reports a single run.",
    "loss": "the log's loss is averaged over its 20% test split of 70,000 MNIST train+test activations; "
    "ours is the last training batch of an SAE trained on the `mnist` probe only (fewer images, so fewer "
    "steps in the one epoch).",
    "emnist": "EMNIST is not available offline: `glyphs` (rendered letters and digits in 47 EMNIST-balanced "
    "classes) stands in for it, with 2,820 images against the log's 112,800.",
    "fashion_mnist": "the log cached Fashion-MNIST's train split (60,000 images) through random crops and "
    "flips with CIFAR normalisation (log-facts §1.4, pitfalls 4 and 7); ours is the 10,000-image test "
    "split, unaugmented, normalised as the classifier was trained.",
}


def _setup_label(study: dict) -> str:
    """How the log comparison names a study: by the preset its config names, else as the fixed setup."""
    preset = (study.get("config") or {}).get("preset")
    return f"{preset} preset" if preset else "fixed setup"


def _log_probe(depths: pd.DataFrame, dataset: str) -> tuple[str, bool] | None:
    """Our probe (of one classifier's rows) for one of the log's datasets, and whether it is a stand-in:
    real EMNIST where it was run, else `glyphs`."""
    names = depths["dataset_ref"].map(dataset_name) if "dataset_ref" in depths else depths["dataset"]
    candidates = [("emnist", False), ("glyphs", True)] if dataset == "emnist" else [(dataset, False)]
    for name, stand_in in candidates:
        hit = depths.loc[names.str.startswith(name)]
        if not hit.empty:
            return str(hit["dataset"].iloc[0]), stand_in
    return None


def _reproduces(ours: float, log: float, quantity: str) -> bool:
    """Within LOG_TOLERANCE: accuracy within 1 point, a loss within a factor of 10 (both below 1e-30 is the
    same collapse), counts within 25% or 1 latent, L0 within 25% or 0.1."""
    if quantity == "accuracy":
        return abs(ours - log) <= 0.01
    if quantity == "loss":
        return (ours < 1e-30 and log < 1e-30) or (ours > 0 and log > 0 and abs(math.log10(ours / log)) <= 1)
    floor = 0.1 if quantity == "emnist_l0" else 1.0
    return abs(ours - log) <= max(0.25 * abs(log), floor)


def _final_loss(results: Path, row: pd.Series) -> float:
    """The last logged training loss (the setup's own loss function) of one trained depth, or NaN."""
    folder = "depth1" if row["depth"] == 1 else f"{row['mode']}/depth{row['depth']}"
    run = Path(row["model"], f"seed{row['seed']}", row["dataset"], row["layer"], row["sae"])
    path = results / "sae" / run / folder / "train_log.csv"
    if not path.is_file():
        return float("nan")
    log = pd.read_csv(path)
    return float(log["total"].iloc[-1]) if len(log) else float("nan")


def _log_cell(quantity: str, value: float, width: float | None = None) -> str:
    """One number as the comparison prints it: accuracy in %, counts against their width."""
    if math.isnan(value):
        return "–"
    if quantity == "accuracy":
        return f"{value:.2%}"
    return f"{fmt(value)}/{fmt(width)}" if width is not None else fmt(value)


def _studies(report: ReportData) -> list[ReportData]:
    """This study and `compare` (where its summary exists), the log preset's first."""
    studies = [report]
    if report.compare is not None and (report.compare / "summary" / "depths.csv").is_file():
        other = ReportData(report.compare, report.figures_dir)
        report.inputs |= other.inputs
        studies.append(other)
    return sorted(studies, key=lambda r: _setup_label(r.study) != "log preset")


def _log_values(report: ReportData, mode: str) -> tuple[dict, dict]:
    """This study's numbers for LOG_QUANTITIES in one mode, from its classifier trained on MNIST:
    {(quantity, depth): (value, width or None, note, value for the verdict)}, and {log dataset: (probe,
    stand-in)}. The value: the mean over the seeds that did not stop at that depth (a collapsed depth
    counts, with its zeros); the note: 'stopped' where every seed stopped, 'k/n seeds' where some did; the
    verdict's value counts a stopped seed as collapsed (0: the stop rules fire on dead parents)."""
    d = report.depths
    models = sorted(d.loc[d["train_dataset"].map(dataset_name) == "mnist", "model"].unique())
    if not models:
        return {}, {}
    d = d.loc[(d["model"] == models[0]) & (d["mode"] == mode)]
    values: dict[tuple[str, int], tuple[float, float | None, str | None, float]] = {}
    accuracy = [
        read_json(p).get("test_accuracy")
        for p in sorted((report.results / "models" / models[0]).glob("seed*/metrics.json"))
    ]
    accuracy = [a for a in accuracy if a is not None]
    if accuracy:
        report.inputs |= set((report.results / "models" / models[0]).glob("seed*/metrics.json"))
        values[("accuracy", 0)] = (float(np.mean(accuracy)), None, None, float(np.mean(accuracy)))
    probes = {}
    for dataset in LOG_DATASET_NAMES:
        found = _log_probe(d, dataset)
        if found is None:
            continue
        probes[dataset] = found
        quantities = [q for q, (_, ds, _) in LOG_QUANTITIES.items() if ds == dataset and q != "accuracy"]
        for depth, g in d.loc[d["dataset"] == found[0]].groupby("depth"):
            rows, n = g.loc[g["status"] != "stopped"], g["seed"].nunique()
            for q in quantities:
                if not len(rows):
                    values[(q, int(depth))] = (float("nan"), None, "stopped", 0.0)
                    continue
                value, width = _log_value(report, q, rows)
                k = rows["seed"].nunique()
                note = f"{k}/{n} seeds" if k < n else None
                values[(q, int(depth))] = (value, width, note, value * k / n)
    return values, probes


def _log_value(report: ReportData, quantity: str, rows: pd.DataFrame) -> tuple[float, float | None]:
    """(mean over `rows`, mean width where the quantity is shown against it)."""
    width = float(rows["width"].mean()) if quantity in LOG_WIDTH_QUANTITIES else None
    if quantity == "loss":
        losses = [_final_loss(report.results, row) for _, row in rows.iterrows()]
        return (float("nan") if np.isnan(losses).all() else float(np.nanmean(losses))), None
    column = {"alive": "alive_latents", "emnist_l0": "mean_active_per_image"}.get(
        quantity, "count_all_top10_nonzero"
    )
    return float(rows[column].astype(float).mean()), width


def log_comparison(report: ReportData) -> str:
    """The research log's numbers (LOG_NUMBERS), depth by depth, beside the log preset's and the fixed
    setup's (this study and `compare`), whether the preset reproduces each, and where not, why."""
    if report.depths is None:
        return report.skip("the research log's numbers beside ours", report.summary / "depths.csv")
    columns = [
        (f"{_setup_label(r.study)}: {mode} ({r.depths['seed'].nunique()} seeds)", r, mode)
        for r in _studies(report)
        if r.depths is not None
        for mode in sorted(r.depths["mode"].unique(), key=lambda m: m != "activations")  # the log's first
    ]
    found = {name: _log_values(r, mode) for name, r, mode in columns}
    if not any(values for values, _ in found.values()):
        report.skipped.setdefault("a classifier trained on MNIST", []).append("the log comparison")
        return "*Not run: no classifier here was trained on MNIST (the log's: `config/mnist.yaml`).*\n"
    probes: dict[str, tuple[str, bool]] = {}
    for _, found_probes in found.values():
        for dataset, probe in found_probes.items():
            probes.setdefault(dataset, probe)
    ours = {key for values, _ in found.values() for key in values}
    logs = {key for key in LOG_NUMBERS if LOG_QUANTITIES[key[0]][1] in probes}
    order = list(LOG_QUANTITIES)
    preset = next(
        (n for n, r, m in columns if _setup_label(r.study) == "log preset" and m == "activations"), None
    )
    rows, missed = [], set()
    for q, depth in sorted(ours | logs, key=lambda k: (order.index(k[0]), k[1])):
        label, dataset, _ = LOG_QUANTITIES[q]
        where = LOG_DATASET_NAMES[dataset] + (
            f" (stand-in: {probes[dataset][0]})" if probes.get(dataset, ("", False))[1] else ""
        )
        log = LOG_NUMBERS.get((q, depth))
        width = LOG_WIDTH if q in LOG_WIDTH_QUANTITIES else None
        row = {
            "quantity": label if q == "accuracy" else f"{where}: {label}",
            "depth": str(depth) if depth else "–",
            "research log": "–" if log is None else _log_cell(q, log, width),
        }
        for name, _, _ in columns:
            value, our_width, note, _ = found[name][0].get((q, depth), (math.nan, None, None, math.nan))
            cell = _log_cell(q, value, our_width)
            row[name] = "stopped" if note == "stopped" else f"{cell} ({note})" if note else cell
        verdict = "–"
        if preset and log is not None and (q, depth) in found[preset][0]:
            value = found[preset][0][(q, depth)][3]
            if not math.isnan(value):
                verdict = "yes" if _reproduces(value, log, q) else "no"
        if verdict == "no":
            missed.add(LOG_QUANTITIES[q][2])
        rows.append({**row, "preset reproduces": verdict})
    table = pd.DataFrame(rows)
    studies = "; ".join(sorted({f"{name.split(':')[0]}: `{r.results.name}/`" for name, r, _ in columns}))
    caption = (
        f"The research log's numbers ({LOG_SOURCE}) beside ours, depth by depth: means over seeds, "
        f"counts as count/width. Studies: {studies}. Training loss: the preset's is the log's (MSE mean "
        "+ 0.1·Σ|z|); the fixed setup's is its own (TopK: MSE + AuxK), not comparable with the log's. "
        "'preset reproduces': the log preset's activations "
        "mode is within 1 accuracy point, a factor of 10 in loss (both below 1e-30: the same collapse), "
        "25% of a count (at least 1 latent) or of L0 (at least 0.1), a seed stopped at a depth counted "
        "as collapsed (0: the preset's stop rule fires on a dead parent). 'k/n seeds': the mean over the "
        "k seeds that trained the depth."
    )
    out = [md_table(table, caption, right=[c for c in table.columns if c != "quantity"], keys=2)]
    if preset is None:
        out.append(
            "*The log preset's columns are absent: run `snakemake --cores all --configfile "
            "config/mnist.yaml config/presets/log.yaml`, then this study again (its report reads "
            "`compare_with`).*\n"
        )
    if missed:
        out.append("Where the log preset does not reproduce the log's number, the setups differ:\n")
        out.append("\n".join(f"- **{key}:** {LOG_DIFFERENCES[key]}" for key in sorted(missed)) + "\n")
    return "\n".join(out)
