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
from metasae.groundtruth import clade_recovery, leaf_clusters, level_purity, match_levels, mcc, tree_identity
from metasae.io import read_json, stage_output, write_json
from metasae.latent_stats import LOG_TOP, column_stats, top_activations
from metasae.stack import Depth
from metasae.statistics.intervals import clopper_pearson, spearman, spearman_ci
from metasae.statistics.meta_gain import depth_meta_gain
from metasae.synth_tree import SynthTree
from metasae.synth_truth import STACK_KINDS, load_truth

SCORE_FILE = "score.json"
SYNTH_DEPTH_FILE = "synth_depth.csv"
SYNTH_SCORES_FILE = "synth_scores.csv"
SYNTH_ACCURACY_FILE = "synth_accuracy.csv"
SYNTH_FIGURE = "synth_depth.png"
RECOVERY_FIGURE = "synth_recovery.png"
RECOVERY_FILE = "synth_recovery.csv"
CRITERIA_FILE = "criteria.csv"
# the plain statistics (metasae.statistics.optimal.STATISTICS) read as criteria, in criteria.csv's and
# synth_accuracy.csv's columns: how near each comes to passing the admission test, none of them answering
STATISTICS_FILE = "statistics.csv"
STATISTICS_ACCURACY_FILE = "statistics_accuracy.csv"
CRITERIA_COLUMNS = [
    "stack",
    "mode",
    "criterion",
    "planted_depth",
    "tree_seed",
    "sae_seed",
    "estimate_low",
    "estimate_high",
    "right",
]
STACKS = ("oracle", "trained", "shuffled", "matryoshka")  # criteria.csv's `stack`, in the figures' order


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
    codes = depth.image_codes.coalesce()
    stats = column_stats(codes)
    alive = ~stats.dead
    dense = codes.to_dense()[:, alive]
    rows = depth.directions()[alive]
    top = top_activations(codes, top_n).rows[alive]
    cluster = leaf_clusters(depth.root.sae.W_dec.detach(), tree.path_directions(), meta_code_chain(depth))
    clades = clade_recovery(cluster, alive.nonzero().flatten(), tree.spec)
    levels = _level_scores(rows, dense, top, tree, clades["ari"]) if int(alive.sum()) else []
    best = max(levels, key=lambda e: e["hungarian_mean_cosine"])["level"] if levels else None
    leaf = levels[-1]["purity_mean"] if levels else None
    identity = tree_identity(dense, tree.active[0])
    n_inputs = codes.shape[0]
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
        "tree_identity_mean": float(identity.mean()) if identity.numel() else None,
        "n_inputs": n_inputs,
        # every latent is expected to fire top_n times: count_all_top10_nonzero then counts the dictionary
        "count_saturated": bool(n_inputs * stats.mean_l0 >= top_n * depth.width),
        **depth_meta_gain(depth, with_row_structure=True),
        "levels": levels,
    }


def score_synth(depth_dir: str | Path, out_dir: str | Path) -> dict:
    """Score one depth folder into <out_dir>/score.json."""
    score = score_depth(depth_dir)
    write_json(Path(out_dir) / SCORE_FILE, score)
    return score


# --------------------------------------------------------------------------------------------- summary


def stack_kind(sae: str, config: dict) -> str:
    """criteria.csv's `stack` of a run's SAE name: an analytic stack (synth-oracle), the Matryoshka
    reference or a trained stack."""
    if sae in STACK_KINDS:
        return sae
    return "matryoshka" if config["sae"][sae]["architecture"] == "matryoshka" else "trained"


def _architecture(config: dict, sae: str, mode: str | None) -> str:
    if sae in STACK_KINDS:
        return sae  # analytic: no training fixes any statistic
    return config["meta"]["modes"][mode]["architecture"] if mode else config["sae"][sae]["architecture"]


def synth_rows(score_paths: list[str | Path], config: dict) -> tuple[pd.DataFrame, dict]:
    """One row per (stack, tree, seed, mode, depth) in `aggregate`'s depths.csv shape (model 'synth',
    dataset = the tree, sae = the trained SAE or the analytic stack's kind); depth 1 is repeated under each
    mode. Also the Depth folders, for stability."""
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
        tree = config["synth"]["trees"][where["dataset"]]
        base = {
            **{k: where[k] for k in ("model", "dataset", "layer", "sae", "seed", "depth")},
            "stack": stack_kind(where["sae"], config),
            "true_depth": tree["depth"],
            "tree_seed": tree.get("data_seed", where["seed"]),
            "architecture": _architecture(config, where["sae"], where["mode"]),
            "status": folder.metrics.get("status", "trained"),
            "width": folder.metrics.get("width"),
            **{k: score.get(k) for k in _SCORE_KEYS},
            **levels,
        }
        for mode in [where["mode"]] if where["mode"] else modes:
            rows.append({**base, "mode": mode})
    if not rows:
        raise MetasaeError("synth-summary: no score files given")
    return pd.DataFrame(rows), folders


