"""The write-up's dSprites section: one figure per question, each with a reading computed from the probe
tables, the shape table with CIs, and the per-run tables for the appendix.

`dsprites` and `dsprites_appendix` take the loaded study, which loads files (recording them as inputs)
and places figures. Every number comes from results/vit/, results/probes/
and results/probes_summary/; the prose around them only names what is compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from metasae.layout import PROBE_COLUMNS
from metasae.writeup.data import ReportData
from metasae.writeup.format import fmt, md_table

CONTROLS = ("random_init", "pixels", "symmetry_ceiling")
FACTORS = (("shape", "accuracy"), ("scale", "accuracy"), ("posX", "r2"), ("posY", "r2"))
SHAPES = ("square", "ellipse", "heart")
NEAR_CEILING = 0.8  # "approaches the ceiling": the best layer's score is at least this share of it
ENCODED_R2 = 0.5  # "orientation encoded": R² of (cos fθ, sin fθ) at least this, and above the random init


def _ci(row: pd.Series) -> str:
    """A score with its CI, as every reading and table of this section prints it."""
    return f"{fmt(row['value'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def _stage(layer: str) -> tuple[int, str]:
    """A sort key putting layers in network order (embed, block0, block1, ..., then the rest)."""
    stage = layer.split(".")[0]
    return (
        -1 if stage == "embed" else int(stage.removeprefix("block")) if stage.startswith("block") else 99,
        layer,
    )


def _final(table: pd.DataFrame) -> pd.DataFrame:
    """Each run's trained rows at its last checkpoint."""
    trained = table[~table["train_set"].isin(CONTROLS)]
    return trained[trained["step"] == trained.groupby("run")["step"].transform("max")]


def _select(table: pd.DataFrame, factor: str, metric: str, probe: str = "linear") -> pd.DataFrame:
    """One task's rows: a factor scored by one metric of one probe (the linear one unless asked)."""
    return table[(table["factor"] == factor) & (table["metric"] == metric) & (table["probe"] == probe)]


def _control(rows: pd.DataFrame, train_set: str) -> pd.Series | None:
    """The best layer of a control (the first run's: runs sharing architecture and seed share it)."""
    sel = rows[rows["train_set"] == train_set]
    if sel.empty:
        return None
    sel = sel[sel["run"] == sel["run"].iloc[0]]
    return sel.loc[sel["value"].idxmax()]


def vit_table(results: Path) -> str | None:
    """One row per trained ViT: what it learned, its held-out scores, steps and CPU time."""
    rows = []
    for metrics_path in sorted((results / "vit").glob("*/metrics.json")):
        m = json.loads(metrics_path.read_text())
        last = m["checkpoints"][-1]
        cfg = json.loads((metrics_path.parent / last["dir"] / "cfg.json").read_text())
        vit = cfg.get("vit", {})
        scores = m.get("test_scores") or {"accuracy": m.get("test_accuracy")}
        rows.append(
            {
                "run": metrics_path.parent.name,
                "trained on": f"{cfg.get('train_dataset')} ({cfg.get('label')})",
                "stem": f"{vit.get('stem', 'patch')}, patch {vit.get('patch')}",
                "steps": m.get("final_step"),
                "held-out scores": ", ".join(f"{k} {fmt(v)}" for k, v in scores.items()),
                "test set": cfg.get("test_dataset"),
                "CPU-s": m.get("cpu_seconds"),
            }
        )
    if not rows:
        return None
    return md_table(
        pd.DataFrame(rows),
        "The ViTs probed: the objective, the stem, training steps, scores of the model's own heads on "
        "held-out images (accuracy, or R² for regression heads), and the training's CPU time.",
        right=["steps", "CPU-s"],
    )


