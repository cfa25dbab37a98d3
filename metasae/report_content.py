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
from metasae.layout import MODES

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
VERDICTS = ("holds", "fails", "inconclusive", "untested")  # metasae.stages.aggregate.VERDICTS

DEAD_GUARD = 0.1  # depth-1 dead fraction above which the write-up warns (issue 15's guard)
SYNTH_SUMMARY_DIR = "synth_summary"  # `metasae synth-summary`'s folder in a results folder
LINEAGE_FIGURES = ("lineage_card", "top_images")
MAX_LINEAGE_DEPTHS = 3

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


RULE_CAP = 36  # a long text column gets at most this many characters' share of the width
MAX_COLUMNS = 6  # LessWrong's editor and a 36em HTML column read tables this narrow without wrapping numbers


def _one_table(df: pd.DataFrame, caption: str, right: list[str]) -> str:
    header = [str(c) for c in df.columns]
    rows = [
        [fmt(v).replace("|", r"\|").replace("\n", " ") for v in row] for row in df.itertuples(index=False)
    ]
    widths = [max([len(header[i]), 3] + [len(r[i]) for r in rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    # The rule's dashes set the columns' relative widths where pandoc wraps a table to the text width: the
    # longest word of a column (so that none is hyphenated), or its longest cell up to RULE_CAP characters.
    words = [
        max(len(word) for cell in [header[i], *(r[i] for r in rows)] for word in [*cell.split(), ""])
        for i in range(len(header))
    ]
    dashes = [max(word, min(w, RULE_CAP)) for word, w in zip(words, widths, strict=True)]
    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if c in right else (":" + "-" * (w + 1))
            for c, w in zip(df.columns, dashes, strict=True)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *map(line, rows), "", f": {caption}", ""]) + "\n"


def md_table(
    df: pd.DataFrame,
    caption: str,
    right: list[str] | None = None,
    keys: int = 1,
    max_columns: int = MAX_COLUMNS,
) -> str:
    """A pipe table both pandoc and Quarto read; `right` columns (default: numeric ones) align right.

    A table wider than `max_columns` is split into consecutive tables of at most that many columns, each
    repeating the first `keys` columns (the row labels), the other columns shared out evenly."""
    right = (
        right
        if right is not None
        else [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and df[c].dtype != bool]
    )
    columns = list(df.columns)
    if len(columns) <= max_columns:
        return _one_table(df, caption, right)
    key, rest = columns[:keys], columns[keys:]
    parts = math.ceil(len(rest) / (max_columns - keys))
    chunks = [list(c) for c in np.array_split(np.array(rest, dtype=object), parts)]
    return "\n".join(
        _one_table(
            df[key + chunk],
            caption + f" (part {i} of {parts})" if i == 1 else f"Continued (part {i} of {parts}).",
            right,
        )
        for i, chunk in enumerate(chunks, 1)
    )


def merge_keys(df: pd.DataFrame, keys: list[str], name: str = "configuration") -> pd.DataFrame:
    """One row-label column in place of several identity columns (values joined by ' · ')."""
    if len(keys) <= 1:
        return df
    label = df[keys].astype(str).agg(" · ".join, axis=1)
    return pd.concat([label.rename(name), df.drop(columns=keys)], axis=1)


def _dataset_name(ref: object) -> str:
    """'mnist:test[8000:]' -> 'mnist': splits of one dataset are the same distribution."""
    return str(ref).split(":", 1)[0]


def _varying(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """The identity columns that take more than one value (constant ones are stated in Setup), less the
    architecture where the mode and depth fix it (depth 1's SAE and each mode's meta-SAE)."""
    keys = [c for c in columns if c in df.columns and df[c].nunique(dropna=False) > 1]
    if "architecture" in keys and len(keys) > 1:
        rest = [k for k in keys if k != "architecture"] + (["depth"] if "depth" in df else [])
        if df.groupby(rest, dropna=False)["architecture"].nunique(dropna=False).max() <= 1:
            keys.remove("architecture")
    return keys


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
    rows = f" Rows: {' · '.join(k.replace('_', ' ') for k in keys)}." if len(keys) > 1 else ""
    return md_table(
        merge_keys(wide.reset_index(), keys), f"{label} by depth{how}.{rows}", right=list(wide.columns)
    )


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


def _setup_label(study: dict) -> str:
    """How the log comparison names a study: by the preset its config names, else as the fixed setup."""
    preset = (study.get("config") or {}).get("preset")
    return f"{preset} preset" if preset else "fixed setup"


def _log_probe(depths: pd.DataFrame, dataset: str) -> tuple[str, bool] | None:
    """Our probe (of one classifier's rows) for one of the log's datasets, and whether it is a stand-in:
    real EMNIST where it was run, else `glyphs`."""
    names = depths["dataset_ref"].map(_dataset_name) if "dataset_ref" in depths else depths["dataset"]
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
    if math.isnan(value):
        return "–"
    if quantity == "accuracy":
        return f"{value:.2%}"
    return f"{fmt(value)}/{fmt(width)}" if width is not None else fmt(value)


def _headline_reconstruction(g: pd.DataFrame) -> str:
    """The headline reconstruction: the layer rebuilt from the first and the deepest depth (stack FVU and
    loss recovered), never each depth's own-input FVU, whose inputs differ from depth to depth."""
    if "stack_fvu" not in g or g["stack_fvu"].isna().all():
        return "no stack FVU in depths.csv"
    fvu = g.groupby("depth")["stack_fvu"].median().dropna()
    loss = g.groupby("depth")["loss_recovered"].median() if "loss_recovered" in g else pd.Series(dtype=float)

    def at(depth: int) -> str:
        recovered = f" and loss recovered {fmt(loss.get(depth))}" if depth in loss.index else ""
        return f"median FVU {fmt(fvu.loc[depth])}{recovered}"

    first, last = fvu.index[0], fvu.index[-1]
    return f"the layer rebuilt from depth {first} has {at(first)}; from depth {last}, {at(last)}"


def _dense_rows(g: pd.DataFrame) -> pd.Series:
    """Rows whose decoder-mode routed codes are dense (their image-level statistics enter no verdict)."""
    if "routed_codes_dense" not in g:
        return pd.Series(False, index=g.index)
    return g["routed_codes_dense"].astype(str).str.lower().eq("true")


def _headline_count(g: pd.DataFrame) -> str:
    if "count_fraction" in g and g["count_fraction"].notna().any():
        share = g.loc[~_dense_rows(g)].groupby("depth")["count_fraction"].median().dropna()
        if len(share) < 2:
            where = f"beyond depth {share.index[0]}" if len(share) else "at every depth"
            return f"routed codes are dense {where}, so no activation-count peak is reported"
        return (
            f"the share of the dictionary whose top-10 activations are all non-zero peaks at depth "
            f"{share.idxmax()} (median {share.max():.0%}; depths with dense routed codes left out)"
        )
    count = g.groupby("depth")["count_all_top10_nonzero"].median()
    return (
        f"the count of latents whose top-10 activations are all non-zero peaks at depth {count.idxmax()} "
        f"(median {fmt(count.max())})"
    )


# A figure's box on the PDF page: the text width, or less for a tall image, so that the image and its
# caption fit one page (US letter less report/index.qmd's margins: 17.6 x 23.5 cm).
FIGURE_WIDTH_CM, FIGURE_HEIGHT_CM = 17.6, 15.0


def _size(path: Path) -> str:
    """Pandoc's image attribute that fits `path` on a page (read by the HTML and Typst writers; GitHub
    Markdown drops it)."""
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
    fit = min(1.0, FIGURE_HEIGHT_CM / (FIGURE_WIDTH_CM * height / max(width, 1)))
    return f"{{width={fit:.0%}}}"


def _counts(verdicts: pd.Series) -> str:
    """'holds in 1, fails in 11 and untested in 15'."""
    said = verdicts.value_counts()
    shown = [f"{v} in {said[v]}" for v in VERDICTS if said.get(v, 0)]
    if not shown:
        return "has no verdict"
    return ", ".join(shown[:-1]) + (" and " if len(shown) > 1 else "") + shown[-1]


def _verdict_phrase(rows: pd.DataFrame) -> str:
    """A claim's answer over its configuration rows: yes / mostly yes / no / mostly no / unsettled from the
    verdicts, the statistic's range over the rows that decide, and why the others are untested."""
    said = rows["verdict"].value_counts()
    holds, fails, n = said.get("holds", 0), said.get("fails", 0), len(rows)
    decided = rows.loc[rows["verdict"] != "untested"]
    if decided.empty:
        why = ""
        if "basis" in rows:
            why = ": " + ", ".join(sorted(set(rows["basis"].astype(str)) - {"measured"}))
        return f"untested ({n} of {n} configurations{why})"
    if holds == len(decided):
        answer = "yes"
    elif fails == len(decided):
        answer = "no"
    elif holds > len(decided) / 2 and not fails:
        answer = "mostly yes"
    elif fails > len(decided) / 2 and not holds:
        answer = "mostly no"
    else:
        answer = "unsettled"
    span = ""
    if "estimate" in decided:
        est = pd.to_numeric(decided["estimate"], errors="coerce").dropna()
        name = str(decided["statistic"].iloc[0]) if "statistic" in decided else "statistic"
        name = name.removeprefix("mean over seeds of ").removeprefix("median over seeds of ")
        if len(est):
            values = fmt(est.min()) if est.nunique() == 1 else f"{fmt(est.min())} to {fmt(est.max())}"
            span = f"{name} {values}; "
    return f"{answer} ({span}the claim {_counts(rows['verdict'])} of {n} configurations)"


class ReportData:
    """The results folder as the report reads it; figures used are copied into `figures_dir`. `compare`: a
    second study's results folder, set beside this one by the log comparison (`metasae report --compare`).
    """

    def __init__(
        self, results: str | Path, figures_dir: str | Path = "figures", compare: str | Path | None = None
    ) -> None:
        self.results = Path(results)
        self.compare = Path(compare) if compare else None
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
        return f"![{caption}]({self.figures_dir.name}/{name}){_size(path)}\n"

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
    def _headline_optimal(self, head: pd.DataFrame) -> pd.DataFrame | None:
        """optimal_depth.csv's rows for the headline's datasets and models."""
        if self.optimal is None:
            return None
        return self.optimal.loc[
            self.optimal["dataset"].isin(head["dataset"].unique())
            & self.optimal["model"].isin(head["model"].unique())
        ]

    def _claim_rows(self, word: str, head: pd.DataFrame | None = None) -> pd.DataFrame:
        """claims.csv's rows whose claim mentions `word` (for the headline's datasets, where given)."""
        c = self.claims_table
        if c is None:
            return pd.DataFrame(columns=CLAIMS_COLUMNS)
        rows = c.loc[c["claim"].str.contains(word, case=False, regex=False)]
        if head is not None and "dataset" in rows:
            rows = rows.loc[rows["dataset"].isin(head["dataset"].unique())]
        return rows

    def _answer_optimal(self, head: pd.DataFrame) -> str:
        opt = self._headline_optimal(head)
        if opt is None or opt.empty:
            return "**Optimal depth:** not measured here (`summary/optimal_depth.csv` is absent)."
        measured = opt.loc[opt["basis"] == "measured"] if "basis" in opt else opt
        if measured.empty:
            answer = "No criterion could be measured at enough depths to name one"
        else:
            depths = measured["optimal_depth"]
            if depths.nunique() == 1:
                answer = f"Every measured criterion puts it at depth {fmt(depths.iloc[0])}"
            else:
                answer = (
                    f"No single depth: the measured criteria's optima range over depths {fmt(depths.min())}"
                    f"–{fmt(depths.max())} (median {fmt(depths.median())}) across {len(measured)} "
                    "(configuration, criterion) pairs"
                )
        if "log_claim_depth2" in opt:
            verdicts = opt["log_claim_depth2"]
        else:
            verdicts = opt["log_claim_depth2_holds"].map({True: "holds", False: "fails"})
        return (
            f'**Optimal depth:** {answer[0].lower()}{answer[1:]}; the research log\'s "depth 2 is optimal", '
            f"judged by the CI of the optimal depth, {_counts(verdicts)} of {len(opt)} (configuration, "
            "criterion) pairs."
        )

    def _answer_atomic(self, head: pd.DataFrame) -> str:
        rows = self._claim_rows("atomic", head)
        if rows.empty:
            return "**More atomic with depth:** not tested here (no such claim in `claims.csv`)."
        groups = rows.groupby("mode") if "mode" in rows else [(None, rows)]
        parts = [(f"in `{mode}` mode " if mode else "") + _verdict_phrase(g) for mode, g in groups]
        text = "; ".join(parts)
        return f"**More atomic (purer in label) with depth:** {text}."

    def _answer_cost(self, head: pd.DataFrame) -> str:
        """The headline reconstruction: the layer rebuilt from the first and the deepest depth per mode
        (stack FVU and loss recovered), never each depth's own-input FVU."""
        if "stack_fvu" not in head or head["stack_fvu"].isna().all():
            return "**Cost of depth:** not measured here (no stack FVU in `summary/depths.csv`)."
        parts = [f"in `{mode}` mode {_headline_reconstruction(g)}" for mode, g in head.groupby("mode")]
        text = "; ".join(parts)
        return (
            f"**Cost of depth:** {text} (FVU 1 is no better than predicting the "
            "mean; loss recovered 0 is no better than zeroing the layer)."
        )

    def tldr(self) -> str:
        """3-5 sentences: what was run, the two answers with their verdict counts, what depth costs, and
        how sure the answers are."""
        if self.depths is None:
            return self._not_run("the headline numbers", self.summary / "depths.csv")
        head, label = self.headline()
        n_cfg = len(head.groupby(_varying(head, ID_COLUMNS + OPTIONAL_ID_COLUMNS) or ["mode"]))
        n_seeds = head["seed"].nunique()
        modes = sorted(head["mode"].unique())
        sentences = [
            f"We trained SAEs on a classifier's activations and meta-SAEs on those SAEs down to depth "
            f"{head['depth'].max()} ({' and '.join(f'`{m}`' for m in modes)} mode), on {label}: "
            f"{n_cfg} configuration(s), {n_seeds} seed(s) each.",
            self._answer_optimal(head),
            self._answer_atomic(head),
            self._answer_cost(head),
        ]
        few = self._rule("min_seeds", 5)
        sure = [
            f"{self._rule('ci_level', 0.95):.0%} percentile-bootstrap CIs over {n_seeds} seed(s)"
            + (f", fewer than the {few} a real study uses, so they are coarse" if n_seeds < few else "")
        ]
        if not head["is_real"].any():
            sure.append(
                "embedded stand-ins only, so the numbers say how the method behaves, not what real "
                "images contain"
            )
        if "dead_fraction" in head:
            dead = head.loc[head["depth"] == 1, "dead_fraction"].max()
            if dead >= DEAD_GUARD:
                sure.append(
                    f"up to {dead:.0%} of the depth-1 latents are dead (never active on the probe images; "
                    f"the guard is under {DEAD_GUARD:.0%})"
                )
        if self.claims_table is not None:
            counts = self.claims_table["verdict"].value_counts()
            sure.append(
                f"of all {len(self.claims_table)} re-tests of the research log's claims, "
                f"{counts.get('holds', 0)} hold, {counts.get('fails', 0)} fail, "
                f"{counts.get('inconclusive', 0)} are inconclusive and {counts.get('untested', 0)} untested "
                "(a statistic fixed by construction or measured on dense codes decides nothing)"
            )
        sentences.append("**How sure:** " + "; ".join(sure) + ".")
        return "\n\n".join(sentences) + "\n"

    def claims_summary(self) -> str:
        """The research log's claims at a glance: per claim, how many configurations each verdict got and the
        range of the statistic (the per-configuration tables are in the appendix)."""
        if self.claims_table is None:
            return self._not_run("the re-test of the log's claims", self.summary / "claims.csv")
        c = self.claims_table
        if "basis" not in c:
            table = c[["claim", "log_value", "our_value", "verdict"]].astype(object).fillna("")
            table.columns = ["claim", "the log", "ours", "verdict"]
            return md_table(table, "Claims of the research log: its value, ours, and the verdict.")
        by = ["claim", "mode"] if "mode" in c and c["mode"].notna().any() else ["claim"]
        order = {claim: i for i, claim in enumerate(dict.fromkeys(c["claim"]))}
        rows = []
        for key, g in sorted(c.groupby(by, sort=False), key=lambda kg: (order[kg[0][0]], str(kg[0][1:]))):
            said = g["verdict"].value_counts()
            row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
            row |= {v: str(said.get(v, 0)) for v in VERDICTS}
            why = sorted(set(g.loc[g["verdict"] == "untested", "basis"].astype(str)) - {"measured"})
            if why:
                row["untested"] += f" ({', '.join(why)})"
            rows.append(row)
        return md_table(
            pd.DataFrame(rows),
            "Claims of the research log at a glance: how many configurations each verdict got (untested: "
            "why). Definitions are in Method; each configuration's statistic and CI are in the appendix.",
            right=[],
        )

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
        parts.append(md_table(facts, "What was run (from depths.csv); dictionary sizes are in the appendix."))
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
        """Tables over trained depths of the metrics this results folder has; image-level statistics of
        dense routed codes are blanked (they measure the dictionary size, not the images)."""
        d = self.trained.copy()
        dense = _dense_rows(d)
        image = [*self._rule("image_statistics", []), "stability_mean_cosine", "stability_fraction_matched"]
        blanked = [m for m, _ in metrics if m in d and m in image and dense.any()]
        on_codes = d["stability_basis"].eq("codes") if "stability_basis" in d else dense
        for m in blanked:
            d[m] = d[m].astype(float).where(~(dense & on_codes if m.startswith("stability") else dense))
        tables = "\n".join(depth_table(d, m, label) for m, label in metrics if m in d and d[m].notna().any())
        if blanked:
            tables += (
                "\n*Decoder-mode depths whose routed codes are dense are blanked (–) in the tables of "
                f"{', '.join(f'`{m}`' for m in blanked)}.*\n"
            )
        return tables

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

    def method(self) -> str:
        """One sentence per statistic, criterion and rule, with the thresholds the aggregate stage used."""
        dense = self._rule("dense_routed_fraction", 0.5)
        stable = self._rule("stable_cosine", 0.9)
        boot = self._rule("n_boot", 2000)
        level = self._rule("ci_level", 0.95)
        few = self._rule("min_seeds", 5)
        deep = self._rule("collapse_depth", 7)
        fixed = self._rule("fixed_l0", {}) or {
            "topk": "TopK keeps exactly k latents per input",
            "batchtopk": "BatchTopK keeps k latents per input on average over its training inputs",
        }
        n_seeds = self.depths["seed"].nunique() if self.depths is not None else None
        seeds = ""
        if n_seeds:
            seeds = f" This study has {n_seeds} seed(s) per configuration" + (
                f", fewer than the {few} of a real study; each CI says so." if n_seeds < few else "."
            )
        lines = [
            "**Statistics** (per depth; each count is also given as a share of that depth's dictionary, "
            "because the width schedule changes the dictionary from depth to depth):",
            "",
            "- *Stack FVU*: the FVU of the layer's activations rebuilt from depth $d$ (activations mode: "
            "encode down the stack and decode back up; decoder mode: the parent's codes applied to its "
            "decoder rows as depth $d$ rebuilds them), the same input at every depth, so it is the headline "
            "reconstruction; each depth's own-input FVU (depth 1 fits the layer, decoder-mode depths fit "
            "decoder rows, activations-mode depths fit codes) is not comparable across depths.",
            "- *Loss recovered*: $(CE_\\text{zero} - CE_\\text{spliced}) / (CE_\\text{zero} - "
            "CE_\\text{clean})$ with the layer rebuilt from depth $d$ spliced into the classifier, against "
            "the baseline of zero-ablating the layer (1 = as good as the clean model, 0 = no better than "
            "zeros, negative = worse than zeros).",
            "- *Spliced accuracy*: the classifier's accuracy with the stack spliced in; on an "
            "out-of-distribution probe whose labels are not the classifier's classes it is the agreement "
            "with the clean classifier's own predictions.",
            "- *Density*: the share of probe images on which a latent is non-zero; a latent is *alive* when "
            "its density is above 0 and *dead* otherwise (dead fraction = dead latents / dictionary size).",
            "- *Mean active* (`mean_active_per_image`): the mean number of non-zero latents per probe image; "
            "*L0* is the same on the SAE's own inputs.",
            "- *Activation count* (`count_all_top10_nonzero`, the log's statistic): the number of latents "
            "whose ten highest activations over the probe images are all non-zero; `count_fraction` divides "
            "it by the dictionary size.",
            "- *Purity*: the largest share of one label among a latent's top-10 images, averaged over alive "
            "latents.",
            "- *Lineage weight*: the meta-code value linking parent latent $j$ to meta-latent $i$ (decoder "
            "mode: the meta-SAE's code of parent decoder row $j$; activations mode: its code of latent $j$ "
            "firing alone at its mean active value); parents per meta-latent and meta-latents per parent "
            "count the non-zero weights.",
            "- *Decoder FVE*: the fraction of the variance of depth $d-1$'s unit-normed decoder rows that "
            "depth $d$'s meta-SAE explains (decoder mode), SAEBench's `meta_structure` number "
            "(`summary/meta_structure.json`).",
            f"- *Stability*: each seed's alive latents are matched one-to-one with another seed's by the "
            f"Hungarian algorithm on cosine similarity (of decoder rows where the seeds share the layer's "
            f"space, else of the latents' centred activations over the same probe images, i.e. their "
            f"Pearson correlation); a seed's stability is the mean matched similarity, and the share of "
            f"matched pairs above {stable}, averaged over the other seeds.",
            "",
            "**Optimal-depth criteria** (each seed's best depth; their median; a percentile-bootstrap CI "
            "over seeds):",
            "",
            "- `max_purity`: the depth of highest mean purity.",
            "- `max_activation_count`: the depth of highest `count_fraction` (the log's criterion, as a "
            "share of the dictionary).",
            "- `max_mean_active`: the depth of highest mean active share of the dictionary.",
            "- `max_stability`: the depth of highest cross-seed stability: a depth is real if it is "
            "reproducible.",
            "- `fvu_knee`: the knee of the stack-FVU curve, the depth farthest from the chord joining its "
            "ends (Kneedle).",
            "",
            "**What never enters an optimum or a verdict:**",
            "",
            "- *Fixed by construction*: "
            + "; ".join(f"{name}: {how}" for name, how in fixed.items())
            + ", so where such an SAE produces the image codes (depth 1, every activations-mode depth) the "
            "mean active count, its share and L0 are set by k and the width schedule, not by the data; in "
            "decoder mode the meta-SAE's L0 (meta-latents per parent) is set the same way. ReLU and JumpReLU "
            "SAEs let L0 vary and get a real test.",
            f"- *Dense routed codes*: in decoder mode an image's depth-$d$ code is routed through the "
            f"meta-codes; where more than {dense:.0%} of the dictionary is active per image on average, its "
            "image-level statistics (alive, dead, counts, mean active, purity, entropy) measure the "
            "dictionary size, not the images.",
            "- *Raw counts*: only the shares of the dictionary are compared across depths.",
            "",
            f"**Verdicts** are given per (configuration, mode) from a statistic and a {level:.0%} "
            f"percentile-bootstrap CI over seeds (seeds resampled with replacement, {boot} draws): *holds* "
            "when the CI lies inside the region the claim asserts, *fails* when it lies outside, "
            "*inconclusive* when it crosses the region's boundary (or fewer than 2 seeds give the "
            "statistic), *untested* when the statistic is excluded at the depths the claim needs or the "
            "study did not reach them. Regions: *depth 2 is optimal*: the CI of the median optimal depth "
            "lies within (1.5, 2.5), which needs depths 1-3; *increases with depth*: the mean over seeds "
            "of each seed's Spearman correlation of the statistic with depth has a CI above 0; *deep stacks "
            "collapse*: the share of seeds whose stack collapsed (all latents dead, or the min_alive stop "
            f"rule fired) by depth {deep} has a CI above 0.5." + seeds,
        ]
        return "\n".join(lines) + "\n"

    def _main_figure(self, metric: str, what: str) -> str:
        """A main-text figure of `metric` vs depth, drawn here from depths.csv (with the metric's reference
        lines, image-level statistics of dense routed codes blanked); `what`: the sentence saying what to
        see. The aggregate stage's copy of the same figure is left out of the appendix."""
        from metasae.figures.summary import METRICS, plot_metric_vs_depth

        d = self.depths.copy()
        if metric not in d or d[metric].isna().all():
            return ""
        image = [*self._rule("image_statistics", []), "count_fraction", "purity_mean"]
        if metric in image:
            d[metric] = d[metric].astype(float).where(~_dense_rows(d))
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        name = f"main-{metric}_vs_depth.png"
        plot_metric_vs_depth(d, metric, METRICS.get(metric, metric), self.figures_dir / name)
        self.placed.add(self.summary / "figures" / f"{metric}_vs_depth.png")
        return f"![{what}]({self.figures_dir.name}/{name}){_size(self.figures_dir / name)}\n"

    def _trend(self, metric: str) -> str:
        """`metric`'s median over the headline rows at the first and the last depth, per mode."""
        head, _ = self.headline()
        if metric not in head:
            return ""
        parts = []
        for mode, g in head.groupby("mode"):
            g = g.loc[~_dense_rows(g)] if metric in ("count_fraction", "purity_mean") else g
            med = g.groupby("depth")[metric].median().dropna()
            if len(med) >= 2:
                parts.append(
                    f"`{mode}` mode {fmt(med.iloc[0])} at depth {med.index[0]} to {fmt(med.iloc[-1])} at "
                    f"depth {med.index[-1]}"
                )
        return "; ".join(parts)

    def reconstruction(self) -> str:
        """The headline reconstruction: the stack FVU table and its figure (other statistics: appendix)."""
        if self.depths is None:
            return self._not_run("reconstruction and sparsity vs depth", self.summary / "depths.csv")
        metric = (
            "stack_fvu" if "stack_fvu" in self.trained and self.trained["stack_fvu"].notna().any() else "fvu"
        )
        label = (
            "FVU of the layer rebuilt from each depth (one input at every depth)"
            if metric == "stack_fvu"
            else "FVU of each depth's own inputs"
        )
        trend = self._trend(metric)
        what = (
            "Stack FVU vs depth (line: mean over seeds; band: min–max). What to see: how fast the curves "
            "climb towards the dashed line at 1, the FVU of predicting the mean"
            + (f" (median {trend})" if trend else "")
            + "."
        )
        return "\n".join([self._metric_tables([(metric, label)]), self._main_figure(metric, what)])

    def activation_counts(self) -> str:
        """The log's activation count as a share of the dictionary: its table and figure."""
        if self.depths is None:
            return self._not_run("activation counts vs depth", self.summary / "depths.csv")
        d = self.trained
        metric = "count_fraction" if "count_fraction" in d and d["count_fraction"].notna().any() else None
        metric = metric or "count_all_top10_nonzero"
        label = (
            "Share of the dictionary whose top-10 activations are all non-zero (the log's count / dictionary "
            "size)"
            if metric == "count_fraction"
            else "Latents whose top-10 activations are all non-zero (the log's count)"
        )
        head, _ = self.headline()
        peaks = "; ".join(f"`{mode}` mode: {_headline_count(g)}" for mode, g in head.groupby("mode"))
        what = (
            (
                "The log's activation count as a share of each depth's dictionary"
                if metric == "count_fraction"
                else "The log's activation count"
            )
            + f" vs depth. What to see: where each curve peaks, the depth the log's criterion calls optimal "
            f"({peaks})."
        )
        return "\n".join([self._metric_tables([(metric, label)]), self._main_figure(metric, what)])

    def more_metrics(self) -> str:
        """Appendix: every other statistic by depth, the depths that did not train, the dictionary sizes, the
        log's counts beside ours, and the statistics that enter no verdict."""
        if self.depths is None:
            return self._not_run("the other statistics by depth", self.summary / "depths.csv")
        tables = self._metric_tables(
            [
                ("loss_recovered", "Loss recovered with the layer rebuilt from each depth spliced in"),
                ("spliced_accuracy", "Classifier accuracy with the stack spliced in"),
                (
                    "fvu",
                    "FVU of each depth's own inputs (depth 1: the layer; decoder mode: the parent's decoder "
                    "rows; activations mode: the parent's codes), not comparable across depths",
                ),
                ("l0", "L0 (mean active latents per input)"),
                ("alive_fraction", "Alive latents as a share of the dictionary"),
                ("dead_fraction", "Dead fraction: latents never active on the probe images"),
                ("mean_active_fraction", "Mean active latents per image as a share of the dictionary"),
                ("mean_active_per_image", "Mean active latents per image"),
                ("entropy_mean", "Mean label entropy (bits) of top images"),
            ]
        )
        counts = self._log_count_fractions()  # empty where the main text's table is the raw count already
        sizes = depth_table(
            self.trained,
            "d_sae",
            "Dictionary size (latents)",
            keys=_varying(self.trained, ["mode", "architecture"]) or ["mode"],
            spread=False,
        )
        parts = [tables, counts, self._exclusions(), self._stops(), sizes]
        return "\n".join(p for p in parts if p)

    def _log_count_fractions(self) -> str:
        """The log's counts per depth (raw and as a share of its 2304 latents) beside ours (mean count and
        mean share of the dictionary over seeds)."""
        d = self.trained
        if "count_fraction" not in d or d["count_fraction"].isna().all():
            return ""
        rows = []
        for quantity, name in (("emnist_count", "EMNIST"), ("fashion_count", "Fashion-MNIST")):
            counts = {depth: v for (q, depth), v in LOG_NUMBERS.items() if q == quantity}
            rows.append(
                {
                    "source": f"research log: {name} ({LOG_WIDTH} latents)",
                    **{f"d{k}": f"{v:.0f} ({v / LOG_WIDTH:.2f})" for k, v in sorted(counts.items())},
                }
            )
        keys = _varying(d, ["model", "dataset", "layer", *OPTIONAL_ID_COLUMNS, "mode"]) or ["mode"]
        for key, g in d.groupby(keys):
            by_depth = g.groupby("depth")[["count_all_top10_nonzero", "count_fraction"]].mean()
            label = " / ".join(map(str, key if isinstance(key, tuple) else (key,)))
            rows.append(
                {
                    "source": f"ours: {label}",
                    **{f"d{k}": f"{fmt(c)} ({f:.2f})" for k, (c, f) in by_depth.iterrows()},
                }
            )
        table = pd.DataFrame(rows).fillna("–")
        columns = ["source", *sorted((c for c in table.columns if c != "source"), key=lambda c: int(c[1:]))]
        return md_table(
            table[columns],
            "Latents whose top-10 activations are all non-zero: the log's raw count (its share of 2304 "
            "latents) beside ours (mean over seeds; share of that depth's dictionary). Raw counts fall "
            "wherever the width schedule shrinks the dictionary; compare the shares.",
            right=columns[1:],
        )

    def _exclusions(self) -> str:
        """Per mode and depth: the statistics the architecture fixes, and how many rows had dense routed
        codes (whose image-level statistics enter no verdict)."""
        d = self.trained
        if "fixed_by_construction" not in d:
            return ""
        rows = []
        for (mode, depth), g in d.groupby(["mode", "depth"]):
            fixed = sorted({name for v in g["fixed_by_construction"].fillna("") for name in str(v).split()})
            dense = _dense_rows(g)
            if not fixed and not dense.any():
                continue
            share = g["mean_active_fraction"].median() if "mean_active_fraction" in g else math.nan
            rows.append(
                {
                    "mode": mode,
                    "depth": depth,
                    "fixed by construction": ", ".join(fixed) or "–",
                    "dense routed codes": f"{int(dense.sum())} of {len(g)}" if dense.any() else "–",
                    "median active share": share,
                }
            )
        if not rows:
            return ""
        return md_table(
            pd.DataFrame(rows),
            "Statistics that enter no optimum and no verdict: fixed by construction (the SAE's L0 is set "
            "by its k) and image-level statistics of dense routed codes (runs x seeds whose mean active "
            f"share exceeds {self._rule('dense_routed_fraction', 0.5):.0%}).",
        )

    def _rule(self, name: str, default: object) -> object:
        """A rule the aggregate stage used (study.json's `rules`), else the default the code ships."""
        return (self.study.get("rules") or {}).get(name, default)

    def stability(self) -> str:
        if self.depths is None:
            return self._not_run("cross-seed stability and meta-structure", self.summary / "depths.csv")
        d = self.trained
        threshold = self._rule("stable_cosine", 0.9)
        parts = [
            self._metric_tables(
                [
                    ("stability_mean_cosine", "Cross-seed stability: mean Hungarian-matched similarity"),
                    (
                        "stability_fraction_matched",
                        f"Cross-seed stability: share of matched latents above {threshold}",
                    ),
                ]
            )
        ]
        if "stability_basis" in d and d["stability_basis"].notna().any():
            bases = ", ".join(sorted(d["stability_basis"].dropna().unique()))
            parts.append(f"Latents were matched on: {bases}.\n")
        parts.append(
            self._metric_tables(
                [
                    ("decoder_fve", "Decoder FVE of the meta-SAE on its parent's unit-normed decoder rows"),
                    ("parents_per_meta_latent", "Parent latents per alive meta-latent (lineage)"),
                    (
                        "meta_latents_per_parent",
                        "Meta-latents per decomposed parent latent (set by the meta-SAE's k)",
                    ),
                ]
            )
        )
        parts.append(self._meta_structure())
        return "\n".join(p for p in parts if p)

    def _meta_structure(self) -> str:
        path = self.summary / "meta_structure.json"
        if not path.is_file():
            return ""
        self.inputs.add(path)
        data = read_json(path)
        rows = [
            {
                "dataset": r["sae_cfg_dict"]["dataset"],
                "depth": f"{r['sae_cfg_dict']['depth']} → {r['sae_cfg_dict']['depth'] + 1}",
                "fve": r["eval_result_metrics"]["meta_structure"]["decoder_fraction_variance_explained"],
            }
            for r in data.get("results", [])
        ]
        if not rows:
            return ""
        table = (
            pd.DataFrame(rows)
            .groupby(["dataset", "depth"])["fve"]
            .agg(["mean", "min", "max", "count"])
            .reset_index()
            .rename(columns={"mean": "decoder FVE (mean)", "count": "seeds"})
        )
        ref = data.get("reference") or {}
        caption = (
            "SAEBench's meta_structure number (summary/meta_structure.json, in its MetaStructureEvalOutput "
            "shape): the fraction of variance of an SAE's decoder rows that a BatchTopK meta-SAE explains. "
            f"Published beside it: {ref.get('decoder_fraction_variance_explained', '–')} on "
            f"{ref.get('model', '–')} ({ref.get('settings', '')})."
        )
        return md_table(table, caption)

    def purity(self) -> str:
        if self.depths is None:
            return self._not_run("label purity vs depth", self.summary / "depths.csv")
        tables = self._metric_tables([("purity_mean", "Mean label purity of alive latents' top images")])
        trend = self._trend("purity_mean")
        what = (
            "Mean label purity of alive latents' top-10 images vs depth. What to see: whether the curves "
            'rise with depth, as "latents become more atomic" asserts'
            + (f" (median {trend}; depths with dense routed codes left out)" if trend else "")
            + (
                ", and how far they stay above the dotted chance level of each dataset (the purity of random "
                "top images)"
                if "purity_chance" in self.trained
                else ""
            )
            + "."
        )
        return tables + "\n" + self._main_figure("purity_mean", what) + self._superclass_purity()

    def _superclass_purity(self) -> str:
        """Class vs superclass purity by depth where the probe's labels have a taxonomy (Fashion-MNIST): more
        abstract deeper latents keep superclass purity while class purity falls (the abstraction gap)."""
        d = self.trained
        if "superclass_purity_mean" not in d or d["superclass_purity_mean"].isna().all():
            return ""
        d = d.loc[d["superclass_purity_mean"].notna() & ~_dense_rows(d)]
        keys = _varying(d, ["model", "dataset", "layer", *OPTIONAL_ID_COLUMNS, "mode"]) or ["mode"]
        means = d.groupby([*keys, "depth"]).mean(numeric_only=True).reset_index()
        table = pd.DataFrame({"configuration": means[keys].astype(str).agg(" · ".join, axis=1)})
        table["depth"] = means["depth"]
        for level, prefix in (("class", ""), ("superclass", "superclass_")):
            chance = means.get(f"{prefix}purity_chance", pd.Series(math.nan, index=means.index))
            table[f"{level} purity (chance)"] = [
                f"{fmt(p)} ({fmt(c)})" for p, c in zip(means[f"{prefix}purity_mean"], chance, strict=True)
            ]
        if "abstraction_gap" in means:
            table["abstraction gap"] = means["abstraction_gap"]
        return "\n" + md_table(
            table,
            "Purity one level up (labels with superclasses: Fashion-MNIST's tops, footwear, Trouser, Bag), "
            "mean over seeds: class and superclass purity of alive latents' top images, each beside its "
            "chance level (random top images), and the abstraction gap (superclass lift minus class lift, "
            "lift = (purity - chance) / (1 - chance)): a gap rising with depth means deeper latents group "
            "classes into superclasses. Decoder-mode depths with dense routed codes are left out; the "
            "claim's verdict is in the claims table.",
        )

    def optimal_depth(self) -> str:
        if self.optimal is None:
            return self._not_run(
                "optimal depth with confidence intervals", self.summary / "optimal_depth.csv"
            )
        o = self.optimal.copy()
        keys = _varying(o, ["model", "dataset", "layer", *OPTIONAL_ID_COLUMNS, "mode", "architecture"]) or [
            "mode"
        ]
        measured = o["basis"].eq("measured") if "basis" in o else pd.Series(True, index=o.index)
        o["cell"] = [
            f"{fmt(d)} [{fmt(lo)}, {fmt(hi)}]" if ok else f"– ({basis})"
            for d, lo, hi, ok, basis in zip(
                o["optimal_depth"], o["ci_low"], o["ci_high"], measured, o.get("basis", measured), strict=True
            )
        ]
        o["configuration"] = o[keys].astype(str).agg(" · ".join, axis=1)
        wide = o.pivot_table(
            index="configuration", columns="criterion", values="cell", aggfunc="first", sort=False
        )
        wide = wide[list(dict.fromkeys(o["criterion"]))].reset_index().fillna("–")
        wide.columns.name = None
        seeds = sorted(n for n in o["n_seeds"].dropna().astype(int).unique() if n > 0)
        span = "–".join(map(str, sorted({seeds[0], seeds[-1]}))) if seeds else "0"
        caption = (
            "Optimal depth per configuration (rows: "
            + " · ".join(k.replace("_", " ") for k in keys)
            + ") and "
            "criterion (columns; defined in Method): the median over seeds of each seed's best depth, with "
            f"its 95% percentile-bootstrap CI over {span} seeds. The log's \"depth 2 "
            'is optimal" holds where the CI lies within (1.5, 2.5), fails where it lies outside, is '
            "inconclusive where it crosses; a criterion whose statistic is fixed by construction, rests on "
            "dense routed codes or lacks depths 1-3 gives no optimum (–, with the reason)."
        )
        return md_table(wide, caption, right=[])

    def known_depth(self) -> str:
        """Do the criteria find a known depth? The planted-tree runs (issue 16): synth_depth.csv and
        synth_accuracy.csv of `metasae synth-summary`, and its figure."""
        folder = self.results / SYNTH_SUMMARY_DIR  # its own folder: aggregate replaces summary/ whole
        path = folder / "synth_depth.csv"
        depth = self._load(path, ["criterion", "mode", "true_depth", "estimated_median", "ci_low", "ci_high"])
        if depth is None:
            return self._not_run("optimal-depth criteria on planted trees of known depth", path)
        table = depth[["criterion", "mode", "true_depth"]].rename(columns={"true_depth": "true L"})
        table["estimated depth [95% CI]"] = [
            f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]"
            for m, lo, hi in zip(depth["estimated_median"], depth["ci_low"], depth["ci_high"], strict=True)
        ]
        table["cases"] = depth["n_cases"]
        table["right"] = depth["fraction_correct"].map(lambda f: f"{f:.0%}")
        text = md_table(
            table.sort_values(["criterion", "mode", "true L"]),
            "Each criterion's optimal depth on stacks trained on planted trees of depth L (config synth): "
            "median over seeds, percentile-bootstrap CI, and the share of (tree, seed) cases whose estimate "
            "is L. root_match is not a criterion but the oracle: the first depth whose latents best match "
            "the planted roots.",
        )
        accuracy = self._load(folder / "synth_accuracy.csv", ["criterion", "mode", "fraction_correct"])
        if accuracy is not None:
            right = accuracy["fraction_correct"].map(lambda f: f"{f:.0%}")
            accuracy = accuracy.assign(fraction_correct=right)
            text += "\n" + md_table(accuracy, "Share of all (L, seed) cases each criterion gets right.")
        figure = folder / "synth_depth.png"
        if figure.is_file():
            text += "\n" + self.figure(
                figure,
                "Estimated vs planted depth per criterion. What to see: how close each criterion's estimate "
                "comes to the planted depth L; root_match, the oracle, shows what is achievable.",
            )
        return text

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
        table = (
            d.groupby(["model", "dataset"], sort=False)
            .agg(trained_on=("train_dataset", "first"), distribution=("distribution", "first"))
            .reset_index()
            .rename(columns={"trained_on": "classifier trained on"})
        )
        return md_table(
            table,
            "Which probe datasets are in and out of the classifier's training distribution; every table and "
            "figure above has a row or line per probe dataset.",
        )

    def dsprites(self) -> str:
        """One figure per question with its reading and the shape table (metasae/report_dsprites.py)."""
        from metasae import report_dsprites

        return report_dsprites.section(self)

    def dsprites_appendix(self) -> str:
        """Per dSprites run: every factor's probe scores per layer and over training, and its figures."""
        from metasae import report_dsprites

        return report_dsprites.appendix(self)

    def claims(self) -> str:
        if self.claims_table is None:
            return self._not_run("the re-test of the log's claims", self.summary / "claims.csv")
        c = self.claims_table.astype(object).fillna("")
        if "basis" not in c:
            return md_table(
                c[CLAIMS_COLUMNS], "Claims of the research log: its value, ours, and the verdict."
            )
        keys = _varying(c, ["model", "dataset", "layer", *OPTIONAL_ID_COLUMNS, "mode"]) or ["mode"]
        min_seeds = self._rule("min_seeds", 5)
        out = []
        for claim in dict.fromkeys(c["claim"]):
            g = c.loc[c["claim"] == claim]
            first = g.iloc[0]
            table = pd.DataFrame({"configuration": g[keys].astype(str).agg(" · ".join, axis=1)})
            table["estimate [95% CI]"] = [
                f"{fmt(est)} [{fmt(lo)}, {fmt(hi)}]"
                if lo != ""
                else f"{fmt(est)} (no CI)"
                if est != ""
                else "–"
                for est, lo, hi in zip(g["estimate"], g["ci_low"], g["ci_high"], strict=True)
            ]
            table["seeds"] = [
                f"{n}" + (f" (< {min_seeds})" if n != "" and 0 < int(n) < min_seeds else "")
                for n in g["n_seeds"]
            ]
            table["verdict"] = g["verdict"]
            table["basis"] = [
                (e if e.startswith(b) else f"{b}: {e}") if e and b != "measured" else b
                for b, e in zip(g["basis"], g["excluded"], strict=True)
            ]
            out.append(
                f"**{claim}.** The log: {first['log_value']}. Statistic: {first['statistic']}; "
                f"it holds when {first['region']}.\n"
            )
            rows = " · ".join(k.replace("_", " ") for k in keys)
            out.append(md_table(table, f"{claim}: per configuration ({rows}), with the CI over seeds."))
        return "\n".join(out)

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
            few = self._rule("min_seeds", 5)
            lines.append(
                f"- Confidence intervals rest on {n} seed(s) per configuration"
                + (f", fewer than the {few} a real study uses: they are wide and coarse." if n < few else ".")
            )
            widths = self.trained.groupby("depth")["d_sae"].median()
            if len(widths) > 1 and widths.iloc[-1] < widths.iloc[0]:
                lines.append(
                    f"- Dictionaries shrink with depth ({fmt(widths.iloc[0])} to {fmt(widths.iloc[-1])} "
                    "latents, median), so a statistic that rises with depth may rise with fewer, broader "
                    "latents alone: a width-matched control (a depth-1 SAE of each deeper depth's width) "
                    "is not part of this study."
                )
            if "dead_fraction" in self.trained:
                dead = self.trained.loc[self.trained["depth"] == 1, "dead_fraction"].max()
                if dead >= DEAD_GUARD:
                    lines.append(
                        f"- Up to {dead:.0%} of the depth-1 latents are dead (never active on the probe "
                        "images); the meta-SAEs decompose dictionaries with that many unused rows."
                    )
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
        return "\n".join(
            self.figure(
                p,
                p.stem.replace("_", " ").capitalize() + " (line: mean over seeds; band: min–max over seeds).",
            )
            for p in rest
        )

    # -- the research log's numbers beside ours ---------------------------------------------------
    def _studies(self) -> list[ReportData]:
        """This study and `compare` (where its summary exists), the log preset's first."""
        studies = [self]
        if self.compare is not None and (self.compare / "summary" / "depths.csv").is_file():
            other = ReportData(self.compare, self.figures_dir)
            self.inputs |= other.inputs
            studies.append(other)
        return sorted(studies, key=lambda r: _setup_label(r.study) != "log preset")

    def _log_values(self, mode: str) -> tuple[dict, dict]:
        """This study's numbers for LOG_QUANTITIES in one mode, from its classifier trained on MNIST:
        {(quantity, depth): (value, width or None, note, value for the verdict)}, and {log dataset: (probe,
        stand-in)}. The value: the mean over the seeds that did not stop at that depth (a collapsed depth
        counts, with its zeros); the note: 'stopped' where every seed stopped, 'k/n seeds' where some did; the
        verdict's value counts a stopped seed as collapsed (0: the stop rules fire on dead parents)."""
        d = self.depths
        models = sorted(d.loc[d["train_dataset"].map(_dataset_name) == "mnist", "model"].unique())
        if not models:
            return {}, {}
        d = d.loc[(d["model"] == models[0]) & (d["mode"] == mode)]
        values: dict[tuple[str, int], tuple[float, float | None, str | None, float]] = {}
        accuracy = [
            read_json(p).get("test_accuracy")
            for p in sorted((self.results / "models" / models[0]).glob("seed*/metrics.json"))
        ]
        accuracy = [a for a in accuracy if a is not None]
        if accuracy:
            self.inputs |= set((self.results / "models" / models[0]).glob("seed*/metrics.json"))
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
                    value, width = self._log_value(q, rows)
                    k = rows["seed"].nunique()
                    note = f"{k}/{n} seeds" if k < n else None
                    values[(q, int(depth))] = (value, width, note, value * k / n)
        return values, probes

    def _log_value(self, quantity: str, rows: pd.DataFrame) -> tuple[float, float | None]:
        """(mean over `rows`, mean width where the quantity is shown against it)."""
        width = float(rows["d_sae"].mean()) if quantity in LOG_WIDTH_QUANTITIES else None
        if quantity == "loss":
            losses = [_final_loss(self.results, row) for _, row in rows.iterrows()]
            return (float("nan") if np.isnan(losses).all() else float(np.nanmean(losses))), None
        column = {"alive": "alive_latents", "emnist_l0": "mean_active_per_image"}.get(
            quantity, "count_all_top10_nonzero"
        )
        return float(rows[column].astype(float).mean()), width

    def log_comparison(self) -> str:
        """The research log's numbers (LOG_NUMBERS), depth by depth, beside the log preset's and the fixed
        setup's (this study and `compare`), whether the preset reproduces each, and where not, why."""
        if self.depths is None:
            return self._not_run("the research log's numbers beside ours", self.summary / "depths.csv")
        columns = [
            (f"{_setup_label(r.study)}: {mode} ({r.depths['seed'].nunique()} seeds)", r, mode)
            for r in self._studies()
            if r.depths is not None
            for mode in sorted(r.depths["mode"].unique(), key=lambda m: m != "activations")  # the log's first
        ]
        found = {name: r._log_values(mode) for name, r, mode in columns}
        if not any(values for values, _ in found.values()):
            self.skipped.setdefault("a classifier trained on MNIST", []).append("the log comparison")
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
