"""The `metasae` commands a workflow would run: `snakemake -n -p` on config files over an empty results folder
(so every job is planned), each printed command split into argv lists the CLI's parser reads."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from metasae.cli import split_commands

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> str:
    """../shared/data, or where it is absent any existing folder (the repository): the door refuses a
    data_dir that does not exist when a real dataset reads it, and planning reads no file."""
    return "../shared/data" if (ROOT.parent / "shared" / "data").is_dir() else str(ROOT)


def planned_commands(configfiles: list[str], results: Path) -> list[list[str]]:
    """Every planned command, with data_dir set (as the real-data configs set it) so that rules passing it
    are planned too; a job's chain (`A --then B`) is several commands, its log redirection dropped."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-p",
            "--configfile",
            *configfiles,
            "--config",
            f"results={results}",
            f"data_dir={_data_dir()}",
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
            commands += split_commands(shlex.split(command.split(" > ", 1)[0]))
    return commands
