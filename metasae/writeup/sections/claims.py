"""The research log's claims re-tested: at a glance in the main text, per configuration in the appendix."""

from __future__ import annotations

import pandas as pd

from metasae.writeup.columns import CLAIMS_COLUMNS, VERDICTS
from metasae.writeup.data import ReportData
from metasae.writeup.format import configuration_keys, fmt, md_table, row_labels


def claims_summary(report: ReportData) -> str:
    """The research log's claims at a glance: per claim, how many configurations each verdict got and the
    range of the statistic (the per-configuration tables are in the appendix)."""
    if report.claims_table is None:
        return report.skip("the re-test of the log's claims", report.summary / "claims.csv")
    c = report.claims_table
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


def claims(report: ReportData) -> str:
    """Appendix A: per claim, every configuration's statistic, CI, seeds, verdict and basis, so that each
    count in the main text's table can be traced to its rows."""
    if report.claims_table is None:
        return report.skip("the re-test of the log's claims", report.summary / "claims.csv")
    c = report.claims_table.astype(object).fillna("")
    if "basis" not in c:
        return md_table(c[CLAIMS_COLUMNS], "Claims of the research log: its value, ours, and the verdict.")
    keys = configuration_keys(c)
    min_seeds = report.rule("min_seeds", 5)
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
