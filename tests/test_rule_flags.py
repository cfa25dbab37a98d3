"""Every command a rule runs is one its `metasae` stage accepts: each shipped config is planned with
`snakemake -n -p` (all jobs, since the results folder is empty) and every printed command is parsed by the
CLI's own parser. A rule passing a flag its command lacks (as `--data-dir` to train-sae did) fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from snakemake_plan import planned_commands

from metasae.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS)
def test_every_planned_command_parses(config, tmp_path):
    commands = planned_commands([f"config/{config}"], tmp_path / "results")
    assert commands, f"{config}: no metasae command planned"
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{config}: `metasae {' '.join(argv[:4])} ...` does not parse: {argv}")