_SCORE_KEYS = (
    "fvu",
    "l0",
    "alive_latents",
    "purity_mean",
    "count_all_top10_nonzero",
    "count_saturated",
    "mean_active_per_image",
    "stack_fvu",
    "best_matched_level",
    "clade_share",
    "tree_identity_mean",
    "meta_explained",
    "meta_null_explained",
    "meta_gain",
    "meta_gain_z",
    "row_structure",
    "row_structure_z",
)
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


@stage_output(CRITERIA_FILE)
def synth_summary(
    score_paths: list[str | Path], config: dict, out_dir: str | Path
) -> dict[str, pd.DataFrame]:
    """synth_scores.csv (every depth's scores and criterion statistics), criteria.csv (one row per stack,
    mode, criterion, tree and SAE seed: the seed's optimal plateau and whether it is exactly the planted
    depth), synth_depth.csv (stack x criterion x mode x planted depth: median estimate, bootstrap CI, share
    right), synth_accuracy.csv (stack x criterion x mode: share right and Spearman(estimate, L)),
    synth_recovery.csv (stack x mode x planted depth x depth x level recovery), the same cases and accuracy
    for the plain statistics (statistics.csv, statistics_accuracy.csv) and the figures."""
    from metasae.statistics.columns import derived_columns
    from metasae.statistics.groups import GROUP
    from metasae.statistics.optimal import STATISTICS
    from metasae.statistics.seed_stability import stability

    table, folders = synth_rows(score_paths, config)
    table = derived_columns(table)
    table = table.merge(
        stability(folders, list(config["meta"]["modes"])), on=[*GROUP, "seed", "depth"], how="left"
    )
    table = table.sort_values([*GROUP, "seed", "depth"]).reset_index(drop=True)
    cases = _cases(table)
    depth_table = _by_true_depth(cases)
    accuracy = _accuracy(cases)
    out_dir = Path(out_dir)
    table.to_csv(out_dir / SYNTH_SCORES_FILE, index=False)
    accuracy.to_csv(out_dir / SYNTH_ACCURACY_FILE, index=False)
    depth_table.to_csv(out_dir / SYNTH_DEPTH_FILE, index=False)
    _figure(depth_table, out_dir / SYNTH_FIGURE)
    recovered = recovery_table(table)
    recovered.to_csv(out_dir / RECOVERY_FILE, index=False)
    statistic_cases = _cases(table, STATISTICS)
    statistic_cases.to_csv(out_dir / STATISTICS_FILE, index=False)
    _accuracy(statistic_cases).to_csv(out_dir / STATISTICS_ACCURACY_FILE, index=False)
    _recovery_figure(recovered[recovered["stack"] == "trained"], out_dir / RECOVERY_FIGURE)
    cases.to_csv(out_dir / CRITERIA_FILE, index=False)  # the marker, last
    return {"scores": table, "criteria": cases, "depth": depth_table, "accuracy": accuracy}


def _cases(table: pd.DataFrame, criteria: dict | None = None) -> pd.DataFrame:
    """criteria.csv: per stack, mode, criterion (of `criteria`, default the study's CRITERIA), tree and SAE
    seed, the seed's optimal plateau by `metasae.statistics.optimal` (estimate_low..estimate_high; NaN where
    the criterion gives no answer) and `right`: the plateau is exactly the planted depth."""
    from metasae.statistics.groups import GROUP
    from metasae.statistics.optimal import CRITERIA, seed_optima

    criteria = CRITERIA if criteria is None else criteria

    rows = []
    for _, group in table.groupby(GROUP, sort=True):
        first = group.iloc[0]
        for seed, seed_rows in group.groupby("seed", sort=True):
            for criterion, how in criteria.items():
                found = seed_optima(seed_rows, criterion, min_depths=how.min_depths)
                low, high = (
                    (found.per_seed[0].low, found.per_seed[0].high) if found.per_seed else (None, None)
                )
                rows.append(
                    {
                        "stack": first["stack"],
                        "mode": first["mode"],
                        "criterion": criterion,
                        "planted_depth": int(first["true_depth"]),
                        "tree_seed": int(first["tree_seed"]),
                        "sae_seed": int(seed),
                        "estimate_low": low,
                        "estimate_high": high,
                        "right": low == high == int(first["true_depth"]),
                    }
                )
    cases = pd.DataFrame(rows, columns=CRITERIA_COLUMNS)
    cases[["estimate_low", "estimate_high"]] = cases[["estimate_low", "estimate_high"]].astype(float)
    return cases


