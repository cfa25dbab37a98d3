"""Stage `aggregate`: per-depth analyses of every run -> study tables, optimal depths with CIs, claims.

Inputs are the analysis `summary.json` files (their paths encode the run, as DESIGN.md's contracts say:
analysis/{classifier}/seed{seed}/{probe}/{layer}/{sae}/[{mode}/]depth{d}/summary.json), the SAE folders
beside them, and the study config. Output CSVs are sorted and rounded so that reruns give equal bytes.

Statistics that the study's design decides are never evidence (`exclusions`):
- fixed by construction: a TopK SAE keeps exactly k latents per input and a BatchTopK SAE k on average over
  its training inputs, so where such an SAE produces the image codes (depth 1, and every depth in
  `activations` mode) the active-latent statistics (`L0_STATISTICS`) are set by k and the width schedule;
  in `decoder` mode the meta-SAE's L0 (meta-latents per parent row) is set the same way.
- dense routed codes: in `decoder` mode an image's depth-d code is routed through the meta-codes; where more
  than `DENSE_ROUTED_FRACTION` of the dictionary is active per image on average, image-level statistics
  (`IMAGE_STATISTICS`) measure the dictionary size, not the images, and are excluded.
- raw counts of latents are bounded by the dictionary size, which the width schedule changes from depth to
  depth; every count is also given as a fraction of its depth's dictionary (`FRACTIONS`), and only the
  fractions enter optima and verdicts.

A verdict is computed per (model, dataset, layer, sae, mode) group from a statistic, a region the claim
asserts it lies in, and a percentile-bootstrap CI over seeds (seeds resampled with replacement, `N_BOOT`
draws): holds = the CI lies inside the region, fails = the CI lies outside it, inconclusive = the CI
crosses a boundary (or fewer than 2 seeds give the statistic), untested = the statistic is excluded at the
depths the claim needs or the study did not reach them (`basis` says which).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from metasae.errors import MetasaeError
from metasae.groundtruth import cosine_matrix
from metasae.io import atomic_path, git_commit, read_json, stage_output, write_json
from metasae.layout import MANIFEST_FILE, parse_summary_path
from metasae.stack import Depth

STUDY_FILE = "study.json"  # written last
META_STRUCTURE_FILE = "meta_structure.json"  # SAEBench meta_structure entries of decoder-mode meta-SAEs
GROUP = ["model", "dataset", "layer", "sae", "mode"]
SUMMARY_FIELDS = [
    "alive_latents",
    "dead_fraction",
    "purity_mean",
    "purity_median",
    "purity_chance",
    "superclass_purity_mean",
    "superclass_purity_chance",
    "entropy_mean",
    "count_all_top10_nonzero",
    "mean_active_per_image",
    "stack_fvu",
    "spliced_accuracy",
    "clean_accuracy",
    "loss_recovered",
]
SAE_FIELDS = ["fvu", "l0"]
FRACTIONS = {  # fraction of the depth's dictionary -> the raw count it divides
    "alive_fraction": "alive_latents",
    "count_fraction": "count_all_top10_nonzero",
    "mean_active_fraction": "mean_active_per_image",
}
DENSE_ROUTED_FRACTION = (
    0.5  # decoder mode: routed codes with more of the dictionary active per image are dense
)
FIXED_L0 = {  # architectures whose L0 the training fixes, and how
    "topk": "TopK keeps exactly k latents per input",
    "batchtopk": "BatchTopK keeps k latents per input on average over its training inputs",
}
L0_STATISTICS = ("l0", "mean_active_per_image", "mean_active_fraction")
IMAGE_STATISTICS = (  # computed from the image codes of a depth (routed codes in decoder mode)
    "alive_latents",
    "alive_fraction",
    "dead_fraction",
    "purity_mean",
    "purity_median",
    "superclass_purity_mean",
    "entropy_mean",
    "count_all_top10_nonzero",
    "count_fraction",
    "mean_active_per_image",
    "mean_active_fraction",
    "abstraction_gap",
)
EXCLUSION_COLUMNS = ["routed_codes_dense", "fixed_by_construction", "excluded_because"]  # exclusions()'s
FIXED, DENSE = "fixed by construction", "dense routed codes"
MEASURED, NOT_REACHED, NO_VALUE = "measured", "depth not reached", "no value"
VERDICTS = ("holds", "fails", "inconclusive", "untested")
CRITERIA = {  # criterion -> (column, maximise?)
    "max_purity": ("purity_mean", True),
    "max_activation_count": ("count_fraction", True),
    "max_mean_active": ("mean_active_fraction", True),
    "max_stability": ("stability_mean_cosine", True),
}
KNEE_COLUMN = (
    "stack_fvu"  # the knee is found on the layer rebuilt from each depth: the same input at every depth
)
STABLE_COSINE = 0.9  # a latent is reproduced in another seed when its Hungarian match exceeds this
N_BOOT = 2000
CI_LEVEL = 0.95
MIN_SEEDS = 5  # the real study's seeds; CIs over fewer say so
DEPTH2_REGION = (1.5, 2.5)  # "depth 2 is optimal": the CI of the median optimal depth lies within
TREND_REGION = (0.0, math.inf)  # "increases with depth": the Spearman CI lies above 0
COLLAPSE_DEPTH = 7  # the log: all latents dead from depth 6-7
COLLAPSE_REGION = (0.5, math.inf)  # "deep stacks collapse": most seeds' stacks collapse by COLLAPSE_DEPTH
TREND_CLAIMS = [  # (column, the log's claim, the log's own number, what the column is, where it comes from)
    (
        "mean_active_fraction",
        "The average number of activations increases the deeper you go",
        "stated in the log (2024-11-09); its own numbers fall after depth 2 (EMNIST L0 0.4, 18.4, 3.1, 0.3)",
        "mean active latents per image / dictionary size",
        "trained depths of each seed where the statistic is neither fixed by construction nor on dense codes",
    ),
    (
        "purity_mean",
        "Latents become more atomic (purer in label) the deeper the stack goes",
        "the log's hypothesis; its own purity fell: Fashion-MNIST 6.60/10 at depth 1, 5.21 at depth 2",
        "mean label purity of alive latents",
        "top-10 label purity from latents.parquet, at depths whose image codes are sparse",
    ),
]
TAXONOMY_CLAIM = (  # only where the probe's labels have superclasses (metasae/taxonomy.py)
    "abstraction_gap",
    "Deeper meta-latents are more abstract: purer by superclass than by class",
    "not in the log: a test on a real label taxonomy (Fashion-MNIST's tops, footwear, Trouser, Bag)",
    "superclass purity lift minus class purity lift, each above its chance floor",
    "lift = (purity - chance) / (1 - chance), chance = the purity of random top images; sparse depths only",
)
RULES = {  # written into study.json so the report states the rules the tables were made with
    "dense_routed_fraction": DENSE_ROUTED_FRACTION,
    "fixed_l0": FIXED_L0,
    "stable_cosine": STABLE_COSINE,
    "n_boot": N_BOOT,
    "ci_level": CI_LEVEL,
    "min_seeds": MIN_SEEDS,
    "depth2_region": list(DEPTH2_REGION),
    "trend_region": [TREND_REGION[0], None],
    "collapse_depth": COLLAPSE_DEPTH,
    "collapse_region": [COLLAPSE_REGION[0], None],
    "knee_column": KNEE_COLUMN,
    "image_statistics": list(IMAGE_STATISTICS),
}


def depth_rows(summary_paths: list[str | Path], config: dict) -> pd.DataFrame:
    """One row per (run, mode, depth); depth 1, shared by the modes, is repeated under each mode."""
    modes = list(config["meta"]["modes"])
    rows, folders = [], {}
    for path in summary_paths:
        where = parse_summary_path(path)
        summary = read_json(path)
        folder = Depth.load(Path(str(path).replace("/analysis/", "/sae/")).parent)
        sae_metrics = folder.metrics
        folders[tuple(where[k] for k in (*GROUP, "seed", "depth"))] = folder
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
            **lineage_statistics(folder),
        }
        for mode in [where["mode"]] if where["mode"] else modes:
            rows.append({**base, "mode": mode})
    if not rows:
        raise MetasaeError("aggregate: no analysis summaries given")
    table = derived_columns(pd.DataFrame(rows))
    table = table.merge(stability(folders, modes), on=[*GROUP, "seed", "depth"], how="left")
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
        *FRACTIONS,
        "abstraction_gap",
        *STABILITY_COLUMNS,
        *LINEAGE_COLUMNS,
        "routed_codes_dense",
        "fixed_by_construction",
        "excluded_because",
    ]
    return (
        table[order]
        .sort_values(["model", "dataset", "layer", "sae", "mode", "seed", "depth"])
        .reset_index(drop=True)
    )


STABILITY_COLUMNS = ("stability_mean_cosine", "stability_fraction_matched", "stability_basis")
LINEAGE_COLUMNS = (
    "decoder_fve",
    "parents_per_meta_latent",
    "meta_latents_per_parent",
    "parents_decomposed_fraction",
)


def lineage_statistics(folder: Depth) -> dict:
    """Latent-level statistics of a meta-SAE (depth >= 2): the fraction of variance of its parent's
    unit-normed decoder rows it explains (decoder mode: its metrics.json FVU is measured on those rows, so
    this is SAEBench's meta_structure number), parents per alive meta-latent and meta-latents per
    decomposed parent (from the lineage), and the share of parent latents it decomposes at all."""
    out: dict = dict.fromkeys(LINEAGE_COLUMNS)
    if folder.stopped or folder.depth < 2:
        return out
    metrics = folder.metrics
    if folder.mode == "decoder" and metrics.get("fvu") is not None:
        out["decoder_fve"] = 1 - float(metrics["fvu"])
    lineage = folder.lineage
    if lineage is not None and len(lineage):
        out["parents_per_meta_latent"] = float(lineage.groupby("meta_latent").size().mean())
        out["meta_latents_per_parent"] = float(lineage.groupby("parent_latent").size().mean())
    if metrics.get("parent_d_sae"):
        out["parents_decomposed_fraction"] = (
            metrics.get("parent_latents_decomposed", 0) / metrics["parent_d_sae"]
        )
    return out


def derived_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Explained variance, every count as a fraction of its depth's dictionary, and the exclusions."""
    table = table.copy()
    table["explained_variance"] = 1 - pd.to_numeric(table["fvu"], errors="coerce")
    size = pd.to_numeric(table["d_sae"], errors="coerce").where(lambda d: d > 0)
    for fraction, count in FRACTIONS.items():
        table[fraction] = pd.to_numeric(table[count], errors="coerce") / size
    table["abstraction_gap"] = abstraction_gap(table)
    # derived anew from the raw columns, so a table whose raw values were edited can be passed again
    return pd.concat([table.drop(columns=EXCLUSION_COLUMNS, errors="ignore"), exclusions(table)], axis=1)


def abstraction_gap(table: pd.DataFrame) -> pd.Series:
    """Superclass purity's lift above its chance floor minus class purity's, each as (p - chance) /
    (1 - chance): 0 when latents are as pure by superclass as by class, 1 when they are pure by superclass and
    no purer than chance by class. NaN without a taxonomy (digits)."""

    def lift(purity: str, chance: str) -> pd.Series:
        if purity not in table or chance not in table:
            return pd.Series(math.nan, index=table.index)
        p, c = (pd.to_numeric(table[k], errors="coerce") for k in (purity, chance))
        return (p - c) / (1 - c)

    return lift("superclass_purity_mean", "superclass_purity_chance") - lift("purity_mean", "purity_chance")


def exclusions(table: pd.DataFrame) -> pd.DataFrame:
    """Per depth row: whether decoder-mode routed codes are dense, which statistics the architecture fixes
    (space-separated names) and why, in words (see the module docstring)."""
    out = []
    for row in table.itertuples(index=False):
        fixed: list[str] = []
        why: list[str] = []
        dense = False
        how = FIXED_L0.get(row.architecture)
        if row.status == "trained":
            if row.mode == "decoder" and row.depth >= 2:
                if how:
                    fixed += ["l0", "meta_latents_per_parent"]
                    why.append(f"{how}: meta-latents per parent row")
                share = row.mean_active_fraction
                if share is not None and not math.isnan(share) and share > DENSE_ROUTED_FRACTION:
                    dense = True
                    why.append(
                        f"routed codes dense: {row.mean_active_per_image:.3g} of {row.d_sae} latents "
                        f"active per image ({share:.0%} > {DENSE_ROUTED_FRACTION:.0%})"
                    )
            elif how:
                fixed += [*L0_STATISTICS, *(["meta_latents_per_parent"] if row.depth >= 2 else [])]
                why.append(f"{how}: active latents per image")
        out.append((dense, " ".join(fixed), "; ".join(why)))
    return pd.DataFrame(out, columns=EXCLUSION_COLUMNS, index=table.index)


def excluded_as(row: pd.Series, column: str) -> str | None:
    """Why `column` of a trained depth row must not be used (FIXED or DENSE), or None. Stability matched on
    code columns is image-level too: dense columns all follow the data's main directions."""
    if column in str(row.get("fixed_by_construction") or "").split():
        return FIXED
    if bool(row.get("routed_codes_dense")) and (
        column in IMAGE_STATISTICS or (column in STABILITY_COLUMNS and row.get("stability_basis") == "codes")
    ):
        return DENSE
    return None


@dataclass(frozen=True)
class CodeColumns:
    """A seed's alive latents as columns of its codes over the probe images, correlated with another seed's
    without densifying sparse codes: corr = (X^T Y - n mu_x mu_y^T) / (|x - mu_x| |y - mu_y|^T), the cosine
    of the centred columns (a TopK code of 16 in 2304 latents multiplies 16 x 16 pairs per image)."""

    columns: scipy.sparse.csc_matrix  # [n_images, alive latents]
    mean: np.ndarray
    norm: np.ndarray  # of the centred columns

    @classmethod
    def of(cls, codes: torch.Tensor, alive: torch.Tensor) -> CodeColumns:
        rows, cols = codes.indices().numpy()
        matrix = scipy.sparse.csc_matrix(
            (codes.values().double().numpy(), (rows, cols)), shape=tuple(codes.shape)
        )[:, alive.numpy()]
        n = matrix.shape[0]
        mean = np.asarray(matrix.mean(axis=0)).ravel()
        sumsq = np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel()
        spread = sumsq - n * mean * mean  # a constant column leaves rounding noise: it is 0
        return cls(matrix, mean, np.sqrt(np.where(spread > 1e-12 * sumsq, spread, 0.0)))

    def __len__(self) -> int:
        return self.columns.shape[1]

    def correlation(self, other: CodeColumns) -> np.ndarray:
        """[m, n] Pearson correlations of this seed's latents with the other's (constant columns give 0)."""
        x, y = self.columns, other.columns
        dense = max(x.nnz / max(x.shape[0] * x.shape[1], 1), y.nnz / max(y.shape[0] * y.shape[1], 1)) > 0.05
        gram = x.toarray().T @ y.toarray() if dense else (x.T @ y).toarray()
        centred = gram - x.shape[0] * np.outer(self.mean, other.mean)
        scale = np.outer(self.norm, other.norm)
        return np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 0)


