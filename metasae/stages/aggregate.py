"""Stage `aggregate`: per-depth analyses of every run -> study tables, optimal depths with CIs, claims.

Inputs are the analysis `summary.json` files (their paths encode the run, as DESIGN.md's contracts say:
analysis/{classifier}/seed{seed}/{probe}/{layer}/{sae}/[{mode}/]depth{d}/summary.json), the SAE folders
beside them, and the study config. Output CSVs are sorted and rounded so that reruns give equal bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metasae.errors import MetasaeError
from metasae.io import atomic_path, git_commit, read_json, stage_output, write_json
from metasae.layout import parse_summary_path
from metasae.stack import Depth

STUDY_FILE = "study.json"  # written last
GROUP = ["model", "dataset", "layer", "sae", "mode"]
SUMMARY_FIELDS = [
    "alive_latents",
    "dead_fraction",
    "purity_mean",
    "purity_median",
    "entropy_mean",
    "count_all_top10_nonzero",
    "mean_active_per_image",
    "stack_fvu",
    "spliced_accuracy",
    "clean_accuracy",
    "loss_recovered",
]
SAE_FIELDS = ["fvu", "l0"]
CRITERIA = {  # criterion -> (column, maximise?)
    "max_purity": ("purity_mean", True),
    "max_activation_count": ("count_all_top10_nonzero", True),
    "max_mean_active": ("mean_active_per_image", True),
}
N_BOOT = 2000
TREND_CLAIMS = [  # (column, the log's claim, the log's own number, what the column is, where it comes from)
    (
        "mean_active_per_image",
        "The average number of activations increases the deeper you go",
        "stated in the log (2024-11-09); its own numbers fall after depth 2 (EMNIST L0 0.4, 18.4, 3.1, 0.3)",
        "mean active latents per image",
        "trained depths of every run and seed",
    ),
    (
        "purity_mean",
        "Latents become more atomic (purer in label) the deeper the stack goes",
        "the log's hypothesis; its own purity fell: Fashion-MNIST 6.60/10 at depth 1, 5.21 at depth 2",
        "mean label purity of alive latents",
        "top-10 label purity from latents.parquet",
    ),
]


def depth_rows(summary_paths: list[str | Path], config: dict) -> pd.DataFrame:
    """One row per (run, mode, depth); depth 1, shared by the modes, is repeated under each mode."""
    modes = list(config["meta"]["modes"])
    rows = []
    for path in summary_paths:
        where = parse_summary_path(path)
        summary = read_json(path)
        sae_metrics = Depth.load(Path(str(path).replace("/analysis/", "/sae/")).parent).metrics
        base = {
            **{k: where[k] for k in ("model", "dataset", "layer", "sae", "seed", "depth")},
            "train_dataset": config["classifiers"][where["model"]]["train"],
            "dataset_ref": config["probes"][where["dataset"]],
            "architecture": _architecture(config, where),
            "status": sae_metrics.get("status", "trained")
            if summary.get("status") != "collapsed"
            else "collapsed",
            "stop_reason": sae_metrics.get("stop_reason"),
            "d_sae": sae_metrics.get("d_sae"),
            "is_real": summary.get("dataset_is_real", False),
            **{k: summary.get(k) for k in SUMMARY_FIELDS},
            **{k: sae_metrics.get(k) for k in SAE_FIELDS},
        }
        for mode in [where["mode"]] if where["mode"] else modes:
            rows.append({**base, "mode": mode})
    if not rows:
        raise MetasaeError("aggregate: no analysis summaries given")
    table = pd.DataFrame(rows)
    table["explained_variance"] = 1 - table["fvu"].astype(float)
    order = [
        "model",
        "train_dataset",
        "dataset",
        "dataset_ref",
        "layer",
        "sae",
        "mode",
        "architecture",
        "seed",
        "depth",
        "status",
        "stop_reason",
        "d_sae",
        "is_real",
        "fvu",
        "explained_variance",
        "stack_fvu",
        "l0",
        *[f for f in SUMMARY_FIELDS if f != "stack_fvu"],
    ]
    return (
        table[order]
        .sort_values(["model", "dataset", "layer", "sae", "mode", "seed", "depth"])
        .reset_index(drop=True)
    )


def _architecture(config: dict, where: dict) -> str:
    if where["mode"]:
        return config["meta"]["modes"][where["mode"]]["architecture"]
    return config["sae"][where["sae"]]["architecture"]


def knee_depth(depths: np.ndarray, fvu: np.ndarray) -> int:
    """Depth of the FVU curve's knee: the point farthest from the chord joining its ends (Kneedle)."""
    if len(depths) < 3:
        return int(depths[np.argmin(fvu)])
    x = (depths - depths[0]) / (depths[-1] - depths[0])
    span = fvu[-1] - fvu[0]
    y = (fvu - fvu[0]) / span if span else np.zeros_like(fvu)
    return int(depths[np.argmax(np.abs(y - x))])


def _per_seed_optima(group: pd.DataFrame, criterion: str) -> list[int]:
    optima = []
    for _, seed_rows in group.groupby("seed"):
        live = seed_rows[seed_rows["status"] == "trained"].sort_values("depth")
        if live.empty:
            continue
        if criterion == "fvu_knee":
            optima.append(knee_depth(live["depth"].to_numpy(), live["fvu"].astype(float).to_numpy()))
        else:
            column, _ = CRITERIA[criterion]
            values = live[column].astype(float).to_numpy()
            if np.isnan(values).all():
                continue
            optima.append(int(live["depth"].to_numpy()[np.nanargmax(values)]))
    return optima


