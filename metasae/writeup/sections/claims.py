"""The research log's claims re-tested: at a glance in the main text (Table 1, whose counts the TL;DR
quotes), per configuration in the appendix.

`CLAIMS` names each claim once, so that the TL;DR, the table and the captions call it the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from metasae.writeup.columns import CLAIMS_COLUMNS, VERDICTS
from metasae.writeup.data import ReportData
from metasae.writeup.format import configuration_keys, fmt, md_table, plural, row_labels


@dataclass(frozen=True)
class Claim:
    """A claim of claims.csv as the write-up names it: found by `keyword` in its text; `question`: the
    TL;DR question it answers (if any); `number`: what its estimate is, in plain words; `beside`: the name
    of a claim whose number the answer quotes too (the width-matched control beside the raw trend)."""

    keyword: str
    name: str
    question: str = ""
    number: str = ""
    beside: str = ""


CLAIMS = (
    Claim(
        "optimal",
        "depth 2 is optimal",
        "Is there an optimal depth?",
        "share of seeds peaking at depth 2",
    ),
    Claim(
        "atomic",
        "more atomic with depth",
        "Do latents get more atomic with depth?",
        "mean correlation of purity with depth",
        beside="beats a same-width SAE",
    ),
    Claim(
        "same width",
        "beats a same-width SAE",
        number="purity lift minus the control's",
    ),
    Claim("average number of activations", "more active latents with depth"),
    Claim("collapse", "deep stacks collapse"),
    Claim("abstract", "more abstract with depth"),
)
QUESTIONS = tuple(c for c in CLAIMS if c.question)


def claim_name(text: str) -> str:
    """The short name of claims.csv's claim `text` (the text itself where no name matches)."""
    low = text.lower()
    return next((c.name for c in CLAIMS if c.keyword in low), text)


def null_datasets(report: ReportData) -> list[str]:
    """The probes whose labels were shuffled (`probes.<name>.shuffle_labels`): the null, not a finding."""
    d = report.depths
    if d is None or "labels_shuffled" not in d:
        return []
    shuffled = d["labels_shuffled"].astype(str).str.lower() == "true"
    return sorted(set(d.loc[shuffled, "dataset"]))


def study_claims(report: ReportData) -> pd.DataFrame | None:
    """claims.csv's rows that Table 1 and the TL;DR count: every configuration but the shuffled-label
    probes', which the caption reports apart."""
    c = report.claims_table
    if c is None or "dataset" not in c:
        return c
    return c.loc[~c["dataset"].isin(null_datasets(report))]


def claim_rows(report: ReportData, claim: Claim) -> pd.DataFrame:
    """claims.csv's rows of `claim` (every configuration Table 1 counts)."""
    c = study_claims(report)
    if c is None:
        return pd.DataFrame(columns=CLAIMS_COLUMNS)
    return c.loc[c["claim"].map(claim_name) == claim.name]


def _null_sentence(report: ReportData) -> str:
    """What the shuffled-label probes' claims got: no claim may hold there."""
    nulls = null_datasets(report)
    c = report.claims_table
    if not nulls or c is None or "dataset" not in c:
        return ""
    rows = c.loc[c["dataset"].isin(nulls)]
    held = int((rows["verdict"] == "holds").sum())
    return (
        f" Not counted: the shuffled-label probe{'s' if len(nulls) > 1 else ''} ({', '.join(nulls)}), the "
        f"null on which no claim may hold: {held} of its {len(rows)} claim rows "
        f"hold{'s' if held == 1 else ''}."
    )


def _why(rows: pd.DataFrame) -> str:
    """The distinct reasons of rows, each cut to its head ('too few seeds (n < 5)' -> 'too few seeds')."""
    column = "verdict_reason" if "verdict_reason" in rows else "basis" if "basis" in rows else None
    if column is None:
        return ""
    reasons = dict.fromkeys(str(r).split(" (")[0] for r in rows[column].dropna() if str(r) != "measured")
    return "; ".join(reasons)