def similarity(a: torch.Tensor | CodeColumns, b: torch.Tensor | CodeColumns) -> np.ndarray:
    """[m, n] signed cosines of rows (decoder rows), or correlations of code columns."""
    if isinstance(a, CodeColumns) and isinstance(b, CodeColumns):
        return a.correlation(b)
    return cosine_matrix(a, b).numpy()


def matched_similarity(
    a: torch.Tensor | CodeColumns, b: torch.Tensor | CodeColumns, threshold: float = STABLE_COSINE
) -> tuple[float, float]:
    """Hungarian one-to-one matching of the latents of a and b by signed similarity: (mean similarity over
    the min(m, n) matched pairs, share of those pairs above `threshold`); NaN where either has no latents."""
    if not len(a) or not len(b):
        return math.nan, math.nan
    score = similarity(a, b)
    rows, cols = linear_sum_assignment(score, maximize=True)
    matched = score[rows, cols]
    return float(matched.mean()), float((matched > threshold).mean())


def seed_stability(matrices: dict[int, torch.Tensor | CodeColumns]) -> dict[int, tuple[float, float]]:
    """Each seed's (mean matched cosine, share matched above STABLE_COSINE), averaged over its matchings with
    every other seed."""
    pairs = {
        (s, t): matched_similarity(matrices[s], matrices[t]) for s in matrices for t in matrices if s < t
    }
    out = {}
    for seed in matrices:
        mine = np.array([v for (s, t), v in pairs.items() if seed in (s, t)], dtype=float)
        out[seed] = (
            (float(np.nanmean(mine[:, 0])), float(np.nanmean(mine[:, 1])))
            if len(mine)
            else (
                math.nan,
                math.nan,
            )
        )
    return out