def bootstrap_median_ci(values: list[int], seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the median over seeds (degenerate with one seed: both ends = the value)."""
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(arr, size=(N_BOOT, len(arr)), replace=True), axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def optimal_depths(depths: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, group in depths.groupby(GROUP, sort=True):
        for criterion in [*CRITERIA, "fvu_knee"]:
            optima = _per_seed_optima(group, criterion)
            if not optima:
                continue
            lo, hi = bootstrap_median_ci(optima)
            best = float(np.median(optima))
            rows.append(
                {
                    **dict(zip(GROUP, key, strict=True)),
                    "architecture": _stack_architecture(group),
                    "criterion": criterion,
                    "optimal_depth": best,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_seeds": len(optima),
                    "per_seed": " ".join(map(str, optima)),
                    "log_claim_depth2_holds": best == 2,
                }
            )
    return pd.DataFrame(rows)


def _stack_architecture(group: pd.DataFrame) -> str:
    """e.g. 'topk>batchtopk': depth 1's architecture, then the meta-SAEs'."""
    ordered = group.sort_values("depth").drop_duplicates("architecture")["architecture"]
    return ">".join(ordered)


def _trend(depths: pd.DataFrame, column: str, mode: str) -> float:
    """Spearman correlation of a metric with depth over trained depths of one mode (NaN if undefined)."""
    rows = depths[(depths["mode"] == mode) & (depths["status"] == "trained")][["depth", column]].dropna()
    if rows["depth"].nunique() < 2 or rows[column].nunique() < 2:
        return float("nan")
    return float(rows["depth"].rank().corr(rows[column].astype(float).rank()))


def claims(depths: pd.DataFrame, optimal: pd.DataFrame) -> pd.DataFrame:
    """The research log's claims, each with the log's number, ours, and a verdict computed from the run."""
    out = []
    counts = optimal[optimal["criterion"] == "max_activation_count"]
    if not counts.empty:
        share = float(counts["log_claim_depth2_holds"].mean())
        out.append(
            (
                "Depth 2 is optimal for the most activations "
                "(count of latents whose top-10 are all non-zero)",
                "depth 2 (EMNIST 2304/2304, Fashion-MNIST 2304/2304 latents at depth 2)",
                f"median optimal depth = 2 in {share:.0%} of {len(counts)} (dataset, mode) groups; "
                f"optima: {', '.join(sorted(set(f'{d:g}' for d in counts['optimal_depth'])))}",
                "holds" if share > 0.5 else "fails",
                "criterion max_activation_count in optimal_depth.csv",
            )
        )
    for mode in sorted(depths["mode"].unique()):
        for column, claim, log_value, what, note in TREND_CLAIMS:
            rho = _trend(depths, column, mode)
            out.append(
                (
                    f"{claim} ({mode} mode)",
                    log_value,
                    f"Spearman(depth, {what}) = {rho:.2f}",
                    "untested" if np.isnan(rho) else ("holds" if rho > 0.3 else "fails"),
                    note,
                )
            )
    deep = depths[depths["depth"] == depths["depth"].max()]
    if not deep.empty:
        collapsed = float((deep["status"] != "trained").mean() + 0.0)
        out.append(
            (
                "Deep stacks collapse: codes go dead (loss 3.6e-44 at depths 7-10 in the log)",
                "all latents dead from depth 6-7 (ReLU, L1 summed over the batch)",
                f"{collapsed:.0%} of runs stopped or collapsed by depth {int(deep['depth'].iloc[0])}",
                "holds" if collapsed > 0.5 else "fails",
                "stop reasons in depths.csv",
            )
        )
    return pd.DataFrame(out, columns=["claim", "log_value", "our_value", "verdict", "note"])


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


@stage_output(STUDY_FILE)
def aggregate(summary_paths: list[str | Path], config: dict, out_dir: str | Path) -> dict[str, pd.DataFrame]:
    from metasae.figures.summary import plot_metrics_vs_depth

    out_dir = Path(out_dir)
    depths = depth_rows(summary_paths, config)
    optimal = optimal_depths(depths)
    claim_table = claims(depths, optimal)
    _write_csv(depths, out_dir / "depths.csv")
    _write_csv(optimal, out_dir / "optimal_depth.csv")
    _write_csv(claim_table, out_dir / "claims.csv")
    plot_metrics_vs_depth(depths, out_dir / "figures")
    first = parse_summary_path(sorted(map(str, summary_paths))[0])
    write_json(
        out_dir / STUDY_FILE,
        {
            "config": config,
            "headline": bool(config.get("headline", False)),
            "headline_run": (
                f"{first['model']}/seed{first['seed']}/{first['dataset']}/{first['layer']}/{first['sae']}"
            ),
            "datasets": _datasets(depths),
            "git_commit": git_commit(),
        },
    )
    return {"depths": depths, "optimal_depth": optimal, "claims": claim_table}


def _datasets(depths: pd.DataFrame) -> list[dict]:
    seen = depths.drop_duplicates("dataset")
    return [{"name": r.dataset, "ref": r.dataset_ref, "is_real": bool(r.is_real)} for r in seen.itertuples()]
