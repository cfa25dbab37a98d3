"""Nothing silently wrong: a corrupted artefact, a failing stage, a read-only folder or a full disk each end
in a one-line error and leave no half-written output; two runs never share a results folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from metasae.cli import main
from metasae.errors import MetasaeError
from metasae.runlock import lock_results

ROOT = Path(__file__).resolve().parents[1]

SPEC = json.dumps({"architecture": "topk", "width": 16, "k": 4, "epochs": 40, "batch_size": 16, "lr": 0.003})
META = json.dumps(
    {"architecture": "topk", "k": 2, "width": {"factor": 0.5, "min": 2}, "epochs": 20, "batch_size": 4}
)
NO_STOP = json.dumps({"max_fvu": 100.0})  # the tiny stack must reach depth 2 to be corrupted


def _ok(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """model -> cache -> depth 1 -> depth 2 (decoder), with the CLI, as the workflow runs them."""
    root = tmp_path_factory.mktemp("integrity")
    _ok(
        "train-classifier",
        "--model",
        "mlp",
        "--train",
        "digits:train[:200]",
        "--test",
        "digits:test[:50]",
        "--epochs",
        "1",
        "--out",
        str(root / "model"),
    )
    _ok(
        "cache-acts",
        "--model-dir",
        str(root / "model"),
        "--dataset",
        "digits:test[:80]",
        "--layer",
        "fc1",
        "--out",
        str(root / "acts"),
    )
    _ok("train-sae", "--acts", str(root / "acts"), "--spec", SPEC, "--out", str(root / "depth1"))
    _ok(
        "train-sae",
        "--parent",
        str(root / "depth1"),
        "--mode",
        "decoder",
        "--depth",
        "2",
        "--spec",
        META,
        "--out",
        str(root / "depth2"),
    )
    return root


def _corrupt(path: Path) -> None:
    """XOR 64 bytes in the middle of a file (its size and header stay valid)."""
    data = bytearray(path.read_bytes())
    middle = slice(len(data) // 2, len(data) // 2 + 64)
    data[middle] = bytes(b ^ 0x5A for b in data[middle])
    path.write_bytes(bytes(data))


def _copy(study: Path, tmp_path: Path) -> Path:
    shutil.copytree(study, tmp_path / "s", symlinks=True)
    for cfg in (tmp_path / "s").rglob("cfg.json"):  # the copies' parents and caches, not the originals
        cfg.write_text(cfg.read_text().replace(str(study), str(tmp_path / "s")))
    return tmp_path / "s"


@pytest.mark.parametrize(
    ("victim", "argv", "producer"),
    [
        (
            "model/model.safetensors",
            [
                "cache-acts",
                "--model-dir",
                "{s}/model",
                "--dataset",
                "digits:test[:80]",
                "--layer",
                "fc1",
                "--out",
                "{s}/acts2",
            ],
            "train-classifier",
        ),
        (
            "depth1/sae.safetensors",
            ["analyse", "--depth-dir", "{s}/depth1", "--out", "{s}/a1", "--no-feature-viz"],
            "train-sae",
        ),
        (
            "depth1/sae.safetensors",
            [
                "train-sae",
                "--parent",
                "{s}/depth1",
                "--mode",
                "decoder",
                "--depth",
                "2",
                "--spec",
                META,
                "--out",
                "{s}/depth2b",
            ],
            "train-sae",
        ),
        (
            "depth1/codes.safetensors",
            ["analyse", "--depth-dir", "{s}/depth1", "--out", "{s}/a1"],
            "train-sae",
        ),
        (
            "depth2/meta_codes.safetensors",
            ["analyse", "--depth-dir", "{s}/depth2", "--out", "{s}/a2"],
            "train-sae",
        ),
        ("depth2/lineage.parquet", ["analyse", "--depth-dir", "{s}/depth2", "--out", "{s}/a2"], "train-sae"),
        (
            "acts/acts.safetensors",
            ["train-sae", "--acts", "{s}/acts", "--spec", SPEC, "--out", "{s}/d1b"],
            "cache-acts",
        ),
    ],
)
def test_a_corrupted_artefact_is_a_one_line_error_naming_it(study, tmp_path, capsys, victim, argv, producer):
    s = _copy(study, tmp_path)
    _corrupt(s / victim)
    assert main([a.replace("{s}", str(s)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and victim.split("/")[-1] in err, err
    assert f"rerun `metasae {producer}`" in err, err
    out = Path(argv[-1].replace("{s}", str(s)))
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.partial"))  # nothing half-written


def test_a_failing_analyse_leaves_an_existing_output_untouched(study, tmp_path, capsys):
    s = _copy(study, tmp_path)
    out = s / "a2"
    _ok("analyse", "--depth-dir", str(s / "depth2"), "--out", str(out), "--no-feature-viz")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    weights = s / "depth2" / "sae.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    assert main(["analyse", "--depth-dir", str(s / "depth2"), "--out", str(out)]) == 2
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and not (s / ".a2.partial").exists()
    assert "sae.safetensors" in capsys.readouterr().err


def _mount(tmp_path: Path, options: str) -> Path:
    point = tmp_path / "mnt"
    point.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
    ).returncode:
        pytest.skip("needs root to mount a tmpfs")
    return point


@pytest.mark.parametrize(("options", "reason"), [("size=64k", "No space left"), ("ro,size=64k", "Read-only")])
def test_a_full_disk_or_read_only_folder_is_one_line_naming_the_path(study, tmp_path, options, reason):
    point = _mount(tmp_path, options)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "metasae.cli",
                "cache-acts",
                "--model-dir",
                str(study / "model"),
                "--dataset",
                "digits:test",
                "--layer",
                "fc1",
                "--out",
                str(point / "acts"),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2, proc.stderr
        assert (
            len(proc.stderr.strip().splitlines()) == 1 and reason in proc.stderr and str(point) in proc.stderr
        )
        assert list(point.iterdir()) == []  # the partial output went with the failure
    finally:
        subprocess.run(["umount", str(point)], check=True)


def _train_sae(study: Path, out: Path) -> list[str]:
    return ["train-sae", "--acts", str(study / "acts"), "--spec", SPEC, "--out", str(out)]


def _one_line_naming(err: str, out: Path, reason: str) -> None:
    """One line, naming the output asked for (never the hidden partial folder), which is gone."""
    assert len(err.strip().splitlines()) == 1 and reason in err and str(out) in err, err
    assert ".partial" not in err and not list(out.parent.glob(f".{out.name}.partial")), err


def test_a_full_disk_in_train_sae_is_one_line_naming_the_output(study, tmp_path):
    """safetensors' own SafetensorError (a 26-line traceback once) on a full tmpfs."""
    point = _mount(tmp_path, "size=16k")
    try:
        out = point / "depth1"
        proc = subprocess.run(
            [sys.executable, "-m", "metasae.cli", *_train_sae(study, out)], capture_output=True, text=True
        )
        assert proc.returncode == 2, proc.stderr
        _one_line_naming(proc.stderr, out / "sae.safetensors", "No space left")
    finally:
        subprocess.run(["umount", str(point)], check=True)


