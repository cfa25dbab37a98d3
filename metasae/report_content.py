"""The write-up's content, computed from a results folder as plain Markdown.

`report/index.qmd` calls these section methods from `output: asis` cells, so every number, table and
figure in the document comes from `results/` and nothing the run computes is typed by hand. A
section whose inputs are absent says so in one sentence instead of failing: a partial study still
gets a report that is honest about what it covers.
"""

from __future__ import annotations

import math
import numbers
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from metasae.errors import MetasaeError
from metasae.io import read_json
from metasae.layout import MODES, PROBE_COLUMNS

ID_COLUMNS = ["model", "train_dataset", "dataset", "layer", "mode", "architecture"]
OPTIONAL_ID_COLUMNS = ["sae"]  # written by `metasae aggregate` (the depth-1 SAE's config name)
DEPTHS_COLUMNS = ID_COLUMNS + [
    "seed",
    "depth",
    "d_sae",
    "alive_latents",
    "dead_fraction",
    "fvu",
    "explained_variance",
    "l0",
    "purity_mean",
    "purity_median",
    "entropy_mean",
    "count_all_top10_nonzero",
    "mean_active_per_image",
    "spliced_accuracy",
    "loss_recovered",
    "is_real",
]
OPTIMAL_COLUMNS = [
    "model",
    "dataset",
    "layer",
    "mode",
    "architecture",
    "criterion",
    "optimal_depth",
    "ci_low",
    "ci_high",
    "n_seeds",
    "log_claim_depth2_holds",
]
CLAIMS_COLUMNS = ["claim", "log_value", "our_value", "verdict", "note"]
VERDICTS = ("holds", "fails", "untested")

# Summary figures each results section places (file stem: caption); any other one goes to the appendix.
# (metasae/summary_plots.py names them {metric}_vs_depth.png.)
SECTION_FIGURES = {
    "reconstruction": {
        "fvu_vs_depth": "FVU vs depth.",
        "stack_fvu_vs_depth": "FVU of the layer through the stack.",
        "l0_vs_depth": "L0 vs depth.",
        "alive_latents_vs_depth": "Alive latents vs depth.",
        "spliced_accuracy_vs_depth": "Classifier accuracy with the stack spliced in.",
        "loss_recovered_vs_depth": "Loss recovered vs depth.",
    },
    "activation_counts": {
        "count_all_top10_nonzero_vs_depth": "Latents whose top-10 activations are all non-zero.",
        "mean_active_per_image_vs_depth": "Mean active latents per image vs depth.",
    },
    "purity": {
        "purity_mean_vs_depth": "Mean label purity vs depth.",
        "entropy_mean_vs_depth": "Mean label entropy vs depth.",
    },
}
LINEAGE_FIGURES = ("lineage_card", "top_images")
MAX_LINEAGE_DEPTHS = 3


def not_run(what: str, missing: str) -> str:
    """The one sentence a section prints instead of its content when its input is absent."""
    return f"*Not run: {what} — `{missing}` is absent from this results folder.*\n"


def fmt(x: object) -> str:
    """A value as a table cell: 3 significant digits, whole numbers from 100, '–' for missing."""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if x is None or (isinstance(x, numbers.Real) and math.isnan(x)):
        return "–"
    if isinstance(x, numbers.Real):
        return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"
    return str(x)


