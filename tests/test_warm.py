"""Warm starts (metasae.cli.warm): a command forked from the server behaves as it would cold — same output,
status, files and bits — and a job the server cannot take runs cold."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
import torch
from depth_folders import write_cache

from metasae.cli import warm

SMALL_PRELOAD = ("torch", "metasae.stages.train_sae")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server with a small preload for the module; its socket exported as the driver exports it."""
    log = tmp_path_factory.mktemp("warm") / "warm.log"
    before = os.environ.get(warm.ENV)
    proc = warm.start(log, preload=SMALL_PRELOAD)
    assert proc is not None, log.read_text()
    yield proc
    warm.stop(proc)
    os.environ.pop(warm.ENV, None)
    if before is not None:
        os.environ[warm.ENV] = before


def job_env(tmp_path, warm_start: bool = True, **extra: str) -> dict[str, str]:
    """A one-thread job's environment, as Snakemake sets it; the client records a served job's child CPU
    in tmp_path/child_cpu, so a test can tell a warm run from a cold one."""
    env = {**os.environ, **{name: "1" for name in warm.THREAD_VARS}, **extra}
    env[warm.CHILD_CPU_ENV] = str(tmp_path / "child_cpu")
    if not warm_start:
        env.pop(warm.ENV, None)
    return env


def metasae(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["metasae", *args], env=env, capture_output=True, text=True, timeout=120)


def served(tmp_path) -> bool:
    """Whether the last command ran in the server (and clear the record)."""
    record = tmp_path / "child_cpu"
    was = record.exists()
    record.unlink(missing_ok=True)
    return was


def test_a_forwarded_command_prints_and_exits_as_a_cold_one(server, tmp_path):
    for args in (
        ["datasets"],
        ["analyse", "--depth-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
    ):
        warm_run = metasae(*args, env=job_env(tmp_path))
        assert served(tmp_path)
        cold_run = metasae(*args, env=job_env(tmp_path, warm_start=False))
        assert not served(tmp_path)
        assert (warm_run.returncode, warm_run.stdout, warm_run.stderr) == (
            cold_run.returncode,
            cold_run.stdout,
            cold_run.stderr,
        )


def test_a_trained_sae_is_bit_identical_warm_and_cold(server, tmp_path):
    acts = write_cache(tmp_path / "acts", torch.randn(200, 16, generator=torch.Generator().manual_seed(0)))
    spec = '{"architecture": "topk", "width": 32, "k": 4, "steps": 30, "batch_size": 32}'
    for name, warm_start in (("warm", True), ("cold", False)):
        run = metasae("--threads", "1", "train-sae", "--acts", str(acts), "--spec", spec, "--seed", "3",
                      "--out", str(tmp_path / name), env=job_env(tmp_path, warm_start))  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert served(tmp_path) == warm_start
    files = sorted(p.name for p in (tmp_path / "cold").iterdir() if p.suffix == ".safetensors")
    assert files
    for file in files:
        assert (tmp_path / "warm" / file).read_bytes() == (tmp_path / "cold" / file).read_bytes(), file


def test_other_thread_variables_another_allocation_or_no_server_run_cold(server, tmp_path, monkeypatch):
    for other in ({"OMP_NUM_THREADS": "2"}, {"SLURM_JOB_ID": "12345"}):
        assert metasae("datasets", env=job_env(tmp_path, **other)).returncode == 0
        assert not served(tmp_path)
    monkeypatch.setenv(warm.ENV, str(tmp_path / "no-such.sock"))
    assert warm.forward(["datasets"]) is None


def test_the_child_cpu_is_reported_for_the_cpu_shim(server, tmp_path):
    assert metasae("datasets", env=job_env(tmp_path)).returncode == 0
    user, system = map(float, (tmp_path / "child_cpu").read_text().split())
    assert user >= 0 and system >= 0 and user + system < 30


def test_a_terminated_job_ends_its_child(server, tmp_path):
    """SIGTERM to the client (Snakemake stopping a job) reaches the forked child; the client exits 143."""
    acts = write_cache(tmp_path / "acts", torch.randn(4000, 64))
    spec = '{"architecture": "topk", "width": 512, "k": 8, "steps": 100000, "batch_size": 256}'
    client = subprocess.Popen(
        ["metasae", "train-sae", "--acts", str(acts), "--spec", spec, "--out", str(tmp_path / "o")],
        env=job_env(tmp_path),
        stderr=subprocess.PIPE,
    )
    time.sleep(3)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 128 + signal.SIGTERM
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_the_server_exits_with_its_parent(tmp_path):
    """A driver killed outright (SIGKILL: no atexit) leaves no server behind."""
    code = (
        "import os, sys, time; from pathlib import Path; from metasae.cli import warm; "
        f"warm.start(Path({str(tmp_path / 'warm.log')!r}), ()); print(os.environ[warm.ENV], flush=True); "
        "time.sleep(60)"
    )
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    path = driver.stdout.readline().strip()
    assert os.path.exists(path)
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(os.path.dirname(path))


def test_a_client_gone_before_its_reply_leaves_the_server_serving(server, tmp_path):
    """A job killed while its request waited to be accepted (SIGKILL of the whole run) must not take the
    server down with it; the next job is served."""
    request = json.dumps({"argv": ["datasets"], "cwd": str(tmp_path), "env": job_env(tmp_path)}).encode()
    for _ in range(3):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(os.environ[warm.ENV])
        socket.send_fds(sock, [struct.pack("!I", len(request)) + request], [0, 1, 2])
        sock.close()
    assert metasae("datasets", env=job_env(tmp_path)).returncode == 0
    assert served(tmp_path)
    assert server.poll() is None
