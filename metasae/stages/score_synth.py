"""Stages `score-synth` and `synth-summary`: how each depth of a stack trained on planted trees (stage
`synth-acts`) matches the planted levels, and whether the optimal-depth criteria of `aggregate` find the
planted depth.

Depth 1 of a stack on a tree of depth L should recover its leaves (level L); each meta depth should move one
level up, so depth L is the first whose latents are the roots: the "true optimal depth" is L. Past it a
halving stack can only merge roots of different trees, which no level's truth matches (clade recovery drops).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from metasae.errors import MetasaeError
from metasae.groundtruth import clade_recovery, leaf_clusters, level_purity, match_levels, mcc
from metasae.io import read_json, stage_output, write_json
from metasae.latent_stats import LOG_TOP, column_stats, top_activations
from metasae.stack import Depth
from metasae.stages.synth_acts import load_truth
from metasae.synth_tree import SynthTree

SCORE_FILE = "score.json"
SYNTH_DEPTH_FILE = "synth_depth.csv"
SYNTH_SCORES_FILE = "synth_scores.csv"
SYNTH_ACCURACY_FILE = "synth_accuracy.csv"
SYNTH_FIGURE = "synth_depth.png"


def activation_rows(depth: Depth) -> torch.Tensor:
    """[latents, d]: each latent's direction in the activation space (decoder mode and depth 1: its decoder
    row; activations mode: its decoder row decoded up the stack, bias removed)."""
    if depth.mode != "activations":
        return depth.sae.W_dec.detach().float()
    decode = depth.decoder()
    with torch.no_grad():
        eye = torch.eye(depth.sae.W_dec.shape[0])
        return (decode(eye) - decode(torch.zeros(1, eye.shape[1]))).float()


def meta_code_chain(depth: Depth) -> list[torch.Tensor]:
    """C_2 .. C_d of a depth's stack, shallowest first (empty at depth 1): its lineage down to depth 1."""
    chain = []
    while depth.parent is not None:
        chain.insert(0, depth.meta_codes)
        depth = depth.parent
    return chain


def _level_scores(
    rows: torch.Tensor, dense: torch.Tensor, top: torch.Tensor, tree: SynthTree, ari: list[float]
) -> list[dict]:
    """Per planted level, for the alive latents (rows, codes, top rows): match_levels' entry, MCC of the
    codes with the level's node codes (in activations mode the depth's own codes; decoder mode routes the
    parent's), mean multi-label purity of the top samples, the share of latents whose best level it is, and
    the clade ARI against the level's partition."""
    matched = match_levels(rows, tree)
    levels = []
    for entry in matched["levels"]:
        lvl = entry["level"]
        purity = level_purity(top, tree.active[lvl - 1])
        levels.append(
            {
                **entry,
                "mcc": mcc(dense, tree.codes[lvl - 1]),
                "purity_mean": float(np.nanmean(purity.numpy())) if purity.numel() else math.nan,
                "share_best_level": float((matched["best_level"] == lvl).double().mean()),
                "clade_ari": ari[lvl - 1],
            }
        )
    return levels


@torch.no_grad()
def score_depth(depth_dir: str | Path, top_n: int = LOG_TOP) -> dict:
    """Per planted level: matching of the depth's alive latents (match_levels), MCC of their codes with the
    level's node codes, mean level purity of their top samples, clade ARI; clade share; and the statistics
    the optimal-depth criteria of `aggregate` use. best_matched_level: the level whose Hungarian mean cosine
    (over max(latents, features)) is highest."""
    depth = Depth.load(depth_dir)
    out = {"depth": depth.depth, "mode": depth.mode, "status": depth.metrics.get("status", "trained")}
    if depth.stopped:
        return out
    from metasae.metrics import fvu

    tree = load_truth(depth.acts_dir)
    codes = depth.codes.coalesce()
    stats = column_stats(codes)
    alive = ~stats.dead
    dense = codes.to_dense()[:, alive]
    rows = activation_rows(depth)[alive]
    top = top_activations(codes, top_n).rows[alive]
    cluster = leaf_clusters(depth.root.sae.W_dec.detach(), tree.path_directions(), meta_code_chain(depth))
    clades = clade_recovery(cluster, alive.nonzero().flatten(), tree.spec)
    levels = _level_scores(rows, dense, top, tree, clades["ari"]) if int(alive.sum()) else []
    best = max(levels, key=lambda e: e["hungarian_mean_cosine"])["level"] if levels else None
    leaf = levels[-1]["purity_mean"] if levels else None
    return {
        **out,
        "true_depth": tree.spec.depth,
        "width": depth.width,
        "fvu": depth.metrics.get("fvu"),
        "l0": depth.metrics.get("l0"),
        "alive_latents": int(alive.sum()),
        "purity_mean": leaf,  # leaf level: what `analyse` measures with the cache's labels (multi-label here)
        "count_all_top10_nonzero": int((stats.n_active >= LOG_TOP).sum()),
        "mean_active_per_image": stats.mean_l0,
        "stack_fvu": fvu(tree.acts, depth.reconstruction()(tree.acts)),
        "best_matched_level": best,
        "clade_share": clades["clade_share"],
        "levels": levels,
    }


