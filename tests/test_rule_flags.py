"""Every command a rule runs is one its `metasae` stage accepts: each shipped config is planned with
`snakemake -n -p` (all jobs, since the results folder is empty) and every printed command is parsed by the
CLI's own parser. A rule passing a flag its command lacks (as `--data-dir` to train-sae did) fails here."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from metasae.cli import build_parser, split_commands

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))


def planned_commands(config: str, results: Path) -> list[list[str]]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-p",
            "--configfile",
            f"config/{config}",
            "--config",
            f"results={results}",
            "data_dir=../shared/data",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    commands = []
    for line in (proc.stdout + proc.stderr).splitlines():
        _, found, command = line.partition("Shell command: metasae ")
        if found:
            # without the log redirection; a chain (`A --then B`) is several commands
            commands += split_commands(shlex.split(command.split(" > ", 1)[0]))
    return commands


@pytest.mark.parametrize("config", CONFIGS)
def test_every_planned_command_parses(config, tmp_path):
    commands = planned_commands(config, tmp_path / "results")
    assert commands, f"{config}: no metasae command planned"
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{config}: `metasae {' '.join(argv[:4])} ...` does not parse: {argv}")
