"""Run a planned study's `metasae` commands one after another in this one process: the study's compute with
one interpreter start-up, one set of imports and no scheduler, the floor of the whole-study benchmark
(test_bench_study.py).

    python benchmarks/replay_study.py PLAN LOG   # PLAN: `snakemake -n -p` output; commands print to LOG

The plan lists the jobs in an order that respects their dependencies (a dry run "runs" them in turn).
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path

PREFIX = "Shell command: metasae "


def planned_commands(plan: str) -> list[list[str]]:
    """The argv of every `metasae` command of a `snakemake -n -p` output, without its log redirection."""
    commands = []
    for line in plan.splitlines():
        _, found, command = line.partition(PREFIX)
        if found:
            commands.append(shlex.split(command.split(" > ", 1)[0]))
    return commands


def replay(commands: list[list[str]], log: Path) -> None:
    from metasae.cli import main

    with log.open("w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        for argv in commands:
            print(f"$ metasae {' '.join(argv)}", flush=True)
            if main(argv if argv[0] == "--threads" else ["--threads", "1", *argv]) != 0:
                raise SystemExit(f"replay: `metasae {' '.join(argv[:4])} ...` failed; see {log}")


if __name__ == "__main__":
    plan_file, log_file = map(Path, sys.argv[1:3])
    replay(planned_commands(plan_file.read_text()), log_file)
