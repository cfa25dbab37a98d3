"""Per-rule wall and CPU seconds of a finished study, summed from its Snakemake benchmark files.

    python benchmarks/rule_cpu.py results_test [results_other ...]   # one Markdown table per folder

Each job's `benchmark:` file (results/benchmarks/**.tsv) holds its wall seconds (`s`) and the CPU seconds of
its process tree (`cpu_time`, user + system). CPU seconds are what to compare on a shared machine: wall time
there depends on what else runs. The rule is read from the file's path (the layout of workflow/rules/*.smk).
A rule that runs several depths in one job (analyse_meta) has one file per job.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

# benchmarks/<first folder>/... -> rule; sae/ and analysis/ split on depth 1 (base) vs deeper (meta)
BY_FOLDER = {
    "train_classifier": "train_classifier",
    "cache_acts": "cache_acts",
    "train_vit": "train_vit",
    "probe_vit": "probe_vit",
    "probe_sae": "probe_sae",
}


def rule_of(rel: Path) -> str:
    first = rel.parts[0]
    if len(rel.parts) == 1:
        return rel.stem  # aggregate.tsv, explore.tsv, report.tsv
    if first in BY_FOLDER:
        return BY_FOLDER[first]
    base = rel.name == "depth1.tsv" and rel.parent.name not in ("decoder", "activations")
    if first == "sae":
        return "train_base_sae" if base else "train_meta_sae"
    if first == "analysis":
        return "analyse_base" if base else "analyse_meta"
    return first


def per_rule(results: Path) -> dict[str, list[float]]:
    """rule -> [jobs, wall s, cpu s]."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    root = results / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        t = totals[rule_of(path.relative_to(root))]
        for row in rows:
            t[0] += 1
            t[1] += float(row["s"])
            t[2] += float(row["cpu_time"])
    return dict(totals)


def table(results: Path) -> str:
    totals = per_rule(results)
    lines = [f"{results}", "", "| rule | jobs | wall s | CPU s |", "|---|---|---|---|"]
    for rule, (n, wall, cpu) in sorted(totals.items(), key=lambda kv: -kv[1][2]):
        lines.append(f"| {rule} | {n} | {wall:.1f} | {cpu:.1f} |")
    n, wall, cpu = (sum(v[i] for v in totals.values()) for i in range(3))
    lines.append(f"| all | {n} | {wall:.1f} | {cpu:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for folder in sys.argv[1:] or ["results"]:
        print(table(Path(folder)))