def verdict_cells(rows: pd.DataFrame, reasons: bool = True) -> dict[str, str]:
    """Per verdict, how many of `rows` got it, with the reasons of the inconclusive and untested ones
    (unless `reasons` is False): {'holds': '0', ..., 'untested': '1 (depth not reached)'}."""
    cells = {}
    for v in VERDICTS:
        got = rows.loc[rows["verdict"] == v]
        why = _why(got) if reasons and v in ("inconclusive", "untested") else ""
        cells[v] = f"{len(got)}" + (f" ({why})" if why else "")
    return cells


def n_configurations(claims: pd.DataFrame) -> int:
    """How many configurations claims.csv's rows cover (one where it names none)."""
    keys = [k for k in configuration_keys(claims) if k in claims]
    return claims.groupby(keys, dropna=False).ngroups if keys else 1


def claims_summary(report: ReportData) -> str:
    """Table 1: per claim and mode, how many configurations each verdict got, and why the rest are not
    decided (the per-configuration statistics and CIs are in the appendix)."""
    if report.claims_table is None:
        return report.skip("the re-test of the log's claims", report.summary / "claims.csv")
    counted = study_claims(report)
    c = counted.assign(name=counted["claim"].map(claim_name))
    by = ["name", "mode"] if "mode" in c and c["mode"].notna().any() else ["name"]
    order = {claim.name: i for i, claim in enumerate(CLAIMS)}
    c = c.sort_values(by, key=lambda col: col.map(order) if col.name == "name" else col, kind="stable")
    rows = []
    for key, g in c.groupby(by, sort=False):
        labels = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        rows.append({"claim": labels.pop("name"), **labels, **verdict_cells(g)})
    n = n_configurations(c)
    named = "; ".join(f"*{claim_name(t)}*: {t}" for t in dict.fromkeys(c["claim"]))
    return md_table(
        pd.DataFrame(rows),
        f"The research log's claims re-tested: how many of the {plural(n, 'configuration')} each verdict "
        f"got (inconclusive, untested: why). The claims: {named}. The TL;DR quotes the rows of *depth 2 "
        "is optimal*, *more atomic with depth* and *beats a same-width SAE*; each configuration's statistic "
        f"and CI are in Appendix A.{_null_sentence(report)}",
        right=[],
    )


def claims(report: ReportData) -> str:
    """Appendix A: per claim, every configuration's statistic, CI, seeds, Holm-corrected p-value, verdict
    and its reason, so that each count of Table 1 can be traced to its rows."""
    if report.claims_table is None:
        return report.skip("the re-test of the log's claims", report.summary / "claims.csv")
    c = report.claims_table.astype(object).fillna("")
    if "basis" not in c:
        return md_table(c[CLAIMS_COLUMNS], "Claims of the research log: its value, ours, and the verdict.")
    keys = configuration_keys(c)
    min_seeds = report.rule("min_seeds", 5)
    why = "verdict_reason" if "verdict_reason" in c else "basis"
    out = []
    for claim in dict.fromkeys(c["claim"]):
        g = c.loc[c["claim"] == claim]
        first = g.iloc[0]
        table = pd.DataFrame({"configuration": row_labels(g, keys)})
        table["estimate [95% CI]"] = [
            f"{fmt(est)} [{fmt(lo)}, {fmt(hi)}]" if lo != "" else f"{fmt(est)} (no CI)" if est != "" else "–"
            for est, lo, hi in zip(g["estimate"], g["ci_low"], g["ci_high"], strict=True)
        ]
        table["seeds"] = [
            f"{n}" + (f" (< {min_seeds})" if n != "" and 0 < int(n) < min_seeds else "") for n in g["n_seeds"]
        ]
        if "p_holm" in g:
            table["p (Holm)"] = g["p_holm"].to_numpy()
        table["verdict"] = g["verdict"].to_numpy()
        table["why"] = [
            (e if e.startswith(b) else f"{b}: {e}") if e and b != "measured" else r
            for b, e, r in zip(g["basis"], g["excluded"], g[why], strict=True)
        ]
        out.append(
            f"**{claim_name(claim)}**: {claim}. The log: {first['log_value']}. Statistic: "
            f"{first['statistic']}; it holds when {first['region']}.\n"
        )
        rows = " · ".join(k.replace("_", " ") for k in keys)
        out.append(
            md_table(table, f"{claim_name(claim)}: per configuration ({rows}), with the CI over seeds.")
        )
    return "\n".join(out)