def reading_layers(table: pd.DataFrame) -> str:
    """Per factor: each run's best layer at its last checkpoint with its CI, from which stage its CI lies
    above the best random-init layer, and both controls."""
    sentences = []
    for factor, metric in FACTORS:
        rows = _select(table, factor, metric)
        final = _final(rows)
        init, pixels = _control(rows, "random_init"), _control(rows, "pixels")
        if final.empty or init is None:
            continue
        parts = []
        for run, sel in final.groupby("run", sort=False):
            best = sel.loc[sel["value"].idxmax()]
            above = sorted(
                (la for la, lo in zip(sel["layer"], sel["ci_low"], strict=True) if lo > init["value"]),
                key=_stage,
            )
            if above:
                where = f"above the random init from {above[0]}"
            elif (sel["ci_high"] < init["value"]).all():
                where = "below the random init at every layer"
            else:
                where = "never above the random init"
            parts.append(f"`{run}` {_ci(best)} at {best['layer']} ({where})")
        controls = f"random init {_ci(init)} at its best layer {init['layer']}"
        if pixels is not None:
            controls += f", raw pixels {_ci(pixels)}"
        name = "accuracy" if metric == "accuracy" else "R²"
        sentences.append(f"{factor} ({name}): " + "; ".join(parts) + f"; {controls}.")
    if not sentences:
        return ""
    return (
        "**Reading.** The best layer of each ViT's last checkpoint, with its 95% bootstrap CI, against the "
        'controls; "above" means the CI\'s lower end exceeds the best random-init layer. '
        + " ".join(s[0].upper() + s[1:] for s in sentences)
        + "\n"
    )


def shape_table(table: pd.DataFrame) -> str:
    """Linear-probe shape accuracy per layer (both poolings) for every ViT's last checkpoint and the random
    init, with CIs; raw pixels in the caption."""
    rows = _select(table, "shape", "accuracy")
    final, init = _final(rows), rows[rows["train_set"] == "random_init"]
    if final.empty:
        return ""
    init = init[init["run"] == init["run"].iloc[0]] if len(init) else init
    layers = sorted(set(final["layer"]) | set(init["layer"]), key=_stage)
    out = pd.DataFrame({"layer": layers})
    for run, sel in final.groupby("run", sort=False):
        step = int(sel["step"].iloc[0])
        cells = {r["layer"]: _ci(r) for _, r in sel.iterrows()}
        out[f"{run} (step {step})"] = [cells.get(la, "–") for la in layers]
    if len(init):
        cells = {r["layer"]: _ci(r) for _, r in init.iterrows()}
        out["random init (step 0)"] = [cells.get(la, "–") for la in layers]
    pixels = _control(rows, "pixels")
    tail = f" Raw pixels (the same probe on the ViT's input): {_ci(pixels)}." if pixels is not None else ""
    return md_table(
        out,
        "Shape, linear probe accuracy on held-out probe sprites per layer (`.cls`: the CLS token, `.mean`: "
        "the mean over patch tokens) at each ViT's last checkpoint and at random init, 95% bootstrap CI in "
        "brackets." + tail,
        right=[],
    )


def reading_steps(table: pd.DataFrame) -> str:
    """Per run: shape accuracy at its best final layer over the checkpoints, and the first step whose CI lies
    above the random-init value at that layer."""
    rows = _select(table, "shape", "accuracy")
    parts = []
    for run, sel in rows[rows["train_set"] != "pixels"].groupby("run", sort=False):
        final = _final(sel)
        if final.empty:
            continue
        layer = final.loc[final["value"].idxmax(), "layer"]
        curve = sel[sel["layer"] == layer].sort_values("step")
        start = curve[curve["train_set"] == "random_init"]["value"]
        trained = curve[curve["train_set"] != "random_init"]
        path = ", ".join(f"{fmt(v)} at step {s}" for s, v in zip(curve["step"], curve["value"], strict=True))
        if start.empty:
            parts.append(f"`{run}` ({layer}): {path}")
            continue
        above = trained[trained["ci_low"] > float(start.iloc[0])]
        when = (
            f"first above its random init at step {int(above['step'].iloc[0])}"
            if len(above)
            else ("never above its random init")
        )
        parts.append(f"`{run}` ({layer}): {path}; {when}")
    if not parts:
        return ""
    return (
        "**Reading.** Shape accuracy of a linear probe at each ViT's best final layer, checkpoint by "
        "checkpoint (step 0 is the random init; checkpoints are log-spaced): " + "; ".join(parts) + ".\n"
    )