def stability_inputs(seeds: dict[int, Depth]) -> tuple[str, dict[int, torch.Tensor | CodeColumns]]:
    """What the seeds' latents are matched on, and each seed's alive latents as rows.

    Decoder rows where every seed's rows live in one space: depth 1 or decoder mode, over one activation
    cache's source model. Otherwise (each seed its own classifier, or activations mode, whose rows live in
    the parent's latent space) the latents' code columns over the probe images, centred, so that their cosine
    is the Pearson correlation of the latents' activations on the same images.
    """
    folders = list(seeds.values())
    sources = {read_json(f.acts_dir / MANIFEST_FILE).get("source_model") for f in folders}
    alive = {
        s: torch.bincount(f.codes.indices()[1], minlength=f.codes.shape[1]) > 0 for s, f in seeds.items()
    }
    if len(sources) == 1 and all(f.mode in ("base", "decoder") for f in folders):
        return "decoder rows", {s: f.sae.W_dec.detach()[alive[s]] for s, f in seeds.items()}
    if len({f.codes.shape[0] for f in folders}) != 1:
        raise MetasaeError(
            "stability: the seeds' codes cover different numbers of probe images: "
            + ", ".join(f"{f.path} ({f.codes.shape[0]})" for f in folders)
        )
    return "codes", {s: CodeColumns.of(f.codes.coalesce(), alive[s]) for s, f in seeds.items()}


