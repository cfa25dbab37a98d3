"""`snakemake -n` planning time of the study config against the floor: `snakemake --version`, i.e. starting
the interpreter and importing snakemake, which every plan pays before reading the Snakefile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The real study; the embedded default stands in where full.yaml is not written yet.
CONFIG = next(p for p in (ROOT / "config/full.yaml", ROOT / "config/config.yaml") if p.is_file())


def _snakemake(*args: str):
    cmd = [sys.executable, "-m", "snakemake", *args]
    return lambda: subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)


def test_snakemake_plan(compare, tmp_path):
    pytest.importorskip("snakemake")  # a dev install has it; a bare GPU machine may not
    plan = _snakemake(
        "-n",
        "--quiet",
        "--configfile",
        str(CONFIG),
        "--config",
        f"results={tmp_path / 'results'}",
        "--directory",
        str(ROOT),
    )
    compare(plan, _snakemake("--version"), "snakemake --version", rounds=3, warmup=0)