def score_synth(depth_dir: str | Path, out_dir: str | Path) -> dict:
    """Score one depth folder into <out_dir>/score.json."""
    score = score_depth(depth_dir)
    write_json(Path(out_dir) / SCORE_FILE, score)
    return score


# --------------------------------------------------------------------------------------------- summary


def synth_rows(score_paths: list[str | Path], config: dict) -> tuple[pd.DataFrame, dict]:
    """One row per (tree, seed, mode, depth) in `aggregate`'s depths.csv shape (model 'synth', dataset = the
    tree); depth 1 is repeated under each mode. Also the Depth folders, for stability."""
    from metasae.statistics.groups import GROUP

    modes = list(config["meta"]["modes"])
    rows, folders = [], {}
    for path in score_paths:
        where = _score_where(path)
        score = read_json(path)
        sae_dir = Path(str(path).replace("/synth_scores/", "/sae/")).parent
        folder = Depth.load(sae_dir)
        folders[tuple(where[k] for k in (*GROUP, "seed", "depth"))] = folder
        levels = {f"level{e['level']}_{k}": e[k] for e in score.get("levels", []) for k in _LEVEL_KEYS}
        arch = (
            config["meta"]["modes"][where["mode"]]["architecture"]
            if where["mode"]
            else config["sae"][where["sae"]]["architecture"]
        )
        base = {
            **{k: where[k] for k in ("model", "dataset", "layer", "sae", "seed", "depth")},
            "true_depth": config["synth"]["trees"][where["dataset"]]["depth"],
            "architecture": arch,
            "status": folder.metrics.get("status", "trained"),
            "width": folder.metrics.get("width"),
            **{
                k: score.get(k)
                for k in (
                    "fvu",
                    "l0",
                    "alive_latents",
                    "purity_mean",
                    "count_all_top10_nonzero",
                    "mean_active_per_image",
                    "stack_fvu",
                    "best_matched_level",
                    "clade_share",
                )
            },
            **levels,
        }
        for mode in [where["mode"]] if where["mode"] else modes:
            rows.append({**base, "mode": mode})
    if not rows:
        raise MetasaeError("synth-summary: no score files given")
    return pd.DataFrame(rows), folders


_LEVEL_KEYS = ("hungarian_mean_cosine", "fraction_matched", "mcc", "purity_mean", "clade_ari")


def _score_where(path: str | Path) -> dict:
    parts = Path(path).as_posix().split("/")
    i = parts.index("synth_scores")
    model, seed, dataset, layer, sae, *rest = parts[i + 1 : -1]
    mode = rest[0] if len(rest) == 2 else None
    return {
        "model": model,
        "seed": int(seed.removeprefix("seed")),
        "dataset": dataset,
        "layer": layer,
        "sae": sae,
        "mode": mode,
        "depth": int(rest[-1].removeprefix("depth")),
    }