def stability(folders: dict[tuple, Depth], modes: list[str]) -> pd.DataFrame:
    """Cross-seed stability of every (run, mode, depth) that two or more seeds trained: one row per seed."""
    by_depth: dict[tuple, dict[int, Depth]] = {}
    for (*group, seed, depth), folder in folders.items():
        if not folder.stopped:
            by_depth.setdefault((*group, depth), {})[seed] = folder
    rows = []
    for (*group, depth), seeds in sorted(by_depth.items(), key=lambda kv: str(kv[0])):
        if len(seeds) < 2:
            continue
        basis, matrices = stability_inputs(seeds)
        for folder in seeds.values():  # this group's codes are done with: free them (peak RSS, issue 17)
            folder.__dict__.pop("codes", None)
        for seed, (mean_cosine, matched) in seed_stability(matrices).items():
            for mode in [group[-1]] if group[-1] else modes:
                rows.append(
                    {
                        **dict(zip(GROUP, [*group[:-1], mode], strict=True)),
                        "seed": seed,
                        "depth": depth,
                        "stability_mean_cosine": mean_cosine,
                        "stability_fraction_matched": matched,
                        "stability_basis": basis,
                    }
                )
    return pd.DataFrame(rows, columns=[*GROUP, "seed", "depth", *STABILITY_COLUMNS])


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