def _estimate(cases: pd.DataFrame) -> pd.Series:
    """A case's point estimate: its plateau's midpoint."""
    return (cases["estimate_low"] + cases["estimate_high"]) / 2


_BY = ["stack", "criterion", "mode"]


def _by_true_depth(cases: pd.DataFrame) -> pd.DataFrame:
    from metasae.statistics.intervals import bootstrap_median_ci

    cases = cases.assign(estimate=_estimate(cases))
    rows = []
    for key, group in cases.groupby([*_BY, "planted_depth"], sort=True):
        values = group["estimate"].dropna().tolist()
        lo, hi = bootstrap_median_ci(values) if values else (math.nan, math.nan)
        rows.append(
            {
                **dict(zip([*_BY, "planted_depth"], key, strict=True)),
                "estimated_median": float(np.median(values)) if values else math.nan,
                "ci_low": lo,
                "ci_high": hi,
                "n_cases": len(group),
                "n_answered": len(values),
                "estimates": " ".join(_plateau_text(r) for r in group.itertuples()),
                "fraction_correct": float(group["right"].mean()),
            }
        )
    return pd.DataFrame(rows)


def _plateau_text(case: object) -> str:
    low, high = case.estimate_low, case.estimate_high
    if pd.isna(low):
        return "-"
    return f"{low:.0f}" if low == high else f"{low:.0f}-{high:.0f}"


def _accuracy(cases: pd.DataFrame) -> pd.DataFrame:
    """Per stack, criterion and mode: cases, share right (Clopper-Pearson CI over the cases) and
    Spearman(estimate, planted depth) over the answered cases (NaN where either is constant). Its CI counts
    each planted tree (planted depth x data seed) as one unit: the SAE seeds on one tree share its data, so
    counting them as independent cases would narrow the interval falsely."""
    cases = cases.assign(estimate=_estimate(cases))
    rows = []
    for key, group in cases.groupby(_BY, sort=True):
        answered = group.dropna(subset=["estimate"])
        varies = answered["estimate"].nunique() > 1 and answered["planted_depth"].nunique() > 1
        rho = spearman(answered["planted_depth"], answered["estimate"]) if varies else math.nan
        n_trees = len(answered[["planted_depth", "tree_seed"]].drop_duplicates())
        right_low, right_high = clopper_pearson(int(group["right"].sum()), len(group))
        rho_low, rho_high = spearman_ci(rho, n_trees)
        rows.append(
            {
                **dict(zip(_BY, key, strict=True)),
                "n_cases": len(group),
                "n_trees": n_trees,
                "fraction_correct": float(group["right"].mean()),
                "correct_low": right_low,
                "correct_high": right_high,
                "spearman": rho,
                "spearman_low": rho_low,
                "spearman_high": rho_high,
            }
        )
    return pd.DataFrame(rows)


def recovery(table: pd.DataFrame, stack: str = "trained") -> pd.DataFrame:
    """Per mode, planted depth, depth and level: the median over seeds (and trees) of the Hungarian mean
    cosine divided by its largest value over the depths (so each level peaks at 1 at its best depth) and of
    the clade ARI, for one kind of stack."""
    rows = table[(table["stack"] == stack) & (table["status"] == "trained")]
    out = []
    for (mode, planted), group in rows.groupby(["mode", "true_depth"], sort=True):
        for level in range(1, int(planted) + 1):
            cos = group[f"level{level}_hungarian_mean_cosine"].astype(float)
            normed = cos / cos.groupby([group["dataset"], group["seed"]]).transform("max")
            frame = group.assign(hungarian_normed=normed, clade_ari=group[f"level{level}_clade_ari"])
            for depth, at in frame.groupby("depth", sort=True):
                out.append(
                    {
                        "mode": mode,
                        "planted_depth": int(planted),
                        "depth": int(depth),
                        "level": level,
                        "hungarian": float(at[f"level{level}_hungarian_mean_cosine"].astype(float).median()),
                        "hungarian_normed": float(at["hungarian_normed"].median()),
                        "clade_ari": float(at["clade_ari"].astype(float).median()),
                    }
                )
    return pd.DataFrame(
        out, columns=["mode", "planted_depth", "depth", "level", "hungarian", "hungarian_normed", "clade_ari"]
    )


