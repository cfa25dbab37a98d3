"""Table and number formatting for the write-up: pure functions of data frames and values.

Every table of the report goes through `md_table`, so that pandoc, Quarto and LessWrong all read the
same pipe tables at a width that does not wrap numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from metasae.writeup.columns import CONFIGURATION_COLUMNS, ID_COLUMNS, OPTIONAL_ID_COLUMNS


def not_run(what: str, missing: str) -> str:
    """The one sentence a section prints instead of its content when its input is absent."""
    return f"*Not run: {what} — `{missing}` is absent from this results folder.*\n"


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 seed', '2 seeds': a count with its noun agreeing, so that no sentence needs '(s)'."""
    return f"{n} {word if n == 1 else many or word + 's'}"


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
    """One pipe table, its columns padded to a common width, its caption below."""
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
    return pd.concat([row_labels(df, keys).rename(name), df.drop(columns=keys)], axis=1)


def row_labels(df: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each row's identity columns `keys` as one label (values joined by ' · ')."""
    return df[keys].astype(str).agg(" · ".join, axis=1)


def configuration_keys(df: pd.DataFrame, columns: Sequence[str] = CONFIGURATION_COLUMNS) -> list[str]:
    """The identity columns that take more than one value (constant ones are stated in Setup), less the
    architecture where the mode and depth fix it (depth 1's SAE and each mode's meta-SAE); the mode
    where none varies, so that every table has a row label."""
    keys = [c for c in columns if c in df.columns and df[c].nunique(dropna=False) > 1]
    if "architecture" in keys and len(keys) > 1:
        rest = [k for k in keys if k != "architecture"] + (["depth"] if "depth" in df else [])
        if df.groupby(rest, dropna=False)["architecture"].nunique(dropna=False).max() <= 1:
            keys.remove("architecture")
    return keys or ["mode"]


def depth_table(
    df: pd.DataFrame, metric: str, label: str, keys: list[str] | None = None, spread: bool = True
) -> str:
    """`metric` by depth (columns d1, d2, ...), mean (± sd over seeds if `spread`), one row per
    configuration."""
    keys = keys or configuration_keys(df, ID_COLUMNS + OPTIONAL_ID_COLUMNS)
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


# A figure's box on the PDF page: the text width, or less for a tall image, so that the image and its
# caption fit one page (US letter less report/index.qmd's margins: 17.6 x 23.5 cm).
FIGURE_WIDTH_CM, FIGURE_HEIGHT_CM = 17.6, 15.0


def figure_size(path: Path) -> str:
    """Pandoc's image attribute that fits `path` on a page (read by the HTML and Typst writers; GitHub
    Markdown drops it)."""
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
    fit = min(1.0, FIGURE_HEIGHT_CM / (FIGURE_WIDTH_CM * height / max(width, 1)))
    return f"{{width={fit:.0%}}}"