def usable(group: pd.DataFrame, column: str) -> tuple[pd.DataFrame, dict[int, str]]:
    """The trained rows of a group whose `column` has a value and may be used, and for each trained depth
    with a row left out, why (FIXED, DENSE or NO_VALUE; the first seen)."""
    trained = group[group["status"] == "trained"]
    keep, why = [], {}
    for index, row in trained.iterrows():
        reason = excluded_as(row, column) or (NO_VALUE if pd.isna(row.get(column)) else None)
        if reason:
            why.setdefault(int(row["depth"]), reason)
        else:
            keep.append(index)
    return trained.loc[keep], why


def basis(group: pd.DataFrame, column: str, needed: set[int] | None = None, min_depths: int = 2) -> str:
    """MEASURED where the usable rows cover the `needed` depths (or `min_depths` distinct depths); otherwise
    why not: NOT_REACHED where the study trained too few of those depths, else the exclusion that removed
    them (FIXED before DENSE before NO_VALUE)."""
    rows, why = usable(group, column)
    got = set(rows["depth"].astype(int))
    reached = set(group.loc[group["status"] == "trained", "depth"].astype(int))
    if (needed <= got) if needed else len(got) >= min_depths:
        return MEASURED
    if (not needed <= reached) if needed else len(reached) < min_depths:
        return NOT_REACHED
    kinds = set(why.values())
    return next((kind for kind in (FIXED, DENSE, NO_VALUE) if kind in kinds), NOT_REACHED)


def _per_seed_optima(rows: pd.DataFrame, criterion: str) -> list[int]:
    """Each seed's optimal depth over the given (usable) rows."""
    optima = []
    for _, seed_rows in rows.groupby("seed"):
        live = seed_rows.sort_values("depth")
        if criterion == "fvu_knee":
            optima.append(knee_depth(live["depth"].to_numpy(), live[KNEE_COLUMN].astype(float).to_numpy()))
        else:
            column, _ = CRITERIA[criterion]
            values = live[column].astype(float).to_numpy()
            if np.isnan(values).all():
                continue
            optima.append(int(live["depth"].to_numpy()[np.nanargmax(values)]))
    return optima