def md_table(df: pd.DataFrame, caption: str, right: list[str] | None = None) -> str:
    """A pipe table both pandoc and Quarto read; `right` columns (default: numeric ones) align right."""
    right = (
        right
        if right is not None
        else [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and df[c].dtype != bool]
    )
    header = [str(c) for c in df.columns]
    rows = [
        [fmt(v).replace("|", r"\|").replace("\n", " ") for v in row] for row in df.itertuples(index=False)
    ]
    widths = [max([len(header[i]), 3] + [len(r[i]) for r in rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if c in right else (":" + "-" * (w + 1))
            for c, w in zip(df.columns, widths, strict=True)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *map(line, rows), "", f": {caption}", ""]) + "\n"


def _dataset_name(ref: object) -> str:
    """'mnist:test[8000:]' -> 'mnist': splits of one dataset are the same distribution."""
    return str(ref).split(":", 1)[0]


def _varying(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """The identity columns that take more than one value (constant ones are stated in Setup)."""
    return [c for c in columns if c in df.columns and df[c].nunique(dropna=False) > 1]


def depth_table(
    df: pd.DataFrame, metric: str, label: str, keys: list[str] | None = None, spread: bool = True
) -> str:
    """`metric` by depth (columns d1, d2, ...), mean (± sd over seeds if `spread`), one row per
    configuration."""
    keys = keys or _varying(df, ID_COLUMNS + OPTIONAL_ID_COLUMNS) or ["mode"]
    stats = df.groupby(keys + ["depth"], dropna=False)[metric].agg(["mean", "std", "count"])
    spread = spread and int(df["seed"].nunique()) > 1
    cells = [
        fmt(m) + (f" ± {s:.2g}" if spread and n > 1 and not math.isnan(s) else "")
        for m, s, n in stats.itertuples(index=False)
    ]
    wide = pd.Series(cells, index=stats.index).unstack("depth").sort_index(axis=1)
    wide.columns = [f"d{d}" for d in wide.columns]
    how = " (mean ± sd over seeds)" if spread else ""
    return md_table(wide.reset_index(), f"{label} by depth{how}.", right=list(wide.columns))


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MetasaeError(f"{path}: unreadable CSV ({exc})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MetasaeError(f"{path}: missing columns {', '.join(missing)} (expected: {', '.join(columns)})")
    return df


def _check_values(df: pd.DataFrame, path: Path, column: str, allowed: tuple) -> None:
    bad = sorted(set(df[column].dropna()) - set(allowed), key=str)
    if bad:
        raise MetasaeError(
            f"{path}: column {column} has {', '.join(map(str, bad))} "
            f"(allowed: {', '.join(map(str, allowed))})"
        )


def _as_bool(df: pd.DataFrame, path: Path, column: str) -> None:
    """Booleans as the CSV writer spells them; anything else is an error, not a silent False."""
    spelled = {True: True, False: False, "True": True, "False": False, "true": True, "false": False}
    bad = sorted({str(v) for v in df[column] if v not in spelled})
    if bad:
        raise MetasaeError(f"{path}: column {column} has {', '.join(bad)} (allowed: True, False)")
    df[column] = df[column].map(spelled).astype(bool)


class ReportData:
    """The results folder as the report reads it; figures used are copied into `figures_dir`."""

    def __init__(self, results: str | Path, figures_dir: str | Path = "figures") -> None:
        self.results = Path(results)
        self.figures_dir = Path(figures_dir)
        self.inputs: set[Path] = set()
        self.placed: set[Path] = set()
        self.skipped: dict[str, list[str]] = {}  # missing input -> sections it left unrun
        self.summary = self.results / "summary"
        self.depths = self._load(self.summary / "depths.csv", DEPTHS_COLUMNS)
        self.trained = None  # the depths that trained; stopped or collapsed ones are reported apart
        if self.depths is not None:
            _check_values(self.depths, self.summary / "depths.csv", "mode", MODES)
            _as_bool(self.depths, self.summary / "depths.csv", "is_real")
            trained = self.depths["status"] == "trained" if "status" in self.depths else True
            self.trained = self.depths.loc[trained]
        self.optimal = self._load(self.summary / "optimal_depth.csv", OPTIMAL_COLUMNS)
        if self.optimal is not None:
            _check_values(self.optimal, self.summary / "optimal_depth.csv", "mode", MODES)
            _as_bool(self.optimal, self.summary / "optimal_depth.csv", "log_claim_depth2_holds")
        self.claims_table = self._load(self.summary / "claims.csv", CLAIMS_COLUMNS)
        if self.claims_table is not None:
            _check_values(self.claims_table, self.summary / "claims.csv", "verdict", VERDICTS)
        study_path = self.summary / "study.json"
        self.study: dict = read_json(study_path) if study_path.is_file() else {}
        if study_path.is_file():
            self.inputs.add(study_path)
        if not isinstance(self.study, dict):
            raise MetasaeError(f"{study_path}: expected a JSON object")

    # -- inputs ---------------------------------------------------------------------------------
    def _load(self, path: Path, columns: list[str]) -> pd.DataFrame | None:
        df = _read_csv(path, columns)
        if df is not None:
            self.inputs.add(path)
        return df

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.results).as_posix()

    def _not_run(self, what: str, missing: Path) -> str:
        self.skipped.setdefault(f"`{self._rel(missing)}`", []).append(what)
        return not_run(what, self._rel(missing))

    def figure(self, path: Path, caption: str) -> str:
        """Copy a results figure next to the document and reference it by relative path."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", self._rel(path))
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, self.figures_dir / name)
        self.inputs.add(path)
        self.placed.add(path)
        return f"![{caption}]({self.figures_dir.name}/{name})\n"

    def _summary_figures(self, section: str) -> str:
        out = []
        for stem, caption in SECTION_FIGURES[section].items():
            path = self.summary / "figures" / f"{stem}.png"
            if path.is_file():
                out.append(self.figure(path, caption))
        return "\n".join(out)

    def datasets(self) -> list[dict]:
        """Probe datasets with is_real (and ref, description where given): study.json's list, else
        depths.csv's."""
        listed = self.study.get("datasets")
        if listed is not None:
            if not isinstance(listed, list) or not all(
                isinstance(d, dict) and "name" in d and "is_real" in d for d in listed
            ):
                raise MetasaeError(
                    f"{self.summary / 'study.json'}: key datasets must be a list of "
                    "{name, is_real[, ref, description]}"
                )
            return listed
        if self.depths is None:
            return []
        real = self.depths.groupby("dataset")["is_real"].first()
        return [{"name": name, "is_real": bool(flag)} for name, flag in real.items()]

    def headline(self) -> tuple[pd.DataFrame, str]:
        """The rows the TL;DR speaks for: the real datasets' if any, else all (embedded stand-ins only)."""
        d = self.trained
        assert d is not None
        real = d.loc[d["is_real"]]
        if not real.empty:
            return real, "real data (" + ", ".join(sorted(real["dataset"].unique())) + ")"
        return d, (
            "embedded stand-ins only ("
            + ", ".join(sorted(d["dataset"].unique()))
            + "); no real dataset was run"
        )

    # -- sections -------------------------------------------------------------------------------
    def tldr(self) -> str:
        if self.depths is None:
            return self._not_run("the headline numbers", self.summary / "depths.csv")
        head, label = self.headline()
        n_cfg = len(head.groupby(_varying(head, ID_COLUMNS + OPTIONAL_ID_COLUMNS) or ["mode"]))
        lines = [
            f"- **Data:** {label}; {n_cfg} configuration(s), {head['seed'].nunique()} seed(s), "
            f"depths {head['depth'].min()}–{head['depth'].max()}."
        ]
        for mode, g in head.groupby("mode"):
            fvu = g.groupby("depth")["fvu"].median()
            count = g.groupby("depth")["count_all_top10_nonzero"].median()
            lines.append(
                f"- **{mode} mode:** median FVU {fmt(fvu.iloc[0])} at depth {fvu.index[0]} and "
                f"{fmt(fvu.iloc[-1])} at depth {fvu.index[-1]}; the count of latents whose top-10 "
                f"activations are all non-zero peaks at depth {count.idxmax()} "
                f"(median {fmt(count.max())})."
            )
        if self.optimal is not None:
            opt = self.optimal.loc[
                self.optimal["dataset"].isin(head["dataset"].unique())
                & self.optimal["model"].isin(head["model"].unique())
            ]
            for criterion, g in opt.groupby("criterion"):
                depths = g["optimal_depth"]
                lines.append(
                    f"- **Optimal depth by `{criterion}`:** median {fmt(depths.median())} "
                    f"(range {fmt(depths.min())}–{fmt(depths.max())}) over {len(g)} configuration(s); "
                    f"depth 2 in {int((depths == 2).sum())} of {len(g)}."
                )
            lines.append(
                f'- **The log\'s "depth 2 is optimal"** holds in '
                f"{int(opt['log_claim_depth2_holds'].sum())} of {len(opt)} (configuration, criterion) pairs."
            )
        if self.claims_table is not None:
            counts = self.claims_table["verdict"].value_counts()
            lines.append(
                f"- **Claims of the research log re-tested:** {counts.get('holds', 0)} hold, "
                f"{counts.get('fails', 0)} fail, {counts.get('untested', 0)} untested "
                f"(of {len(self.claims_table)})."
            )
        return "\n".join(lines) + "\n"

    def setup(self) -> str:
        parts = []
        datasets = self.datasets()
        if datasets:
            table = pd.DataFrame(
                {
                    "dataset": [d["name"] for d in datasets],
                    "kind": ["real" if d["is_real"] else "embedded stand-in" for d in datasets],
                    **{
                        k: [d.get(k, "") for d in datasets]
                        for k in ("ref", "description")
                        if any(d.get(k) for d in datasets)
                    },
                }
            )
            parts.append(
                md_table(
                    table,
                    "Datasets: real ones are read from local copies of the official files and checksummed; "
                    "embedded stand-ins are generated offline and are not the real datasets.",
                )
            )
        if self.depths is None:
            parts.append(self._not_run("the run's configuration table", self.summary / "depths.csv"))
            return "\n".join(parts)
        d = self.depths
        ids = [c for c in ID_COLUMNS + OPTIONAL_ID_COLUMNS if c in d]
        facts = pd.DataFrame(
            {
                "setting": [c.replace("_", " ") for c in ids] + ["seeds", "depths"],
                "values": [", ".join(map(str, sorted(d[c].unique()))) for c in ids]
                + [", ".join(map(str, sorted(d["seed"].unique()))), f"{d['depth'].min()}–{d['depth'].max()}"],
            }
        )
        parts.append(md_table(facts, "What was run (from depths.csv)."))
        parts.append(
            depth_table(
                d,
                "d_sae",
                "Dictionary size (latents)",
                keys=_varying(d, ["mode", "architecture"]) or ["mode"],
                spread=False,
            )
        )
        run = []
        if "config_file" in self.study:
            run.append(f"configuration `{self.study['config_file']}`")
        if "wall_time_s" in self.study:
            run.append(f"wall time {fmt(self.study['wall_time_s'] / 60)} min")
        if "git_commit" in self.study:
            run.append(f"code at commit `{self.study['git_commit']}`")
        if run:
            parts.append("The study ran with " + ", ".join(run) + ".\n")
        if self.study.get("headline") is True:
            parts.append("This study is marked as the report's headline run.\n")
        return "\n".join(parts)

    def _metric_tables(self, metrics: list[tuple[str, str]]) -> str:
        """Tables over trained depths of the metrics this results folder has."""
        d = self.trained
        return "\n".join(depth_table(d, m, label) for m, label in metrics if m in d and d[m].notna().any())

    def _stops(self) -> str:
        """How many runs stopped or collapsed at each depth, and why (the stack's stop rules)."""
        d = self.depths
        if "status" not in d or (d["status"] == "trained").all():
            return ""
        reason = d["stop_reason"].fillna("") if "stop_reason" in d else ""
        stopped = d.assign(reason=reason).loc[d["status"] != "trained"]
        table = (
            stopped.groupby(["mode", "depth", "status", "reason"]).size().rename("runs × seeds").reset_index()
        )
        return md_table(
            table,
            "Depths that did not train: stopped by a stop rule or collapsed (all latents dead); "
            "they are left out of the tables above.",
        )

    def reconstruction(self) -> str:
        if self.depths is None:
            return self._not_run("reconstruction and sparsity vs depth", self.summary / "depths.csv")
        tables = self._metric_tables(
            [
                ("fvu", "Fraction of variance unexplained (FVU) of each depth's own inputs"),
                ("stack_fvu", "FVU of the layer's activations through the stack"),
                ("l0", "L0 (mean active latents per input)"),
                ("alive_latents", "Alive latents"),
                ("spliced_accuracy", "Classifier accuracy with the stack spliced in"),
                ("loss_recovered", "Loss recovered with the stack spliced in"),
            ]
        )
        return "\n".join([tables, self._stops(), self._summary_figures("reconstruction")])

    def activation_counts(self) -> str:
        if self.depths is None:
            return self._not_run("activation counts vs depth", self.summary / "depths.csv")
        tables = self._metric_tables(
            [
                (
                    "count_all_top10_nonzero",
                    "Latents whose top-10 activations are all non-zero (the log's count)",
                ),
                ("mean_active_per_image", "Mean active latents per image"),
            ]
        )
        return tables + "\n" + self._summary_figures("activation_counts")

    def purity(self) -> str:
        if self.depths is None:
            return self._not_run("label purity vs depth", self.summary / "depths.csv")
        tables = self._metric_tables(
            [
                ("purity_mean", "Mean label purity of alive latents' top images"),
                ("entropy_mean", "Mean label entropy (bits) of top images"),
            ]
        )
        return tables + "\n" + self._summary_figures("purity")

    def optimal_depth(self) -> str:
        if self.optimal is None:
            return self._not_run(
                "optimal depth with confidence intervals", self.summary / "optimal_depth.csv"
            )
        o = self.optimal
        keys = _varying(o, ["model", "dataset", "layer", *OPTIONAL_ID_COLUMNS, "mode", "architecture"]) or [
            "mode"
        ]
        table = o[keys + ["criterion", "optimal_depth"]].rename(columns={"optimal_depth": "depth"})
        table["95% CI"] = [
            f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(o["ci_low"], o["ci_high"], strict=True)
        ]
        table["seeds"] = o["n_seeds"]
        table["log's depth 2"] = o["log_claim_depth2_holds"].map({True: "holds", False: "fails"})
        table = table.sort_values(keys + ["criterion"])
        caption = (
            "Optimal depth per criterion: median over seeds, bootstrap CI over seeds, and whether "
            'the log\'s "depth 2 is optimal" holds.'
        )
        return md_table(table, caption)

    def lineage(self) -> str:
        """Lineage cards and top-image grids of the run study.json names (`headline_run`), else the first run.

        A run folder holds depth1/ and, per mode, {mode}/depth{d}/
        (analysis/{model}/seed{s}/{probe}/{layer}/{sae}/).
        """
        analysis = self.results / "analysis"
        named = self.study.get("headline_run")
        base = analysis / named if named and (analysis / named).is_dir() else analysis
        figures = [
            p
            for p in base.rglob("depth*/figures/*.png")
            if p.parent.parent.name[5:].isdigit() and p.stem.startswith(LINEAGE_FIGURES)
        ]
        if not figures:
            return self._not_run("lineage examples", self.results / "analysis")

        def depth(p: Path) -> int:
            return int(p.parent.parent.name[5:])

        run = (
            base
            if base != analysis
            else min(figures, key=lambda p: (depth(p), p.as_posix())).parent.parent.parent
        )
        out = [f"Examples from run `{self._rel(run)}`.\n"]
        for path in sorted(figures, key=lambda p: (depth(p), p.as_posix())):
            if run in path.parents and depth(path) <= MAX_LINEAGE_DEPTHS:
                where = path.parent.parent.relative_to(run).as_posix()
                out.append(self.figure(path, f"{where}: {path.stem.replace('_', ' ')}."))
        return "\n".join(out)

    def out_of_distribution(self) -> str:
        if self.depths is None:
            return self._not_run("out-of-distribution probes", self.summary / "depths.csv")
        probe = self.trained["dataset_ref"] if "dataset_ref" in self.trained else self.trained["dataset"]
        same = probe.map(_dataset_name) == self.trained["train_dataset"].map(_dataset_name)
        d = self.trained.assign(distribution=same.map({True: "in", False: "out"}))
        if (d["distribution"] == "in").all():
            self.skipped.setdefault("a probe dataset other than the training one", []).append(
                "out-of-distribution probes"
            )
            return "*Not run: every probe dataset in `summary/depths.csv` is the training dataset.*\n"
        keys = (
            _varying(d, ["model", "train_dataset"])
            + ["dataset", "distribution"]
            + _varying(d, ["layer", *OPTIONAL_ID_COLUMNS, "mode", "architecture"])
        )
        return "\n".join(
            depth_table(d, m, label, keys=keys)
            for m, label in [
                ("fvu", "FVU on in- and out-of-distribution probes"),
                ("purity_mean", "Mean label purity on in- and out-of-distribution probes"),
            ]
        )

    def dsprites(self) -> str:
        runs = sorted(p.parent for p in (self.results / "probes").glob("*/probes.csv"))
        if not runs:
            return self._not_run("the dSprites probes", self.results / "probes")
        out = []
        for run in runs:
            p = self._load(run / "probes.csv", PROBE_COLUMNS)
            key = ["train_set", "factor", "probe", "metric"]
            final = p.loc[p["step"] == p.groupby("train_set")["step"].transform("max")]
            by_layer = final.pivot_table(
                index=key, columns="layer", values="value", aggfunc="mean", sort=False
            )
            out.append(f"**`{run.name}`**\n")
            out.append(
                md_table(
                    by_layer.reset_index(),
                    "Probe score per layer at the last training step "
                    "(mean where several checkpoints share it).",
                )
            )
            best = by_layer.dropna(how="all").idxmax(axis=1).rename("layer").reset_index()
            over = p.merge(best, on=key + ["layer"]).pivot_table(
                index=key + ["layer"], columns="step", values="value", aggfunc="mean"
            )
            over.columns = [f"step {s}" for s in over.columns]
            out.append(md_table(over.reset_index(), "Probe score over training at each factor's best layer."))
            out += [
                self.figure(f, f"{run.name}: {f.stem.replace('_', ' ')}.")
                for f in sorted((run / "figures").glob("*.png"))
            ]
        return "\n".join(out)

    def claims(self) -> str:
        if self.claims_table is None:
            return self._not_run("the re-test of the log's claims", self.summary / "claims.csv")
        c = self.claims_table.fillna("")
        return md_table(c[CLAIMS_COLUMNS], "Claims of the research log: its value, ours, and the verdict.")

    def limitations(self) -> str:
        lines = []
        stand_ins = [d["name"] for d in self.datasets() if not d["is_real"]]
        if stand_ins:
            lines.append(
                f"- {', '.join(stand_ins)} are embedded stand-ins, not the real datasets; "
                "numbers on them say how the method behaves, not what real images contain."
            )
        if self.depths is not None:
            n = self.depths["seed"].nunique()
            lines.append(f"- Confidence intervals rest on {n} seed(s) per configuration.")
        lines += [
            f"- Not run, for want of {missing}: {'; '.join(whats)}."
            for missing, whats in self.skipped.items()
        ]
        return "\n".join(lines) + "\n" if lines else ""

    def reproduction(self) -> str:
        config = self.study.get("config_file")
        commit = self.study.get("git_commit")
        at = f"At code commit `{commit}`, from" if commit else "From"
        snakemake = f"snakemake --cores all --configfile {config}" if config else "snakemake --cores all"
        return (
            f"{at} the repository root:\n\n"
            f"```sh\n{snakemake}\n"
            f"metasae report --results results --out results/report\n```\n"
        )

    def other_figures(self) -> str:
        rest = [p for p in sorted((self.summary / "figures").glob("*.png")) if p not in self.placed]
        if not rest:
            return "*No other summary figures.*\n"
        return "\n".join(self.figure(p, p.stem.replace("_", " ").capitalize() + ".") for p in rest)
