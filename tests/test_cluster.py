"""The study on a real SLURM cluster (single node, started here by tests/cluster/slurm.sh).

Checks what a cluster user relies on: every job goes through `sbatch`, the outputs equal a local run's, a job
that fails on the cluster is reported with its SLURM log, and a rerun resumes instead of starting over. Needs
root (it installs and starts SLURM); `.ci/run` runs it once as `pytest -m cluster`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from pypdf import PdfReader

from metasae.io import load_tensors
from metasae.runlock import LOCK_FILE

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "cluster"
CONFIG = "config/test.yaml"  # the smallest full study: ~27 jobs (SLURM adds ~14 s to each here)
RESULTS = yaml.safe_load((ROOT / CONFIG).read_text())["results"]  # its results folder, inside a working dir
LOCAL_RULES = {"all"}  # rules without a command run inside the main snakemake, not as SLURM jobs
TIMEOUT_S = 1800
# The injected failure: every `analyse` job of seed 1 (a mid-DAG stage, so independent jobs go on).
FAIL_RULES = {"analyse_stack", "analyse_control"}
FAIL_MESSAGE = "metasae test shim: analyse of seed 1 fails on purpose"
# Results that legitimately differ between two runs: timings and logs, and provenance stamps.
UNCOMPARED_DIRS = {"logs", "benchmarks"}
UNCOMPARED_FILES = {LOCK_FILE}  # the run lock holds its driver's PID
VOLATILE_KEYS = {"created_utc", "git_commit", "wall_seconds", "datetime_epoch_millis"}

SUBMITTED = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.$", re.M)
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$", re.M)
# A job failed on the cluster: its error block, up to the `log:` line (rule logs, then the SLURM log).
FAILED = re.compile(
    r"^Error in rule (\w+):\n\s+message: SLURM-job '(\d+)' failed.*\n"
    r"(?:[ \t]+(?!log:).*\n)*?[ \t]+log: (.*) \(check log",
    re.M,
)


@dataclass
class Run:
    returncode: int
    output: str

    @property
    def submitted(self) -> dict[str, Path]:
        """SLURM job id -> its SLURM log, for every job this run handed to sbatch."""
        return {slurm_id: Path(log) for _, slurm_id, log in SUBMITTED.findall(self.output)}

    @property
    def submitted_jobs(self) -> set[str]:
        """Snakemake job ids handed to sbatch."""
        return {job for job, _, _ in SUBMITTED.findall(self.output)}

    @property
    def finished(self) -> dict[str, str]:
        """Snakemake job id -> rule, for every job that completed."""
        return dict(FINISHED.findall(self.output))

    @property
    def failed(self) -> dict[str, tuple[str, Path]]:
        """SLURM job id -> (rule, reported SLURM log), for every job reported as failed on the cluster."""
        failed = {}
        for rule, slurm_id, logs in FAILED.findall(self.output):
            slurm_logs = [log for log in logs.split(", ") if "/slurm_logs/" in log]
            assert len(slurm_logs) == 1, f"SLURM job {slurm_id}: no single SLURM log among {logs!r}"
            failed[slurm_id] = (rule, Path(slurm_logs[0]))
        return failed


def job_key(slurm_log: Path) -> str:
    """A job's identity across runs: its SLURM log folder, `slurm_logs/rule_<rule>/<wildcards>/`."""
    return slurm_log.parent.as_posix().split("/slurm_logs/", 1)[1]


def checkout(dest: Path) -> Path:
    """A working directory that runs this repository's workflow with its own results/ and .snakemake/."""
    dest.mkdir(parents=True)
    for entry in ROOT.iterdir():
        if entry.name not in {".git", ".snakemake", RESULTS}:
            (dest / entry.name).symlink_to(entry)
    return dest


def snakemake(workdir: Path, *args: str, path_prefix: Path | None = None) -> Run:
    """Run snakemake on the test config; on timeout send SIGINT (a hung snakemake ignores SIGTERM)."""
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}  # the test cluster uses /etc/slurm
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    # The interpreter itself, not a `snakemake` launcher that may put its own bin/ first on PATH.
    cmd = [sys.executable, "-m", "snakemake", "--configfile", CONFIG, *args]
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"snakemake ran past {TIMEOUT_S} s in {workdir}:\n{interrupt(proc)[-5000:]}")
    except BaseException:  # Ctrl-C of pytest: let snakemake cancel its SLURM jobs before the cluster stops
        interrupt(proc)
        raise
    return Run(proc.returncode, output)


