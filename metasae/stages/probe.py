"""Stage `probe`: linear and MLP probes of every dSprites factor on every ViT checkpoint x layer.

Rows of probes.csv: the trained checkpoints (train_set = the ViT's training set), the controls
(train_set `random_init` = step 0, `pixels` = the raw ViT inputs) and the orientation symmetry ceilings
(train_set `symmetry_ceiling`, probe `bayes`): pooled over shapes, and per shape for the `orientation_<shape>`
rows (orientation probed on one shape's images only).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from metasae.data import InputSpec
from metasae.devices import resolve_device
from metasae.errors import MetasaeError
from metasae.io import atomic_path, provenance, stage_output, write_json
from metasae.models.vit import load_vit
from metasae.probes import (
    BACKENDS,
    COLUMNS,
    CONTROLS,
    PROBES,
    FeatureSet,
    dsprites_tasks,
    layer_features,
    orientation_ceilings,
    probe_images,
    probe_sets,
    shape_orientation_ceilings,
    shape_orientation_tasks,
    stratified_split,
    vit_checkpoints,
)
from metasae.seeds import derive_seed

MLP_AT = (
    "ends",
    "all",
)  # ends: MLP probes only at step 0 and the last checkpoint (they cost ~10x a linear one)


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    test_fraction: float = 0.3
    probes: tuple[str, ...] = PROBES
    mlp_at: str = "ends"
    mlp_hidden: int = 64
    mlp_iter: int = 100
    bootstrap: int = 200
    backend: str = "torch"  # torch: every layer x checkpoint's probes of a task fitted at once
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "probes", tuple(self.probes))
        if bad := [p for p in self.probes if p not in PROBES]:
            raise MetasaeError(f"probes.probes: unknown {bad}; allowed {', '.join(PROBES)}")
        if self.mlp_at not in MLP_AT:
            raise MetasaeError(f"probes.mlp_at={self.mlp_at!r}; allowed {', '.join(MLP_AT)}")
        if self.backend not in BACKENDS:
            raise MetasaeError(f"probes.backend={self.backend!r}; allowed {', '.join(BACKENDS)}")


@stage_output("probes.json", shared=True)
def run_probes(
    vit_dir: str | Path,
    dataset: str,
    out_dir: str | Path,
    cfg: ProbeConfig = ProbeConfig(),
    data_dir: str | Path | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """Write out_dir/probes.csv, out_dir/probes.json (inputs, split, controls, provenance),
    out_dir/figures/."""
    from tqdm.auto import tqdm

    vit_dir, out_dir, dev = Path(vit_dir), Path(out_dir), resolve_device(device)
    ckpts = vit_checkpoints(vit_dir)
    first, first_cfg = load_vit(vit_dir / ckpts[0]["dir"])
    ds, images, stats = probe_images(dataset, InputSpec(*first.cfg.input_shape), data_dir)
    tasks = dsprites_tasks(ds.factors)
    per_shape = shape_orientation_tasks(ds.factors)
    shape_ids = ds.factors["shape"].numpy()
    strata = (
        ds.factors["shape"] * 6 + ds.factors["scale"]
    ).numpy()  # every shape x scale cell in both halves
    train, test = stratified_split(strata, cfg.test_fraction, derive_seed(cfg.seed, "probe-split"))
    kw = dict(
        seed=derive_seed(cfg.seed, "probe"),
        n_boot=cfg.bootstrap,
        mlp_hidden=cfg.mlp_hidden,
        mlp_iter=cfg.mlp_iter,
        backend=cfg.backend,
    )
    sets, ids = [], []
    last = ckpts[-1]["step"]
    for ck in tqdm(ckpts, desc="probe checkpoints", disable=None, leave=False):
        model, mcfg = load_vit(vit_dir / ck["dir"], dev)
        probes = cfg.probes if cfg.mlp_at == "all" or ck["step"] in (0, last) else ("linear",)
        train_set = "random_init" if ck["step"] == 0 else mcfg["train_dataset"]
        for layer, x in layer_features(model, model.layer_names, images, device=dev).items():
            sets.append(FeatureSet(x.numpy(), probes))
            ids.append(dict(train_set=train_set, checkpoint=ck["dir"], step=ck["step"], layer=layer))
    sets.append(FeatureSet(images.flatten(1).numpy(), cfg.probes, standardise=False))
    ids.append(dict(train_set="pixels", checkpoint="-", step=0, layer="pixels"))
    # every set's probes of one task at once (the torch backend stacks them); orientation within one shape
    # on that shape's train / test rows
    per_set = [probe_sets(sets, tasks, train, test, **kw)]
    for s, shape_tasks in per_shape:
        tr, te = train[shape_ids[train] == s], test[shape_ids[test] == s]
        per_set.append(probe_sets(sets, shape_tasks, tr, te, **kw))
    rows: list[dict] = [{**i, **r} for n, i in enumerate(ids) for part in per_set for r in part[n]]
    held_out = (tasks[0].target[test], tasks[2].target[test], ds.factors["orientation_value"].numpy()[test])
    ceil = orientation_ceilings(*held_out)
    ceilings = {**{("orientation", m): v for m, v in ceil.items()}, **shape_orientation_ceilings(*held_out)}
    rows += [
        {
            "train_set": "symmetry_ceiling",
            "checkpoint": "-",
            "step": 0,
            "layer": "-",
            "factor": factor,
            "probe": "bayes",
            "metric": m,
            "value": v,
            "ci_low": v,
            "ci_high": v,
        }
        for (factor, m), v in ceilings.items()
    ]
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(out_dir / "probes.csv") as tmp:
        table.to_csv(tmp, index=False)
    from metasae.figures.probe import score_vs_layer, score_vs_step

    trained = first_cfg["train_dataset"]
    for probe in cfg.probes:
        score_vs_layer(table, probe, trained, out_dir / "figures" / f"score_vs_layer_{probe}.png")
    score_vs_step(table, "linear", trained, out_dir / "figures" / "score_vs_step_linear.png")
    controls = control_summary(table)
    for c in controls:
        print(
            f"{c['factor']} {c['metric']} ({c['probe']}): trained {c['trained']:.3f} at {c['trained_layer']} "
            f"vs random-init {c['random_init']:.3f}, pixels {c['pixels']:.3f}, ceiling {c['ceiling']}"
        )
    write_json(
        out_dir / "probes.json",
        {
            "vit_dir": str(vit_dir),
            "dataset": ds.ref,
            "n_train": len(train),
            "n_test": len(test),
            "inputs": stats,
            "symmetry_ceiling": ceil,
            "symmetry_ceiling_per_shape": {
                f"{f} {m}": v for (f, m), v in ceilings.items() if f != "orientation"
            },
            "trained_on": trained,
            "controls": controls,
            "provenance": provenance(dataclasses.asdict(cfg), cfg.seed),
        },
    )
    return table


def control_summary(table: pd.DataFrame) -> list[dict]:
    """Per task and probe: the last trained checkpoint's best layer against the controls' best, so "do the
    controls behave as controls" is a row to read: `beats_random_init` when the trained score's CI lies above
    the best random-init layer, `within_ceiling` when orientation stays at or under its symmetry ceiling
    (pooled, or per shape for the `orientation_<shape>` rows)."""
    trained = table[~table["train_set"].isin(CONTROLS)]
    final = trained[trained["step"] == trained["step"].max()]
    ceiling = table[table["train_set"] == "symmetry_ceiling"].set_index(["factor", "metric"])["value"]
    out = []
    for (factor, metric, probe), rows in final.groupby(["factor", "metric", "probe"], sort=False):
        best = rows.loc[rows["value"].idxmax()]
        same = (table["factor"] == factor) & (table["metric"] == metric) & (table["probe"] == probe)
        random_init = table[same & (table["train_set"] == "random_init")]["value"].max()
        pixels = table[same & (table["train_set"] == "pixels")]["value"].max()
        cap = float(ceiling[factor, metric]) if (factor, metric) in ceiling.index else None
        out.append(
            {
                "factor": factor,
                "metric": metric,
                "probe": probe,
                "step": int(best["step"]),
                "trained": float(best["value"]),
                "trained_ci": [float(best["ci_low"]), float(best["ci_high"])],
                "trained_layer": str(best["layer"]),
                "random_init": float(random_init),
                "pixels": float(pixels),
                "beats_random_init": bool(best["ci_low"] > random_init),
                "ceiling": cap,
                "within_ceiling": None if cap is None else bool(best["value"] <= cap),
            }
        )
    return out
