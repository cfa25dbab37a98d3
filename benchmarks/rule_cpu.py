"""Per-rule wall and CPU seconds of a finished study, one Markdown table per source.

    python benchmarks/rule_cpu.py results [results_other ...]   # from each folder's results/benchmarks/
    python benchmarks/rule_cpu.py --jobs cpu.tsv                # exact: from benchmarks/cpu_shim's record

Each job's `benchmark:` file (results/benchmarks/**.tsv) holds its wall seconds (`s`) and CPU seconds
(`cpu_time`, user + system). Snakemake samples that CPU time every 0.5 s over a job's first 15 s and every
30 s after, and what a job spends after its last sample is lost, so it is a lower bound (on a loaded machine,
far below); under warm starts (a local run's default, metasae.cli.warm) the job's process is only the client,
so its file holds next to nothing: measure with the shim, or with `--config warm_start=False`.
benchmarks/cpu_shim records each job's exact CPU (its process tree's, from /usr/bin/time, plus a warm-started
job's forked child's) instead; CPU seconds are what to compare on a shared machine, where wall time depends on
what else runs. The rule is read from the benchmark file's path, or from the recorded command line.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

# results/benchmarks/<stage>/<run>/: stack.tsv is the run's whole stack, depth1.tsv a width-matched control
FOLDER_RULES = {"sae": ("train_stack", "train_control_sae"), "analysis": ("analyse_stack", "analyse_control")}
COMMAND_STAGES = {"train-sae": "sae", "analyse": "analysis"}
CHAINED = {"synth-acts": "synth_tree", "score-synth": "score_synth"}  # a chain's first command names its rule


def rule_of_benchmark(rel: Path) -> str:
    """The rule of a file under results/benchmarks/ (the layout of workflow/rules/*.smk)."""
    if len(rel.parts) == 1:
        return rel.stem  # aggregate.tsv, explore.tsv, report.tsv
    if rel.parts[0] in FOLDER_RULES:
        stack, control = FOLDER_RULES[rel.parts[0]]
        return stack if rel.name == "stack.tsv" else control
    return rel.parts[0]


def rule_of_command(args: str) -> str:
    """The rule of a recorded `metasae` command line (a chain is its first command's)."""
    words = args.split(" --then ", 1)[0].split()
    if words[0] == "--threads":
        words = words[2:]
    if words[0] in COMMAND_STAGES:
        stack, control = FOLDER_RULES[COMMAND_STAGES[words[0]]]
        return control if " --then " not in args and "__w" in args else stack
    return CHAINED.get(words[0], words[0].replace("-", "_"))


def from_benchmarks(results: Path) -> dict[str, list[float]]:
    """rule -> [jobs, wall s, cpu s] from results/benchmarks/."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    root = results / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        t = totals[rule_of_benchmark(path.relative_to(root))]
        for row in rows:
            t[0] += 1
            t[1] += float(row["s"])
            t[2] += float(row["cpu_time"])
    return dict(totals)


def from_jobs(record: Path) -> dict[str, list[float]]:
    """rule -> [jobs, wall s, cpu s] from a cpu_shim record (`user system wall<TAB>arguments` per job)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for line in record.read_text().splitlines():
        times, args = line.split("\t", 1)
        user, system, wall = map(float, times.split())
        t = totals[rule_of_command(args)]
        t[0] += 1
        t[1] += wall
        t[2] += user + system
    return dict(totals)


def table(title: str, totals: dict[str, list[float]]) -> str:
    lines = [title, "", "| rule | jobs | wall s | CPU s |", "|---|---|---|---|"]
    for rule, (n, wall, cpu) in sorted(totals.items(), key=lambda kv: -kv[1][2]):
        lines.append(f"| {rule} | {n} | {wall:.1f} | {cpu:.1f} |")
    n, wall, cpu = (sum(v[i] for v in totals.values()) for i in range(3))
    lines.append(f"| all | {n} | {wall:.1f} | {cpu:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    args = sys.argv[1:] or ["results"]
    if args[0] == "--jobs":
        for record in args[1:]:
            print(table(f"{record} (exact, per job)", from_jobs(Path(record))))
    else:
        for folder in args:
            print(table(f"{folder}/benchmarks (sampled by Snakemake)", from_benchmarks(Path(folder))))
