"""The whole study on config/test.yaml, `snakemake --cores 2` from an empty results folder, against the floor:
the same study's `metasae` commands (planned by `snakemake -n -p`) run one after another in one process
(benchmarks/replay_study.py: one interpreter start-up, one set of imports, no scheduler), i.e. the sum of the
jobs' compute. The ratio grows with what the workflow adds to that compute (a process start-up and its
imports per job, scheduling, planning) and shrinks as far as the 2 cores run jobs side by side; CPU seconds
of both (user + system of their process trees) are kept in extra_info."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "test.yaml"
REPLAY = ROOT / "benchmarks" / "replay_study.py"


def _run(cmd: list[str]) -> tuple[str, float]:
    """Run cmd at the repository root; its output and the CPU seconds of its process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:6])} ... failed:\n{(done.stdout + done.stderr)[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout + done.stderr, cpu


def _snakemake(results: Path, *args: str) -> list[str]:
    config = ["--configfile", str(CONFIG), "--config", f"results={results}"]
    return [sys.executable, "-m", "snakemake", *args, *config]


@pytest.mark.quick
def test_study(compare, benchmark, device, tmp_path):
    pytest.importorskip("snakemake")  # a dev install has it; a bare GPU machine may not
    if device.type != "cpu":
        pytest.skip("config/test.yaml runs on the CPU")
    study, replayed = tmp_path / "study", tmp_path / "replayed"
    plan = tmp_path / "plan.txt"
    plan.write_text(_run(_snakemake(replayed, "-n", "-p"))[0])
    cpu: dict[str, list[float]] = {"study": [], "floor": []}

    def run_study() -> None:
        shutil.rmtree(study, ignore_errors=True)
        cpu["study"].append(_run(_snakemake(study, "--cores", "2"))[1])

    def replay() -> None:
        shutil.rmtree(replayed, ignore_errors=True)
        cpu["floor"].append(_run([sys.executable, str(REPLAY), str(plan), str(tmp_path / "replay.log")])[1])

    compare(run_study, replay, "its commands in one process", rounds=1, warmup=0)
    benchmark.extra_info.update(
        {
            "study_cpu_s": cpu["study"][-1],
            "floor_cpu_s": cpu["floor"][-1],
            "cpu_ratio": cpu["study"][-1] / cpu["floor"][-1],
        }
    )
    assert (study / "report" / "index.html").is_file() and (replayed / "report" / "index.html").is_file()