def test_a_simulated_write_error_in_train_sae_is_one_line_naming_the_output(
    study, tmp_path, capsys, monkeypatch
):
    """The same without a mount: safetensors fails at write time as it does on a full disk."""
    from safetensors import SafetensorError

    import metasae.io

    def full(*_args, **_kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(metasae.io, "save_file", full)
    out = tmp_path / "depth1"
    assert main(_train_sae(study, out)) == 2
    _one_line_naming(capsys.readouterr().err, out / "sae.safetensors", "No space left")


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """`folder` itself read-only, its parent writable: chmod for a user, the immutable flag for root (whom
    permission bits do not stop)."""
    if os.geteuid():
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = ["chattr", "-i", str(folder)]
    else:
        pytest.skip("root, and this filesystem has no immutable flag")
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


def test_a_read_only_output_folder_is_one_line_naming_it_and_leaves_no_partial(study, tmp_path, capsys):
    out = tmp_path / "depth1"
    out.mkdir()
    with _read_only(out):
        assert main(_train_sae(study, out)) == 2
    _one_line_naming(capsys.readouterr().err, out, "not permitted" if os.geteuid() == 0 else "denied")
    assert list(out.iterdir()) == []


def test_train_sae_resumes_only_its_own_partial_folder(study, tmp_path):
    """A partial folder of other settings (or one a failed publish left) is cleared, not resumed."""
    out = tmp_path / "depth1"
    stale = tmp_path / ".depth1.partial"
    stale.mkdir()
    (stale / "codes.safetensors").write_text("another run's")
    (stale / ".resume-key").write_text("another run's settings")
    _ok(*_train_sae(study, out))
    assert not (out / ".resume-key").exists() and not stale.exists()
    assert (out / "codes.safetensors").read_bytes() != b"another run's"


@contextlib.contextmanager
def _locked_by_another_process(results: Path) -> Iterator[int]:
    """A process holding `results`' lock until the block ends (then killed: the kernel drops its lock)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from metasae.runlock import lock_results; "
            f"lock_results({str(results)!r}); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_second_run_on_a_locked_results_folder_is_refused_naming_the_holder(tmp_path):
    with (
        _locked_by_another_process(tmp_path) as pid,
        pytest.raises(MetasaeError, match=rf"another run \(PID {pid}\)"),
    ):
        lock_results(tmp_path)
    lock_results(tmp_path)  # the kernel dropped the killed holder's lock: no stale lock
    lock_results(tmp_path)  # and this process may take its own lock again


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")
def test_a_workflow_on_a_locked_results_folder_is_refused_before_any_plan(tmp_path):
    """The lock is taken when the Snakefile is parsed, before the DAG is built: no plan, one line."""
    command = ["snakemake", "--cores", "1", "--configfile", "config/test.yaml"]
    command += ["--config", f"results={tmp_path}"]
    with _locked_by_another_process(tmp_path) as pid:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"another run (PID {pid})" in output, output
    assert "Building DAG" not in output and "Job stats" not in output and "rule " not in output, output