def reading_orientation(table: pd.DataFrame) -> str:
    """Pooled orientation against its ceiling, then per shape: best 40-way accuracy / ceiling and the best R²
    of (cos fθ, sin fθ). Per run and shape, a verdict: orientation *encoded* where that R² is at least
    ENCODED_R2 and its CI lies above the random init's best layer; then near the ceiling (accuracy at least
    NEAR_CEILING of it) or coarser than the 40-step grid; else not encoded linearly."""
    ceilings = table[table["train_set"] == "symmetry_ceiling"]
    ceiling = {
        (r["factor"], r["metric"]): r["value"]
        for _, r in ceilings.drop_duplicates(["factor", "metric"]).iterrows()
    }
    linear = table[table["probe"] == "linear"]
    verdicts: dict[str, list[str]] = {"near": [], "coarse": [], "none": [], "over": []}
    parts = []
    for run, sel in _final(linear).groupby("run", sort=False):
        pooled = sel[(sel["factor"] == "orientation") & (sel["metric"] == "accuracy")]
        bits = []
        if len(pooled) and ("orientation", "accuracy") in ceiling:
            bits.append(
                f"all shapes {fmt(pooled['value'].max())} of {fmt(ceiling['orientation', 'accuracy'])}"
            )
        for shape in SHAPES:
            factor = f"orientation_{shape}"
            acc = sel[(sel["factor"] == factor) & (sel["metric"] == "accuracy")]
            fold = sel[(sel["factor"] == factor) & (sel["metric"] == "r2_sincos_fold")]
            cap = ceiling.get((factor, "accuracy"))
            if acc.empty or cap is None:
                continue
            best = acc.loc[acc["value"].idxmax()]
            name = f"`{run}` {shape}s"
            if fold.empty:
                bits.append(f"{shape} {fmt(best['value'])} of {fmt(cap)}")
                continue
            r2 = fold.loc[fold["value"].idxmax()]
            bits.append(f"{shape} {fmt(best['value'])} of {fmt(cap)}, R² {fmt(r2['value'])}")
            init = _control(
                linear[(linear["factor"] == factor) & (linear["metric"] == "r2_sincos_fold")], "random_init"
            )
            encoded = r2["value"] >= ENCODED_R2 and (init is None or r2["ci_low"] > init["value"])
            key = ("near" if best["value"] >= NEAR_CEILING * cap else "coarse") if encoded else "none"
            verdicts[key].append(name)
            if best["ci_low"] > cap:
                verdicts["over"].append(name)
        if bits:
            parts.append(f"`{run}`: " + ", ".join(bits))
    if not parts:
        return ""

    def listed(key: str) -> str:
        return ", ".join(verdicts[key]) if verdicts[key] else "none"

    verdict = (
        f" Orientation is encoded (R² at least {ENCODED_R2} and above the random init) and read near the "
        f"ceiling (at least {NEAR_CEILING:.0%} of it) for: {listed('near')}; encoded but more coarsely than "
        f"the 40-step grid resolves for: {listed('coarse')}; not encoded linearly for: {listed('none')}."
    )
    if verdicts["over"]:
        verdict += (
            f" Above the accuracy ceiling (CI): {listed('over')}: the ceiling treats a sprite and its "
            "symmetric partner rounded to the 40-step grid as one image, but their renders differ by a "
            "fraction of a step, which the model resolves (the R² of (cos fθ, sin fθ) has exact ceiling 1)."
        )
    return (
        "**Reading.** Best linear-probe orientation accuracy over layers at the last checkpoint against the "
        "symmetry ceiling (40 classes; the ceiling counts a sprite and its symmetric partner, rounded to the "
        "grid, as one image), and the best R² of (cos fθ, sin fθ), f the shape's symmetry order (ceiling 1): "
        + "; ".join(parts)
        + "."
        + verdict
        + "\n"
    )


def dsprites(report: ReportData) -> str:
    """The dSprites results in the main text: one figure (which layer represents what) and the three
    readings; the rest is in `dsprites_appendix`."""
    results = report.results
    folder = results / "probes_summary"  # the figures; the tables are read from each run's own probes.csv
    runs = sorted((results / "probes").glob("*/probes.csv"))
    if not runs:
        return report.skip("the dSprites probes", results / "probes")
    table = pd.concat(
        [report.load(p, PROBE_COLUMNS).assign(run=p.parent.name) for p in runs], ignore_index=True
    )
    out = [
        "Each ViT is probed with held-out dSprites converted explicitly to its input (size and channels, "
        "pixels kept in [0, 1]) at every checkpoint and layer. Controls: the same architecture at random "
        "initialisation (step 0) and the raw input pixels; orientation is also compared with its symmetry "
        "ceiling (a square looks the same after a quarter turn, an ellipse after a half turn).\n"
    ]
    if (folder / FIGURES[0][0]).is_file():
        out.append(report.figure(folder / FIGURES[0][0], FIGURES[0][1]))
    out += [reading_layers(table), reading_steps(table), reading_orientation(table)]
    out.append(
        "The ViTs, the shape table with CIs, the figures over training and per shape, and every run's "
        "tables are in the appendix.\n"
    )
    return "\n".join(o for o in out if o)


