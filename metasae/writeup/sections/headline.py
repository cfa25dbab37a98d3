"""The TL;DR: what was run, the two answers with their verdict counts, what depth costs, how sure.

Its sentences speak for the headline rows only (real datasets where any were run).
"""

from __future__ import annotations

import pandas as pd

from metasae.writeup.columns import CLAIMS_COLUMNS, ID_COLUMNS, OPTIONAL_ID_COLUMNS, VERDICTS
from metasae.writeup.data import DEAD_GUARD, ReportData
from metasae.writeup.format import configuration_keys, fmt


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


def _headline_optimal(report: ReportData, head: pd.DataFrame) -> pd.DataFrame | None:
    """optimal_depth.csv's rows for the headline's datasets and models."""
    if report.optimal is None:
        return None
    return report.optimal.loc[
        report.optimal["dataset"].isin(head["dataset"].unique())
        & report.optimal["model"].isin(head["model"].unique())
    ]


def _claim_rows(report: ReportData, word: str, head: pd.DataFrame | None = None) -> pd.DataFrame:
    """claims.csv's rows whose claim mentions `word` (for the headline's datasets, where given)."""
    c = report.claims_table
    if c is None:
        return pd.DataFrame(columns=CLAIMS_COLUMNS)
    rows = c.loc[c["claim"].str.contains(word, case=False, regex=False)]
    if head is not None and "dataset" in rows:
        rows = rows.loc[rows["dataset"].isin(head["dataset"].unique())]
    return rows


def _answer_optimal(report: ReportData, head: pd.DataFrame) -> str:
    """The optimal-depth answer: the measured criteria's optima and the log's "depth 2" verdict counts."""
    opt = _headline_optimal(report, head)
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


def _answer_atomic(report: ReportData, head: pd.DataFrame) -> str:
    """The atomicity answer per mode, from the claims that mention it (`_verdict_phrase`)."""
    rows = _claim_rows(report, "atomic", head)
    if rows.empty:
        return "**More atomic with depth:** not tested here (no such claim in `claims.csv`)."
    groups = rows.groupby("mode") if "mode" in rows else [(None, rows)]
    parts = [(f"in `{mode}` mode " if mode else "") + _verdict_phrase(g) for mode, g in groups]
    text = "; ".join(parts)
    return f"**More atomic (purer in label) with depth:** {text}."


def _answer_cost(head: pd.DataFrame) -> str:
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


def tldr(report: ReportData) -> str:
    """3-5 sentences: what was run, the two answers with their verdict counts, what depth costs, and
    how sure the answers are."""
    if report.depths is None:
        return report.skip("the headline numbers", report.summary / "depths.csv")
    head, label = report.headline()
    n_cfg = len(head.groupby(configuration_keys(head, ID_COLUMNS + OPTIONAL_ID_COLUMNS)))
    n_seeds = head["seed"].nunique()
    modes = sorted(head["mode"].unique())
    sentences = [
        f"We trained SAEs on a classifier's activations and meta-SAEs on those SAEs down to depth "
        f"{head['depth'].max()} ({' and '.join(f'`{m}`' for m in modes)} mode), on {label}: "
        f"{n_cfg} configuration(s), {n_seeds} seed(s) each.",
        _answer_optimal(report, head),
        _answer_atomic(report, head),
        _answer_cost(head),
    ]
    few = report.rule("min_seeds", 5)
    sure = [
        f"{report.rule('ci_level', 0.95):.0%} percentile-bootstrap CIs over {n_seeds} seed(s)"
        + (f", fewer than the {few} a real study uses, so they are coarse" if n_seeds < few else "")
    ]
    if not head["is_real"].any():
        sure.append(
            "embedded stand-ins only, so the numbers say how the method behaves, not what real images contain"
        )
    if "dead_fraction" in head:
        dead = head.loc[head["depth"] == 1, "dead_fraction"].max()
        if dead >= DEAD_GUARD:
            sure.append(
                f"up to {dead:.0%} of the depth-1 latents are dead (never active on the probe images; "
                f"the guard is under {DEAD_GUARD:.0%})"
            )
    if report.claims_table is not None:
        counts = report.claims_table["verdict"].value_counts()
        sure.append(
            f"of all {len(report.claims_table)} re-tests of the research log's claims, "
            f"{counts.get('holds', 0)} hold, {counts.get('fails', 0)} fail, "
            f"{counts.get('inconclusive', 0)} are inconclusive and {counts.get('untested', 0)} untested "
            "(a statistic fixed by construction or measured on dense codes decides nothing)"
        )
    sentences.append("**How sure:** " + "; ".join(sure) + ".")
    return "\n\n".join(sentences) + "\n"
