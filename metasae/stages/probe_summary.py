"""Stage `probe-summary`: every dSprites run's probes side by side, one figure per question.

Reads each run's probes.csv (the run is its folder's name) and writes out_dir/probes.csv (all rows, with a
`run` column), the figures score_vs_layer.png (shape, scale, posX, posY per layer, every ViT and both
controls), shape_vs_step.png (shape over training) and orientation_per_shape.png (orientation within each
shape against its symmetry ceiling), and summary.json (written last): per run, the best layer's shape
accuracy and the orientation scores against their ceilings.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metasae.errors import MetasaeError
from metasae.io import atomic_path, stage_output, write_json
from metasae.probes import COLUMNS, SHAPE_NAMES

SUMMARY = "summary.json"


def read_runs(paths: list[str | Path]) -> pd.DataFrame:
    """The runs' probes.csv tables stacked, `run` (the folder name) first; run names must be distinct."""
    tables = []
    for path in map(Path, paths):
        if not path.is_file():
            raise MetasaeError(f"{path}: file not found (run `metasae probe` first)")
        table = pd.read_csv(path)
        if missing := set(COLUMNS) - set(table.columns):
            raise MetasaeError(f"{path}: missing columns {sorted(missing)}")
        tables.append(table[COLUMNS].assign(run=path.parent.name))
    runs = [t["run"].iloc[0] for t in tables if len(t)]
    if len(set(runs)) != len(runs):
        raise MetasaeError(f"probe-summary: run folders named twice: {runs}")
    if not tables:
        raise MetasaeError("probe-summary: no probes.csv given")
    return pd.concat(tables, ignore_index=True)[["run", *COLUMNS]]


def _best(rows: pd.DataFrame) -> dict | None:
    if rows.empty:
        return None
    best = rows.loc[rows["value"].idxmax()]
    return {
        "layer": str(best["layer"]),
        "step": int(best["step"]),
        "value": float(best["value"]),
        "ci": [float(best["ci_low"]), float(best["ci_high"])],
    }


def summarise(table: pd.DataFrame, probe: str = "linear") -> dict:
    """Per run: trained-on set, final step, and per task the best layer at the last checkpoint, the best
    random-init layer and raw pixels; orientation tasks also carry their symmetry ceiling."""
    out = {}
    for run, rows in table.groupby("run", sort=False):
        rows = rows[rows["probe"].isin([probe, "bayes"])]
        trained = rows[~rows["train_set"].isin(["random_init", "pixels", "symmetry_ceiling"])]
        last = trained[trained["step"] == trained["step"].max()]
        tasks = {}
        for (factor, metric), sel in last.groupby(["factor", "metric"], sort=False):
            same = (rows["factor"] == factor) & (rows["metric"] == metric)
            ceiling = rows[same & (rows["train_set"] == "symmetry_ceiling")]["value"]
            tasks[f"{factor} {metric}"] = {
                "trained": _best(sel),
                "random_init": _best(rows[same & (rows["train_set"] == "random_init")]),
                "pixels": _best(rows[same & (rows["train_set"] == "pixels")]),
                "ceiling": float(ceiling.iloc[0]) if len(ceiling) else None,
            }
        out[run] = {
            "train_set": str(last["train_set"].iloc[0]) if len(last) else None,
            "final_step": int(last["step"].max()) if len(last) else None,
            "tasks": tasks,
        }
    return out


@stage_output(SUMMARY)
def probe_summary(probes_csvs: list[str | Path], out_dir: str | Path, probe: str = "linear") -> dict:
    from metasae.figures.probe import orientation_per_shape, runs_vs_layer, runs_vs_step

    out_dir = Path(out_dir)
    table = read_runs(probes_csvs)
    with atomic_path(out_dir / "probes.csv") as tmp:
        table.to_csv(tmp, index=False)
    runs_vs_layer(table, out_dir / "score_vs_layer.png", probe)
    runs_vs_step(table, out_dir / "shape_vs_step.png", "shape", probe)
    if table["factor"].isin([f"orientation_{s}" for s in SHAPE_NAMES]).any():
        orientation_per_shape(table, out_dir / "orientation_per_shape.png", probe)
    summary = {"probe": probe, "runs": summarise(table, probe)}
    write_json(out_dir / SUMMARY, summary)
    for run, s in summary["runs"].items():
        shape = s["tasks"].get("shape accuracy", {})
        if shape.get("trained"):
            t = shape["trained"]
            controls = ", ".join(
                f"{name} {shape[key]['value']:.3f}"
                for key, name in (("random_init", "random init"), ("pixels", "pixels"))
                if shape.get(key)
            )
            print(
                f"{run}: shape {probe} {t['value']:.3f} [{t['ci'][0]:.3f}, {t['ci'][1]:.3f}] "
                f"at {t['layer']} ({controls})"
            )
    return summary