@stage_output(SYNTH_DEPTH_FILE)
def synth_summary(
    score_paths: list[str | Path], config: dict, out_dir: str | Path
) -> dict[str, pd.DataFrame]:
    """synth_scores.csv (every depth's scores and criterion statistics), synth_depth.csv (criterion x mode x
    true depth: the median estimated depth over seeds and trees, its bootstrap CI, the share of (tree, seed)
    cases it gets right) and synth_accuracy.csv (criterion x mode: share right over all cases)."""
    from metasae import statistics as agg

    table, folders = synth_rows(score_paths, config)
    table = agg.derived_columns(table)
    table = table.merge(
        agg.stability(folders, list(config["meta"]["modes"])), on=[*agg.GROUP, "seed", "depth"], how="left"
    )
    table = table.sort_values([*agg.GROUP, "seed", "depth"]).reset_index(drop=True)
    optimal = agg.optimal_depths(table)
    optimal["true_depth"] = optimal["dataset"].map(lambda t: config["synth"]["trees"][t]["depth"])
    cases = _cases(optimal, table)
    depth_table = _by_true_depth(cases)
    accuracy = (
        cases.groupby(["criterion", "mode"], sort=True)
        .agg(n_cases=("estimated", "size"), fraction_correct=("correct", "mean"))
        .reset_index()
    )
    out_dir = Path(out_dir)
    table.to_csv(out_dir / SYNTH_SCORES_FILE, index=False)
    accuracy.to_csv(out_dir / SYNTH_ACCURACY_FILE, index=False)
    _figure(depth_table, out_dir / SYNTH_FIGURE)
    depth_table.to_csv(out_dir / SYNTH_DEPTH_FILE, index=False)  # the marker, last
    return {"scores": table, "depth": depth_table, "accuracy": accuracy}


def _cases(optimal: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """One row per (criterion, mode, tree, seed): the criterion's estimated depth, plus the oracle
    'root_match' (the shallowest trained depth whose latents best match the roots: past the planted depth a
    stack can only merge roots, which still match level 1 best)."""
    rows = []
    for row in optimal.itertuples(index=False):
        for estimated in [int(v) for v in str(row.per_seed).split()]:
            rows.append((row.criterion, row.mode, row.dataset, int(row.true_depth), estimated))
    for (mode, tree, _seed), group in table.groupby(["mode", "dataset", "seed"]):
        trained = group[(group["status"] == "trained") & group["best_matched_level"].notna()]
        roots = trained[trained["best_matched_level"] == 1]
        if len(roots):
            rows.append(
                ("root_match", mode, tree, int(group["true_depth"].iloc[0]), int(roots["depth"].min()))
            )
    cases = pd.DataFrame(rows, columns=["criterion", "mode", "dataset", "true_depth", "estimated"])
    cases["correct"] = cases["estimated"] == cases["true_depth"]
    return cases


def _by_true_depth(cases: pd.DataFrame) -> pd.DataFrame:
    from metasae.statistics.intervals import bootstrap_median_ci

    rows = []
    for (criterion, mode, true_depth), group in cases.groupby(["criterion", "mode", "true_depth"], sort=True):
        values = group["estimated"].tolist()
        lo, hi = bootstrap_median_ci(values)
        rows.append(
            {
                "criterion": criterion,
                "mode": mode,
                "true_depth": true_depth,
                "estimated_median": float(np.median(values)),
                "ci_low": lo,
                "ci_high": hi,
                "n_cases": len(values),
                "estimates": " ".join(map(str, values)),
                "fraction_correct": float(group["correct"].mean()),
            }
        )
    return pd.DataFrame(rows)


def _figure(depth_table: pd.DataFrame, path: Path) -> None:
    """Estimated vs planted depth, one panel per mode, one line per criterion (median, CI as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted(depth_table["mode"].unique())
    fig, axes = plt.subplots(1, len(modes), figsize=(4.5 * len(modes), 4), squeeze=False, sharey=True)
    top = max(depth_table["true_depth"].max(), depth_table["ci_high"].max())
    for ax, mode in zip(axes[0], modes, strict=True):
        rows = depth_table[depth_table["mode"] == mode]
        for i, (criterion, g) in enumerate(rows.groupby("criterion")):
            x = g["true_depth"].to_numpy() + (i - 2) * 0.05
            y = g["estimated_median"].to_numpy()
            err = [y - g["ci_low"].to_numpy(), g["ci_high"].to_numpy() - y]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=2, label=criterion)
        ax.plot([0.5, top + 0.5], [0.5, top + 0.5], color="grey", linestyle=":", label="estimate = L")
        ax.set(title=f"{mode} mode", xlabel="planted depth L", ylabel="estimated optimal depth")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