def bootstrap_median_ci(values: list[int], seed: int = 0, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap CI of the median over seeds (degenerate with one seed: both ends = the value)."""
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(arr, size=(N_BOOT, len(arr)), replace=True), axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties): NaN when x takes one value, 0 when y does (no
    monotone association)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < 2:
        return math.nan
    if len(np.unique(y)) < 2:
        return 0.0
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def seed_spearman(per_seed: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float, int]:
    """The trend of a statistic with depth: Spearman's correlation within each seed's stack (seeds differ in
    level, so pooling them would mix level with trend), averaged over seeds, with a percentile-bootstrap CI
    of that mean over seeds. Returns (mean, CI low, CI high, seeds with a defined correlation)."""
    rhos = [r for depths, values in per_seed if not math.isnan(r := spearman(depths, values))]
    if not rhos:
        return math.nan, math.nan, math.nan, 0
    return (float(np.mean(rhos)), *bootstrap_mean_ci(rhos), len(rhos))


def bootstrap_mean_ci(values: list[float], seed: int = 0, level: float = CI_LEVEL) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    means = np.random.default_rng(seed).choice(arr, size=(N_BOOT, len(arr)), replace=True).mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def interval_verdict(low: float, high: float, region: tuple[float, float], n_seeds: int) -> str:
    """holds: the CI [low, high] lies inside the open region; fails: it lies outside; inconclusive: it crosses
    a boundary, or fewer than 2 seeds give the statistic (a CI over one seed says nothing)."""
    a, b = region
    if n_seeds < 2 or math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > a and high < b:
        return "holds"
    if high <= a or low >= b:
        return "fails"
    return "inconclusive"


def _depth_list(depths: pd.Series) -> str:
    return " ".join(str(d) for d in sorted(set(depths.astype(int))))


def _excluded(group: pd.DataFrame, column: str) -> str:
    """The depths of a group where `column` is excluded, and why (one phrase per reason)."""
    trained = group[group["status"] == "trained"]
    reasons: dict[str, set[int]] = {}
    for _, row in trained.iterrows():
        kind = excluded_as(row, column)
        if kind:
            reasons.setdefault(kind, set()).add(int(row["depth"]))
    return "; ".join(
        f"{kind} at depth {' '.join(map(str, sorted(d)))}" for kind, d in sorted(reasons.items())
    )


def optimal_depths(depths: pd.DataFrame) -> pd.DataFrame:
    """Per group and criterion: each seed's optimal depth over the depths where the criterion's statistic
    may be used, their median, a bootstrap CI over seeds, and the verdict on the log's "depth 2 is optimal"
    (region DEPTH2_REGION; untested unless depths 1-3 are usable)."""
    rows = []
    for key, group in depths.groupby(GROUP, sort=True):
        for criterion in [*CRITERIA, "fvu_knee"]:
            column = KNEE_COLUMN if criterion == "fvu_knee" else CRITERIA[criterion][0]
            how = basis(group, column, min_depths=3 if criterion == "fvu_knee" else 2)
            used, _ = usable(group, column)
            optima = _per_seed_optima(used, criterion) if how == MEASURED else []
            lo, hi = bootstrap_median_ci(optima) if optima else (math.nan, math.nan)
            depth2 = (
                interval_verdict(lo, hi, DEPTH2_REGION, len(optima))
                if optima and basis(group, column, needed={1, 2, 3}) == MEASURED
                else "untested"
            )
            rows.append(
                {
                    **dict(zip(GROUP, key, strict=True)),
                    "architecture": _stack_architecture(group),
                    "criterion": criterion,
                    "column": column,
                    "optimal_depth": float(np.median(optima)) if optima else math.nan,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_seeds": len(optima),
                    "per_seed": " ".join(map(str, optima)),
                    "depths_used": _depth_list(used["depth"]) if how == MEASURED else "",
                    "basis": how,
                    "excluded": _excluded(group, column),
                    "log_claim_depth2": depth2,
                    "log_claim_depth2_holds": depth2 == "holds",
                }
            )
    return pd.DataFrame(rows)


def _stack_architecture(group: pd.DataFrame) -> str:
    """e.g. 'topk>batchtopk': depth 1's architecture, then the meta-SAEs'."""
    ordered = group.sort_values("depth").drop_duplicates("architecture")["architecture"]
    return ">".join(ordered)


def _seeds_note(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}" + (
        f" (fewer than the {MIN_SEEDS} of a real study)" if n < MIN_SEEDS else ""
    )


def _ci_text(estimate: float, lo: float, hi: float, n: int) -> str:
    return f"{estimate:.3g}, {CI_LEVEL:.0%} CI [{lo:.3g}, {hi:.3g}] over {_seeds_note(n)}"


CLAIM_COLUMNS = [
    "claim",
    *GROUP,
    "architecture",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "n_seeds",
    "region",
    "verdict",
    "basis",
    "depths_used",
    "excluded",
    "log_value",
    "our_value",
    "note",
]


def _depth2_claim(group: pd.DataFrame) -> dict:
    column = CRITERIA["max_activation_count"][0]
    how = basis(group, column, needed={1, 2, 3})
    used, _ = usable(group, column)
    optima = _per_seed_optima(used, "max_activation_count") if how == MEASURED else []
    lo, hi = bootstrap_median_ci(optima) if optima else (math.nan, math.nan)
    estimate = float(np.median(optima)) if optima else math.nan
    return {
        "claim": (
            "Depth 2 is optimal for the most activations (latents whose top-10 activations are all non-zero)"
        ),
        "statistic": "median over seeds of the depth maximising count_fraction",
        "estimate": estimate,
        "ci_low": lo,
        "ci_high": hi,
        "n_seeds": len(optima),
        "region": f"the CI lies within ({DEPTH2_REGION[0]:g}, {DEPTH2_REGION[1]:g})",
        "verdict": interval_verdict(lo, hi, DEPTH2_REGION, len(optima)) if how == MEASURED else "untested",
        "basis": how,
        "depths_used": _depth_list(used["depth"]) if how == MEASURED else "",
        "excluded": _excluded(group, column),
        "log_value": "depth 2 (EMNIST 2304/2304, Fashion-MNIST 2304/2304 latents at depth 2)",
        "our_value": (
            f"optimal depth {_ci_text(estimate, lo, hi, len(optima))}; per seed {' '.join(map(str, optima))}"
            if optima
            else f"not measured: {how}"
        ),
        "note": "count as a fraction of the dictionary (widths change with depth); needs depths 1-3 usable",
    }


def _trend_claim(group: pd.DataFrame, column: str, claim: str, log_value: str, what: str, note: str) -> dict:
    how = basis(group, column, min_depths=2)
    used, _ = usable(group, column)
    shown = used if how == MEASURED else group[(group["status"] == "trained") & group[column].notna()]
    per_seed = [
        (g["depth"].to_numpy(float), g[column].to_numpy(float)) for _, g in shown.groupby("seed") if len(g)
    ]
    estimate, lo, hi, n = seed_spearman(per_seed)
    if how == MEASURED:
        ours = f"mean Spearman(depth, {what}) = {_ci_text(estimate, lo, hi, n)}"
    elif n:
        ours = f"mean Spearman(depth, {what}) = {estimate:.3g} over all trained depths; not evidence: {how}"
    else:
        ours = f"not measured: {how}"
    return {
        "claim": claim,
        "statistic": f"mean over seeds of Spearman(depth, {column})",
        "estimate": estimate,
        "ci_low": lo,
        "ci_high": hi,
        "n_seeds": n,
        "region": "the CI lies above 0",
        "verdict": interval_verdict(lo, hi, TREND_REGION, n) if how == MEASURED else "untested",
        "basis": how,
        "depths_used": _depth_list(used["depth"]) if how == MEASURED else "",
        "excluded": _excluded(group, column),
        "log_value": log_value,
        "our_value": ours,
        "note": note,
    }


def _collapse_outcome(seed_rows: pd.DataFrame) -> float | None:
    """1.0 if a seed's stack collapsed (all latents dead, or stopped for too few alive latents) by
    COLLAPSE_DEPTH, 0.0 if COLLAPSE_DEPTH trained alive, None if the stack ended earlier for another
    reason."""
    early = seed_rows[seed_rows["depth"] <= COLLAPSE_DEPTH]
    reasons = early["stop_reason"].fillna("").astype(str)
    if ((early["status"] == "collapsed") | reasons.str.contains("alive latents")).any():
        return 1.0
    if ((early["depth"] == COLLAPSE_DEPTH) & (early["status"] == "trained")).any():
        return 0.0
    return None


def _collapse_claim(group: pd.DataFrame) -> dict:
    outcomes = [o for _, g in group.groupby("seed") if (o := _collapse_outcome(g)) is not None]
    how = MEASURED if outcomes else NOT_REACHED
    estimate = float(np.mean(outcomes)) if outcomes else math.nan
    lo, hi = bootstrap_mean_ci(outcomes) if outcomes else (math.nan, math.nan)
    deepest = (
        int(group.loc[group["status"] == "trained", "depth"].max())
        if (group["status"] == "trained").any()
        else 0
    )
    return {
        "claim": "Deep stacks collapse: codes go dead (loss 3.6e-44 at depths 7-10 in the log)",
        "statistic": f"share of seeds whose stack collapsed by depth {COLLAPSE_DEPTH}",
        "estimate": estimate,
        "ci_low": lo,
        "ci_high": hi,
        "n_seeds": len(outcomes),
        "region": f"the CI lies above {COLLAPSE_REGION[0]:g}",
        "verdict": interval_verdict(lo, hi, COLLAPSE_REGION, len(outcomes)) if outcomes else "untested",
        "basis": how,
        "depths_used": _depth_list(group["depth"]) if outcomes else "",
        "excluded": "",
        "log_value": "all latents dead from depth 6-7 (ReLU, L1 summed over the batch)",
        "our_value": (
            f"collapsed share {_ci_text(estimate, lo, hi, len(outcomes))}"
            if outcomes
            else f"no stack reached depth {COLLAPSE_DEPTH} or collapsed before it (deepest: {deepest})"
        ),
        "note": "collapse = all latents dead, or the stop rule min_alive fired; stop reasons in depths.csv",
    }


def claims(depths: pd.DataFrame) -> pd.DataFrame:
    """The research log's claims, one row per claim and (model, dataset, layer, sae, mode) group: the log's
    number, ours with its CI over seeds, and a verdict by the rule in the module docstring."""
    out = []
    for key, group in depths.groupby(GROUP, sort=True):
        ident = {**dict(zip(GROUP, key, strict=True)), "architecture": _stack_architecture(group)}
        out.append({**ident, **_depth2_claim(group)})
        taxonomy = [TAXONOMY_CLAIM] if group["abstraction_gap"].notna().any() else []
        for column, claim, log_value, what, note in TREND_CLAIMS + taxonomy:
            out.append({**ident, **_trend_claim(group, column, claim, log_value, what, note)})
        out.append({**ident, **_collapse_claim(group)})
    return pd.DataFrame(out, columns=CLAIM_COLUMNS)


SAEBENCH_EVAL_TYPE = "meta_structure_decoder_variance"  # sae_bench/evals/meta_structure/eval_output.py
SAEBENCH_REFERENCE = {  # the number the issue cites for SAEBench's meta_structure eval
    "decoder_fraction_variance_explained": 0.2434,
    "model": "Pythia-70M",
    "settings": "BatchTopK meta-SAE, k=4, width 0.25 x d_sae, 1500 steps of 1024 rows, lr 5e-4",
}


def meta_structure(summary_paths: list[str | Path], config: dict) -> dict:
    """SAEBench's meta_structure eval for every decoder-mode meta-SAE, one entry per (run, depth d >= 2) in
    the shape of SAEBench's MetaStructureEvalOutput: depth d is the meta-SAE of depth d-1, and its decoder
    FVE is 1 - the FVU in its metrics.json (measured on depth d-1's unit-normed decoder rows, about their
    mean, as SAEBench measures). SAEBench's MSE is per element, ours per row: it is divided by d_in here.
    Fields SAEBench fills from its own environment (uuid, versions, train time) are null."""
    spec = config["meta"]["modes"].get("decoder", {})
    entries = []
    for path in sorted(map(str, summary_paths)):
        where = parse_summary_path(path)
        if where["mode"] != "decoder" or where["depth"] < 2:
            continue
        folder = Depth.load(Path(path.replace("/analysis/", "/sae/")).parent)
        if folder.stopped or folder.metrics.get("fvu") is None:
            continue
        run = f"{where['model']}/seed{where['seed']}/{where['dataset']}/{where['layer']}/{where['sae']}"
        parent = f"{'' if where['depth'] == 2 else 'decoder/'}depth{where['depth'] - 1}"
        d_in = int(folder.cfg.get("d_in") or folder.cfg.get("sae_cfg", {}).get("d_in") or 0)
        created = folder.cfg.get("provenance", {}).get("created_utc")
        entries.append(
            {
                "eval_type_id": SAEBENCH_EVAL_TYPE,
                "eval_config": {
                    "random_seed": where["seed"],
                    "width_ratio": (spec.get("width") or {}).get("factor"),
                    "k": spec.get("k"),
                    "train_steps": folder.cfg.get("steps"),
                    "train_batch_size": spec.get("batch_size"),
                    "learning_rate": spec.get("lr"),
                    "weight_decay": 0.0,
                    "autocast": bool(spec.get("autocast")),
                    "dtype": "float32",
                    "architecture": spec.get("architecture"),
                },
                "eval_id": f"{run}/decoder/depth{where['depth']}",
                "datetime_epoch_millis": (int(pd.Timestamp(created).timestamp() * 1000) if created else None),
                "eval_result_metrics": {
                    "meta_structure": {
                        "decoder_fraction_variance_explained": 1 - float(folder.metrics["fvu"]),
                        "train_time_seconds": None,
                        "final_reconstruction_mse": (
                            float(folder.metrics["mse"]) / d_in if d_in and "mse" in folder.metrics else None
                        ),
                    }
                },
                "eval_result_details": [],
                "sae_bench_commit_hash": None,
                "sae_lens_id": f"{run}/{parent}",
                "sae_lens_release_id": "metasae",
                "sae_lens_version": None,
                "sae_cfg_dict": {
                    "d_in": d_in,
                    "d_sae": folder.metrics.get("parent_d_sae"),
                    "meta_d_sae": folder.metrics.get("d_sae"),
                    "depth": where["depth"] - 1,
                    "dataset": where["dataset"],
                },
            }
        )
    return {"reference": SAEBENCH_REFERENCE, "results": entries}


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


@stage_output(STUDY_FILE)
def aggregate(summary_paths: list[str | Path], config: dict, out_dir: str | Path) -> dict[str, pd.DataFrame]:
    from metasae.figures.summary import plot_metrics_vs_depth

    out_dir = Path(out_dir)
    depths = depth_rows(summary_paths, config)
    optimal = optimal_depths(depths)
    claim_table = claims(depths)
    _write_csv(depths, out_dir / "depths.csv")
    _write_csv(optimal, out_dir / "optimal_depth.csv")
    _write_csv(claim_table, out_dir / "claims.csv")
    write_json(out_dir / META_STRUCTURE_FILE, meta_structure(summary_paths, config))
    plot_metrics_vs_depth(_blank_dense(depths), out_dir / "figures")
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
            "rules": RULES,
            "git_commit": git_commit(),
        },
    )
    return {"depths": depths, "optimal_depth": optimal, "claims": claim_table}


def _blank_dense(depths: pd.DataFrame) -> pd.DataFrame:
    """The table the figures draw: image-level statistics of dense routed codes blanked (they measure the
    dictionary size, not the images); values fixed by construction are drawn (they are what the SAE did)."""
    out = depths.copy()
    dense = out["routed_codes_dense"].astype(bool)
    for column in IMAGE_STATISTICS:
        if column in out:
            out[column] = out[column].astype(float).where(~dense)
    on_codes = dense & (out["stability_basis"] == "codes")
    for column in ("stability_mean_cosine", "stability_fraction_matched"):
        out[column] = out[column].astype(float).where(~on_codes)
    return out


def _datasets(depths: pd.DataFrame) -> list[dict]:
    seen = depths.drop_duplicates("dataset")
    return [{"name": r.dataset, "ref": r.dataset_ref, "is_real": bool(r.is_real)} for r in seen.itertuples()]