def interrupt(proc: subprocess.Popen) -> str:
    """SIGINT (snakemake then scancels its jobs), SIGKILL if it is still running 2 minutes later."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def failing_shim(bindir: Path) -> Path:
    """A `metasae` first on PATH that fails seed 1's `analyse` jobs and runs the real CLI otherwise."""
    real = shutil.which("metasae")
    assert real, "metasae CLI not on PATH"
    bindir.mkdir()
    shim = bindir / "metasae"
    shim.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *" analyse "*/seed1/*) echo "{FAIL_MESSAGE}" >&2; exit 7;; esac\n'
        f'exec "{real}" "$@"\n'
    )
    shim.chmod(0o755)
    return bindir


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node cluster; its daemons are stopped by PID even when a test fails."""
    state = tmp_path_factory.mktemp("slurm")
    try:
        subprocess.run([CLUSTER / "slurm.sh", "start", state], check=True, timeout=900)
        yield state
    finally:
        subprocess.run([CLUSTER / "slurm.sh", "stop", state], check=False, timeout=120)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    workdir = checkout(tmp_path_factory.mktemp("local") / "repo")
    run = snakemake(workdir, "--workflow-profile", "workflow/profiles/local")
    assert run.returncode == 0, run.output[-5000:]
    return workdir


@pytest.fixture(scope="module")
def slurm_runs(cluster, tmp_path_factory) -> tuple[Run, Run, Path]:
    """First run with seed 1's analyses failing on purpose, then a plain rerun in the same directory."""
    tmp = tmp_path_factory.mktemp("cluster")
    workdir = checkout(tmp / "repo")
    args = (
        "--profile",
        str(CLUSTER / "profile"),
        "--workflow-profile",
        "workflow/profiles/slurm",
        "--retries",
        "0",
    )
    first = snakemake(workdir, *args, path_prefix=failing_shim(tmp / "bin"))
    second = snakemake(workdir, *args)
    return first, second, workdir


def slurmctld_job_ids(cluster: Path) -> set[str]:
    log = (cluster / "log" / "slurmctld.log").read_text()
    return set(re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", log))


def test_every_job_went_through_sbatch(cluster, slurm_runs):
    first, second, workdir = slurm_runs
    # no warm server on a cluster: it would run the jobs on the driver's node, outside their allocations
    assert not (workdir / RESULTS / "logs" / "warm_server.log").exists()
    for run in (first, second):
        assert run.submitted, run.output[-5000:]
        remote = {job for job, rule in run.finished.items() if rule not in LOCAL_RULES}
        assert remote <= run.submitted_jobs, "jobs finished without an sbatch submission"
        assert set(run.submitted) <= slurmctld_job_ids(cluster), "job ids that slurmctld never received"
        for slurm_log in run.submitted.values():
            assert slurm_log.is_file(), slurm_log


def test_failed_job_is_reported_with_its_slurm_log(slurm_runs):
    first = slurm_runs[0]
    assert first.returncode != 0
    assert first.failed, first.output[-5000:]
    assert {rule for rule, _ in first.failed.values()} == FAIL_RULES
    for slurm_id, (_, reported_log) in first.failed.items():
        assert reported_log == first.submitted[slurm_id]
        assert "non-zero exit code" in reported_log.read_text(), reported_log
    # show-failed-logs prints each failed rule's own log, which holds the cause.
    assert first.output.count(FAIL_MESSAGE) >= len(first.failed)
    # keep-going: the same rules still finished for seed 0.
    assert FAIL_RULES & set(first.finished.values())


def test_rerun_resumes(slurm_runs):
    first, second, _ = slurm_runs
    assert second.returncode == 0, second.output[-5000:]
    failed = {job_key(log) for _, log in first.failed.values()}
    succeeded = {job_key(log) for job, log in first.submitted.items() if job not in first.failed}
    resubmitted = {job_key(log) for log in second.submitted.values()}
    assert failed <= resubmitted
    assert not resubmitted & succeeded, "the rerun redid jobs that had succeeded"
    # downstream of the failed analyses: the rules that read every analysis
    assert {key.split("/")[0] for key in resubmitted - failed} <= {
        "rule_aggregate",
        "rule_explore",
        "rule_report",
    }


def comparable(value):
    """JSON content without the provenance stamps that differ between any two runs."""
    if isinstance(value, dict):
        return {
            # the report's input digests cover files with stamps of their own (compared apart): names only
            k: sorted(v) if k == "inputs" else comparable(v)
            for k, v in value.items()
            if k not in VOLATILE_KEYS
        }
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def assert_same_file(a: Path, b: Path) -> None:
    if a.suffix == ".safetensors":
        ta, tb = load_tensors(a), load_tensors(b)
        assert ta.keys() == tb.keys(), a
        assert all(torch.equal(ta[k], tb[k]) for k in ta), a
    elif a.suffix == ".json":
        assert comparable(json.loads(a.read_text())) == comparable(json.loads(b.read_text())), a
    elif a.suffix == ".parquet":
        pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), obj=str(a))
    elif a.suffix == ".pdf":  # the PDF stamps its creation time; compare what it says
        text = [[page.extract_text() for page in PdfReader(p).pages] for p in (a, b)]
        assert text[0] == text[1], a
    else:
        assert a.read_bytes() == b.read_bytes(), a


def result_files(workdir: Path) -> dict[str, Path]:
    results = workdir / RESULTS
    files = {p.relative_to(results).as_posix(): p for p in results.rglob("*") if p.is_file()}
    return {
        name: p
        for name, p in files.items()
        if name.split("/")[0] not in UNCOMPARED_DIRS and name not in UNCOMPARED_FILES
    }


def test_outputs_equal_the_local_run(local_run, slurm_runs):
    local, cluster = result_files(local_run), result_files(slurm_runs[2])
    assert local.keys() == cluster.keys()
    for name in sorted(local):
        assert_same_file(local[name], cluster[name])
