"""The TL;DR: for each of the two questions, the answer, the one number behind it with its interval, and
the verdict counts of Table 1 (`claims.claims_summary`), then what depth costs; at most TLDR_WORDS words.

Its counts are those of claims.csv's rows of each question's claim, every configuration (the rows Table 1
counts); its number is one decided row's estimate, from the headline datasets (real ones where any).
"""

from __future__ import annotations

import pandas as pd

from metasae.writeup.data import DEAD_GUARD, ReportData
from metasae.writeup.format import fmt, plural
from metasae.writeup.sections.claims import (
    CLAIMS,
    QUESTIONS,
    Claim,
    claim_rows,
    n_configurations,
    study_claims,
    verdict_cells,
)

TLDR_WORDS = 120
MODE_ORDER = ("decoder", "activations")  # the published method first where both decide


def _answer(rows: pd.DataFrame) -> str:
    """The answer from the verdicts of the tested rows: Yes / No where all agree, Mostly yes / no where
    more than half do and none disagrees, Mixed where some hold and some fail, else Not settled."""
    said = rows.loc[rows["verdict"] != "untested", "verdict"].value_counts()
    holds, fails, n = said.get("holds", 0), said.get("fails", 0), int(said.sum())
    if holds and fails:
        return "Mixed"
    for count, word in ((holds, "yes"), (fails, "no")):
        if count and count == n:
            return word.capitalize()
        if count > n / 2:
            return f"Mostly {word}"
    return "Not settled"


def _number(claim: Claim, rows: pd.DataFrame, datasets: set[str]) -> str:
    """The one number: the estimate and CI of the tested row with most seeds (headline datasets first,
    decoder mode before activations), or why there is none."""
    if "estimate" not in rows or "n_seeds" not in rows:
        return ""
    tested = rows.loc[
        (rows["verdict"] != "untested") & pd.to_numeric(rows["estimate"], errors="coerce").notna()
    ]
    if tested.empty:
        return "No configuration gives its statistic"
    rank = tested.assign(
        _head=~tested["dataset"].isin(datasets) if "dataset" in tested else False,
        _mode=tested["mode"].map(lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else 9)
        if "mode" in tested
        else 0,
        _seeds=-pd.to_numeric(tested["n_seeds"], errors="coerce"),
    ).sort_values(["_head", "_seeds", "_mode"], kind="stable")
    row = rank.iloc[0]
    where = [str(row["dataset"])] if "dataset" in row else []
    where += [f"{row['mode']} mode"] if "mode" in row else []
    ci = [f"95% CI {fmt(row['ci_low'])} to {fmt(row['ci_high'])}"] if pd.notna(row.get("ci_low")) else []
    what = claim.number[0].upper() + claim.number[1:]
    return f"{what}: {fmt(row['estimate'])} ({'; '.join([*ci, ', '.join(where)])})"


def _counts(rows: pd.DataFrame, reasons: bool = True) -> str:
    """'holds 0, fails 0, inconclusive 1 (too few seeds), untested 1 (depth not reached)' (`reasons` False:
    without the brackets)."""
    return ", ".join(f"{v} {cell}" for v, cell in verdict_cells(rows, reasons).items())


def _question(report: ReportData, claim: Claim, datasets: set[str], reasons: bool = True) -> str:
    """One question's paragraph: the answer, the number and the verdict counts of its claim; where the claim
    has a control claim beside it (atomicity: a direct SAE of the same width), the raw answer with its counts,
    then the control's answer, number and counts: a trend the control explains is no answer."""
    rows = claim_rows(report, claim)
    if rows.empty:
        return f"**{claim.question}** Not tested: claims.csv has no *{claim.name}* row."
    beside = next((c for c in CLAIMS if c.name == claim.beside), None)
    control = claim_rows(report, beside) if beside else pd.DataFrame()
    if control.empty:
        number = _number(claim, rows, datasets)
        return (
            f"**{claim.question}** {_answer(rows)}.{' ' + number + '.' if number else ''} "
            f"*{claim.name.capitalize()}*: {_counts(rows, reasons)}."
        )
    number = _number(beside, control, datasets)
    return (
        f"**{claim.question}** Raw trend: {_answer(rows).lower()}; *{claim.name}*: {_counts(rows, reasons)}. "
        f"Against a same-width SAE: {_answer(control).lower()}.{' ' + number + '.' if number else ''} "
        f"*{beside.name[0].upper() + beside.name[1:]}*: {_counts(control, reasons=False)}."
    )


def _cost(head: pd.DataFrame) -> str:
    """What depth costs: the median FVU of the layer rebuilt from the first and the deepest depth."""
    if "stack_fvu" not in head or head["stack_fvu"].isna().all():
        return ""
    fvu = head.groupby("depth")["stack_fvu"].median().dropna()
    if len(fvu) < 2:
        return ""
    way = "rises" if fvu.iloc[-1] > fvu.iloc[0] else "falls"
    return (
        f"Cost: unexplained variance {way} from {fmt(fvu.iloc[0])} (depth {fvu.index[0]}) "
        f"to {fmt(fvu.iloc[-1])} (depth {fvu.index[-1]})."
    )


def _dead(head: pd.DataFrame) -> str:
    """The dead-latents warning (issue 15's guard) where depth 1 has too many never-active latents."""
    dead = head.loc[head["depth"] == 1, "dead_fraction"].max() if "dead_fraction" in head else 0.0
    if not dead >= DEAD_GUARD:
        return ""
    return f"Caution: up to {dead:.0%} of the depth-1 latents are dead (never active on the probe images)."


def tldr(report: ReportData) -> str:
    """What was run, then each question's answer, number and counts, then what depth costs and a warning
    where depth 1 has many dead latents, each only while the whole stays within TLDR_WORDS (the counts
    always stay, their reasons only while they fit: a test counts the words)."""
    if report.depths is None:
        return report.skip("the headline numbers", report.summary / "depths.csv")
    head, label = report.headline()
    seeds = plural(int(head["seed"].nunique()), "seed")
    configurations = (
        f", {plural(n_configurations(study_claims(report)), 'configuration')}"
        if report.claims_table is not None
        else ""
    )
    ran = (
        f"SAE + meta-SAEs to depth {head['depth'].max()} on a classifier's layer; "
        f"{label.split(';')[0]}, {seeds}{configurations}."
    )
    if report.claims_table is None:
        body = [report.skip("the re-test of the log's claims", report.summary / "claims.csv").strip()]
    else:
        for reasons in (True, False):  # the counts' reasons only where they fit (Table 1 has them too)
            body = [_question(report, claim, set(head["dataset"]), reasons) for claim in QUESTIONS]
            if len(" ".join([ran, *body]).split()) <= TLDR_WORDS:
                break
    for extra in (_cost(head), _dead(head)):  # in order of importance, while they fit
        longer = "\n\n".join([ran, *body, extra])
        if extra and len(longer.split()) <= TLDR_WORDS:
            body.append(extra)
    return "\n\n".join([ran, *body]) + "\n"