# The figures of probes_summary/: the first in the main text (with what to see), the others in the appendix.
FIGURES = (
    (
        "score_vs_layer.png",
        "Which ViT represents shape, scale and position linearly, and from which layer? What to see: where "
        "each trained ViT's curve leaves its random-init control and how close it comes to the raw pixels.",
    ),
    (
        "shape_vs_step.png",
        "When in training does shape become linearly decodable? What to see: the first checkpoint whose "
        "accuracy leaves the random-init value (step 0).",
    ),
    (
        "orientation_per_shape.png",
        "Is orientation encoded, up to each shape's symmetry? What to see: each shape's accuracy against "
        "its symmetry ceiling.",
    ),
)


def _task(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """One row label, 'train set: factor (probe metric)', for the probe tables' key columns."""
    label = [f"{t}: {f} ({p} {m})" for t, f, p, m in df[key].itertuples(index=False)]
    return pd.concat([pd.Series(label, index=df.index, name="task"), df.drop(columns=key)], axis=1)


def dsprites_appendix(report: ReportData) -> str:
    """The ViTs, the shape table, the figures over training and per shape, then per run: every task's score
    per layer at the last step, each task over training at its best layer, and the run's own figures."""
    runs = sorted(p.parent for p in (report.results / "probes").glob("*/probes.csv"))
    if not runs:
        return report.skip("the dSprites probes", report.results / "probes")
    table = pd.concat(
        [report.load(p / "probes.csv", PROBE_COLUMNS).assign(run=p.name) for p in runs], ignore_index=True
    )
    out = [vit_table(report.results) or "", shape_table(table)]
    folder = report.results / "probes_summary"
    out += [report.figure(folder / name, what) for name, what in FIGURES[1:] if (folder / name).is_file()]
    for run in runs:
        p = report.load(run / "probes.csv", PROBE_COLUMNS)
        key = ["train_set", "factor", "probe", "metric"]
        final = p.loc[p["step"] == p.groupby("train_set")["step"].transform("max")]
        by_layer = final.pivot_table(index=key, columns="layer", values="value", aggfunc="mean", sort=False)
        out.append(f"**`{run.name}`**\n")
        out.append(
            md_table(
                _task(by_layer.reset_index(), key),
                "Probe score per layer at the last training step (mean where several checkpoints share it).",
            )
        )
        best = by_layer.dropna(how="all").idxmax(axis=1).rename("layer").reset_index()
        over = p.merge(best, on=key + ["layer"]).pivot_table(
            index=key + ["layer"], columns="step", values="value", aggfunc="mean"
        )
        over.columns = [f"step {s}" for s in over.columns]
        over = _task(over.reset_index(), key)
        over["task"] = over["task"] + " at " + over.pop("layer")
        out.append(md_table(over, "Probe score over training at each factor's best layer."))
        out += [
            report.figure(f, f"{run.name}: {f.stem.replace('_', ' ')}.")
            for f in sorted((run / "figures").glob("*.png"))
        ]
    return "\n".join(o for o in out if o)


DSPRITES_REPORT = (
    "../report_dsprites/index.html"  # its own report, beside the main one (workflow: report_dsprites)
)


def dsprites_link(report: ReportData) -> str:
    """The main report's pointer to the dSprites branch, which has a report of its own (`dsprites.qmd`):
    what ViTs represent by layer and training step is a different question from the meta-SAE stacks."""
    if not sorted((report.results / "probes").glob("*/probes.csv")):
        return ""
    return (
        "**dSprites.** A separate branch probes what small ViTs represent, by layer and training step, on "
        f"dSprites; it has [its own report]({DSPRITES_REPORT}).\n"
    )
