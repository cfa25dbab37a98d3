"""`metasae <stage> ...`: parses flags and dispatches to the one function of `metasae.stages.<stage>`.

Each `register_*` in `study_commands` / `branch_commands` declares one subcommand's flags; nothing here
computes anything. Stage modules are imported only when their command runs, so `metasae --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from metasae.allocator import tune_cpu_allocator
from metasae.cli import branch_commands, study_commands, warm
from metasae.errors import MetasaeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metasae",
        description=(
            "SAEs and meta-SAEs, to any depth, on vision models: one subcommand per stage of the study."
        ),
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (the workflow passes each job's share; default: torch's own)",
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")
    for register in study_commands.COMMANDS + branch_commands.COMMANDS:
        register(sub)
    return parser


THEN = "--then"  # `metasae A ... --then B ...`: commands run one after another in one process


def split_commands(argv: list[str]) -> list[list[str]]:
    """`[--threads N] A ... --then B ... --then C ...` -> the argv of each command, in order."""
    commands: list[list[str]] = [[]]
    for word in argv:
        if word == THEN:
            commands.append([])
        else:
            commands[-1].append(word)
    return commands


def main(argv: list[str] | None = None) -> int:
    """`metasae ...`: in the workflow's warm server where one is running (metasae.cli.warm), else here."""
    argv = sys.argv[1:] if argv is None else argv
    forwarded = warm.forward(argv)
    return run_here(argv) if forwarded is None else forwarded


def run_here(argv: list[str]) -> int:
    """Run one command, or several joined by `--then` (the workflow's chains of depths: one interpreter
    start-up and one set of imports for all of them). Every command is parsed before the first runs; the
    first that fails stops the rest and gives the exit status."""
    parser = build_parser()
    chain = [parser.parse_args(words) for words in split_commands(argv)]
    tune_cpu_allocator()
    for i, args in enumerate(chain, 1):
        if len(chain) > 1:
            out = f" --out {args.out}" if getattr(args, "out", None) else ""
            print(f"metasae: command {i} of {len(chain)}: {args.stage}{out}", file=sys.stderr, flush=True)
        status = _run(args)
        if status:
            return status
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except MetasaeError as exc:
        print(f"metasae {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `metasae datasets | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # read-only folder, full disk, ...: one line naming the path, not a traceback
        where = exc.filename or "output"
        print(f"metasae {args.stage}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