def recovery_table(table: pd.DataFrame) -> pd.DataFrame:
    """synth_recovery.csv: `recovery` of every kind of stack the study has (trained, Matryoshka, oracle,
    shuffled), `hungarian` being the Hungarian mean cosine over max(m, n) pairs, median over seeds."""
    kinds = [k for k in STACKS if (table["stack"] == k).any()]
    return pd.concat([recovery(table, k).assign(stack=k) for k in kinds], ignore_index=True)[
        ["stack", "mode", "planted_depth", "depth", "level", "hungarian", "hungarian_normed", "clade_ari"]
    ]


STACK_COLOURS = dict(zip(STACKS, ("tab:green", "tab:blue", "tab:grey", "tab:orange"), strict=True))


def _figure(depth_table: pd.DataFrame, path: Path) -> None:
    """Estimated vs planted depth: one panel per criterion and mode, one line per stack (median over cases,
    bootstrap CI as error bars), each stack one colour in every panel, under one legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted(depth_table.groupby(["criterion", "mode"]).groups)
    cols = min(len(panels), 4)
    n_rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.4 * cols, 3.2 * n_rows), squeeze=False, sharey=True)
    top = float(np.nanmax([depth_table["planted_depth"].max(), depth_table["ci_high"].max()]))
    for ax, (criterion, mode) in zip(axes.flat, panels, strict=False):
        rows = depth_table[(depth_table["criterion"] == criterion) & (depth_table["mode"] == mode)]
        for i, stack in enumerate(STACKS):
            g = rows[rows["stack"] == stack]
            if g.empty:
                continue
            x = g["planted_depth"].to_numpy(float) + (i - 1.5) * 0.06
            y = g["estimated_median"].to_numpy(float)
            err = np.nan_to_num([y - g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float) - y])
            ax.errorbar(x, y, yerr=err, marker="o", capsize=2, color=STACK_COLOURS[stack], label=stack)
        ax.plot([0.5, top + 0.5], [0.5, top + 0.5], color="black", linestyle=":", label="estimate = L")
        ax.set(title=f"{criterion}, {mode}", xlabel="planted depth L", ylabel="estimated depth")
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _recovery_figure(table: pd.DataFrame, path: Path) -> None:
    """Heat maps of the trained stacks' recovery (`recovery`): one row per mode and measure (max-normalised
    Hungarian cosine, clade ARI), one column per planted depth; depth down, level across, one colour scale
    (0-1) for every panel. A perfect stack lights the anti-diagonal, depth d at level L - d + 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted(table["mode"].unique()) or [""]
    planted = sorted(table["planted_depth"].unique()) or [1]
    measures = (("hungarian_normed", "Hungarian / max"), ("clade_ari", "clade ARI"))
    n_rows = len(modes) * len(measures)
    fig, axes = plt.subplots(
        n_rows, len(planted), figsize=(2.6 * len(planted), 2.4 * n_rows), squeeze=False, layout="constrained"
    )
    image = None
    for r, (mode, (column, name)) in enumerate((m, x) for m in modes for x in measures):
        for c, depth in enumerate(planted):
            ax = axes[r][c]
            g = table[(table["mode"] == mode) & (table["planted_depth"] == depth)]
            if g.empty:
                ax.axis("off")
                continue
            grid = g.pivot_table(index="depth", columns="level", values=column)
            image = ax.imshow(grid.to_numpy(float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks(range(grid.shape[1]), grid.columns)
            ax.set_yticks(range(grid.shape[0]), grid.index)
            if r == 0:  # the planted depth heads its column, the mode and measure label their row
                ax.set_title(f"planted L = {depth}", fontsize=9)
            if r == n_rows - 1:
                ax.set_xlabel("planted level")
            if c == 0:
                ax.set_ylabel(f"{mode}: {name}\ndepth", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="median over seeds (0-1)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
