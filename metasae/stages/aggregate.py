"""Stage `aggregate`: per-depth analyses of every run -> study tables, optimal depths with CIs, claims.

Inputs are the analysis `summary.json` files (their paths encode the run, as DESIGN.md's contracts say:
analysis/{classifier}/seed{seed}/{probe}/{layer}/{sae}/[{mode}/]depth{d}/summary.json, `{sae}` a run SAE name:
metasae.study.run_sae_name), the SAE folders beside them, and the study config. Each stack depth is set beside
its width-matched control (`role`: stack | control); stability is measured across classifier seeds
(`stability_*`) and, on one classifier, across SAE seeds (`stability_sae_*`); optima and claims are taken
over the stacks alone. Output CSVs are sorted and rounded so that reruns give equal bytes.
The statistics, and the rules they follow (exclusions, optima, verdicts), are `metasae.statistics`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metasae.errors import MetasaeError
from metasae.io import atomic_path, git_commit, read_json, stage_output, write_json
from metasae.layout import parse_summary_path
from metasae.stack import Depth
from metasae.statistics.claims import claims
from metasae.statistics.columns import CONTROL_COLUMNS, FRACTIONS, control_columns, derived_columns
from metasae.statistics.exclusions import EXCLUSION_COLUMNS, blank_dense
from metasae.statistics.groups import GROUP, claim_replicates
from metasae.statistics.lineage import LINEAGE_COLUMNS, lineage_statistics
from metasae.statistics.meta_structure import meta_structure
from metasae.statistics.optimal import optimal_depths
from metasae.statistics.rules import RULES
from metasae.statistics.seed_stability import STABILITY_COLUMNS, stability
from metasae.study import fit_ref, parse_run_sae, probe_ref, run_sae_name

STUDY_FILE = "study.json"  # written last
META_STRUCTURE_FILE = "meta_structure.json"  # SAEBench meta_structure entries of decoder-mode meta-SAEs
SUMMARY_FIELDS = [
    "alive_latents",
    "dead_fraction",
    "purity_mean",
    "purity_median",
    "purity_chance",
    "rated_latents",
    "rare_latents",
    "purity_rated_mean",
    "purity_rated_chance",
    "superclass_purity_mean",
    "superclass_purity_chance",
    "entropy_mean",
    "count_all_top10_nonzero",
    "mean_active_per_image",
    "stack_fvu",
    "spliced_accuracy",
    "clean_accuracy",
    "loss_recovered",
    "effective_rank",
    "labels_shuffled",
    "meta_gain",
    "meta_gain_z",
]
SAE_FIELDS = ["fvu", "l0"]
RUN_FIELDS = ["sae_config", "sae_seed", "role"]  # what the run SAE name says (metasae.study.parse_run_sae)
SAE_SEED_STABILITY = [f"stability_sae_{c.removeprefix('stability_')}" for c in STABILITY_COLUMNS]


def depth_rows(summary_paths: list[str | Path], config: dict) -> pd.DataFrame:
    """One row per (run, mode, depth); depth 1, shared by the modes, is repeated under each mode."""
    modes = list(config["meta"]["modes"])
    rows, folders, sae_seeds = [], {}, {}
    for path in summary_paths:
        where = parse_summary_path(path)
        run_sae = parse_run_sae(where["sae"])
        summary = read_json(path)
        folder = Depth.load(Path(str(path).replace("/analysis/", "/sae/")).parent)
        sae_metrics = folder.metrics
        folders[tuple(where[k] for k in (*GROUP, "seed", "depth"))] = folder
        stem = run_sae_name(run_sae.sae, run_sae.control_width)  # the stack its SAE seeds replicate
        group = [stem if k == "sae" else where[k] for k in GROUP]
        sae_seeds[(*group, where["seed"], run_sae.sae_seed, where["depth"])] = folder
        base = {
            **{k: where[k] for k in ("model", "dataset", "layer", "sae", "seed", "depth")},
            "sae_config": run_sae.sae,
            "sae_seed": run_sae.sae_seed,
            "role": run_sae.role,
            "train_dataset": config["classifiers"][where["model"]]["train"],
            "dataset_ref": probe_ref(config, where["dataset"]),
            "fit_ref": fit_ref(config, where["dataset"]),
            "architecture": _architecture(config, where),
            "status": sae_metrics.get("status", "trained")
            if summary.get("status") != "collapsed"
            else "collapsed",
            "stop_reason": sae_metrics.get("stop_reason"),
            "codes_used": summary.get("codes_used"),
            "width": sae_metrics.get("width"),
            "is_real": summary.get("dataset_is_real", False),
            **{k: summary.get(k) for k in SUMMARY_FIELDS},
            **{k: sae_metrics.get(k) for k in SAE_FIELDS},
            **lineage_statistics(folder),
        }
        for mode in [where["mode"]] if where["mode"] else modes:
            rows.append({**base, "mode": mode})
    if not rows:
        raise MetasaeError("aggregate: no analysis summaries given")
    table = control_columns(derived_columns(pd.DataFrame(rows)))
    table = table.merge(stability(folders, modes), on=[*GROUP, "seed", "depth"], how="left")
    by_sae_seed = _sae_seed_stability(sae_seeds, modes)
    table = table.merge(by_sae_seed, on=[*GROUP, "seed", "sae_seed", "depth"], how="left")
    order = [
        "model",
        "train_dataset",
        "dataset",
        "dataset_ref",
        "fit_ref",
        "layer",
        "sae",
        *RUN_FIELDS,
        "mode",
        "architecture",
        "seed",
        "depth",
        "status",
        "stop_reason",
        "width",
        "is_real",
        "fvu",
        "explained_variance",
        "stack_fvu",
        "l0",
        *[f for f in SUMMARY_FIELDS if f != "stack_fvu"],
        *FRACTIONS,
        "purity_lift",
        "abstraction_gap",
        *CONTROL_COLUMNS,
        *STABILITY_COLUMNS,
        *SAE_SEED_STABILITY,
        *LINEAGE_COLUMNS,
        *EXCLUSION_COLUMNS,
    ]
    return (
        table[order]
        .sort_values(["model", "dataset", "layer", "sae", "mode", "seed", "depth"])
        .reset_index(drop=True)
    )


def _sae_seed_stability(folders: dict[tuple, Depth], modes: list[str]) -> pd.DataFrame:
    """Stability across the SAE seeds of one classifier seed's stack (or control): `folders` keyed (*GROUP
    with the SAE stem for `sae`, seed, sae_seed, depth); rows keyed by the run SAE name again."""
    group = [*GROUP, "seed"]
    table = stability(folders, modes, group, replicate="sae_seed")
    table = table.rename(columns=dict(zip(STABILITY_COLUMNS, SAE_SEED_STABILITY, strict=True)))
    named = zip(table["sae"], table["sae_seed"], strict=True)
    table["sae"] = [_with_seed(stem, sae_seed) for stem, sae_seed in named]
    return table


def _with_seed(stem: str, sae_seed: int) -> str:
    parsed = parse_run_sae(stem)
    return run_sae_name(parsed.sae, parsed.control_width, int(sae_seed))


def _architecture(config: dict, where: dict) -> str:
    """The architecture that trained this depth: its mode's meta-SAE, or (depth 1) the run's SAE."""
    if where["mode"]:
        return config["meta"]["modes"][where["mode"]]["architecture"]
    return config["sae"][parse_run_sae(where["sae"]).sae]["architecture"]


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


@stage_output(STUDY_FILE)
def aggregate(summary_paths: list[str | Path], config: dict, out_dir: str | Path) -> dict[str, pd.DataFrame]:
    from metasae.figures.summary import plot_metrics_vs_depth

    out_dir = Path(out_dir)
    depths = depth_rows(summary_paths, config)
    stacks = depths[depths["role"] == "stack"].reset_index(drop=True)  # a control is one depth, no stack
    optimal = optimal_depths(stacks)
    claim_table = claims(claim_replicates(stacks))
    _write_csv(depths, out_dir / "depths.csv")
    _write_csv(optimal, out_dir / "optimal_depth.csv")
    _write_csv(claim_table, out_dir / "claims.csv")
    write_json(out_dir / META_STRUCTURE_FILE, meta_structure(summary_paths, config))
    plot_metrics_vs_depth(blank_dense(depths), out_dir / "figures")
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


def _datasets(depths: pd.DataFrame) -> list[dict]:
    seen = depths.drop_duplicates("dataset")
    return [{"name": r.dataset, "ref": r.dataset_ref, "is_real": bool(r.is_real)} for r in seen.itertuples()]
