"""The results folder as the report reads it: its tables checked on loading, its figures placed.

One `ReportData` is shared by every section in document order, so that it records every file the
report read (provenance.json's inputs), every figure placed (the appendix shows the rest) and every
section left unrun for want of an input (Limitations lists them).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd

from metasae.errors import MetasaeError
from metasae.io import read_json
from metasae.layout import MODES
from metasae.writeup.columns import CLAIMS_COLUMNS, DEPTHS_COLUMNS, OPTIMAL_COLUMNS, VERDICTS
from metasae.writeup.format import figure_size, not_run

DEAD_GUARD = 0.1  # depth-1 dead fraction above which the write-up warns (issue 15's guard)


def dataset_name(ref: object) -> str:
    """'mnist:test[8000:]' -> 'mnist': splits of one dataset are the same distribution."""
    return str(ref).split(":", 1)[0]


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame | None:
    """The table at `path` (None where absent); unreadable or short of `columns`, an error, not a blank."""
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
    """A value outside `allowed` is an error: a misspelt mode or verdict would drop rows silently."""
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


def dense_rows(g: pd.DataFrame) -> pd.Series:
    """Rows whose decoder-mode routed codes are dense (their image-level statistics enter no verdict)."""
    if "routed_codes_dense" not in g:
        return pd.Series(False, index=g.index)
    return g["routed_codes_dense"].astype(str).str.lower().eq("true")


def fixed_rows(g: pd.DataFrame, metric: str) -> pd.Series:
    """Rows whose `metric` the architecture fixes (depths.csv's `fixed_by_construction` names it): a value
    set by k, not by the data, which the report does not table."""
    if "fixed_by_construction" not in g:
        return pd.Series(False, index=g.index)
    return g["fixed_by_construction"].fillna("").astype(str).str.split().map(lambda names: metric in names)


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
        self.depths = self.load(self.summary / "depths.csv", DEPTHS_COLUMNS)
        self.trained: pd.DataFrame | None = (
            None  # the depths that trained; stopped or collapsed ones are reported apart
        )
        if self.depths is not None:
            _check_values(self.depths, self.summary / "depths.csv", "mode", MODES)
            _as_bool(self.depths, self.summary / "depths.csv", "is_real")
            trained = self.depths["status"] == "trained" if "status" in self.depths else True
            self.trained = self.depths.loc[trained]
        self.optimal = self.load(self.summary / "optimal_depth.csv", OPTIMAL_COLUMNS)
        if self.optimal is not None:
            _check_values(self.optimal, self.summary / "optimal_depth.csv", "mode", MODES)
            _as_bool(self.optimal, self.summary / "optimal_depth.csv", "log_claim_depth2_holds")
        self.claims_table = self.load(self.summary / "claims.csv", CLAIMS_COLUMNS)
        if self.claims_table is not None:
            _check_values(self.claims_table, self.summary / "claims.csv", "verdict", VERDICTS)
        study_path = self.summary / "study.json"
        self.study: dict = read_json(study_path) if study_path.is_file() else {}
        if study_path.is_file():
            self.inputs.add(study_path)
        if not isinstance(self.study, dict):
            raise MetasaeError(f"{study_path}: expected a JSON object")

    def load(self, path: Path, columns: list[str]) -> pd.DataFrame | None:
        """A table of the results folder (checked by `_read_csv`), recorded as an input."""
        df = _read_csv(path, columns)
        if df is not None:
            self.inputs.add(path)
        return df

    def rel(self, path: Path) -> str:
        """`path` as the report names it: relative to the results folder."""
        return path.relative_to(self.results).as_posix()

    def skip(self, what: str, missing: Path) -> str:
        """The sentence a section prints for want of `missing`, recorded for Limitations."""
        self.skipped.setdefault(f"`{self.rel(missing)}`", []).append(what)
        return not_run(what, self.rel(missing))

    def figure(self, path: Path, caption: str) -> str:
        """Copy a results figure next to the document and reference it by relative path."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", self.rel(path))
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, self.figures_dir / name)
        self.inputs.add(path)
        self.placed.add(path)
        return f"![{caption}]({self.figures_dir.name}/{name}){figure_size(path)}\n"

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

    def rule(self, name: str, default: object) -> object:
        """A rule the aggregate stage used (study.json's `rules`), else the default the code ships."""
        return (self.study.get("rules") or {}).get(name, default)
