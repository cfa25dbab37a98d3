"""The study workflow end to end on a tiny config: planned, run, aggregated, rendered; and killed with SIGKILL
mid-run, then resumed (with warm starts off) to the same summary tables. Marked slow: CI runs it once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "test.yaml"
SUMMARY_FILES = ("depths.csv", "optimal_depth.csv", "claims.csv")


def snakemake(results: Path, *extra: str, **popen) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "--configfile",
        str(CONFIG),
        "--config",
        f"results={results}",
        *extra,
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def run_to_end(results: Path, *extra: str) -> str:
    proc = snakemake(results, *extra)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("wf") / "results"
    run_to_end(results)
    return results


def test_summary_tables_are_sane(finished):
    depths = pd.read_csv(finished / "summary" / "depths.csv")
    # 2 seeds x 2 SAE seeds x 2 modes x (3 stack depths + the width-8 control), depth 1 listed under each mode
    assert len(depths) == 2 * 2 * 2 * (3 + 1)
    assert depths.groupby("role").size().to_dict() == {"stack": 24, "control": 8}
    trained = depths[depths["status"] == "trained"]
    assert trained["fvu"].between(0, 1).all() and trained["stack_fvu"].notna().all()
    assert trained["purity_mean"].between(0, 1).all() and trained["effective_rank"].gt(1).all()
    stopped = depths[depths["status"] == "stopped"]
    assert set(stopped["depth"]) == {3} and len(stopped) == 8  # 8 * 0.25 = 2 < width.min 4, both modes
    assert stopped["stop_reason"].str.contains("width.min").all()
    depth2 = depths[(depths["role"] == "stack") & (depths["depth"] == 2)]
    assert (depth2["control_width"] == 8).all() and depth2["control_stack_fvu"].notna().all()
    assert depth2["stack_fvu_minus_control"].notna().all()
    assert (
        trained["stability_sae_mean_cosine"].notna().all() and trained["stability_mean_cosine"].notna().all()
    )
    assert set(depths["sae_seed"]) == {0, 1} and (depths["fit_ref"] == "digits:train").all()
    optimal = pd.read_csv(finished / "summary" / "optimal_depth.csv")
    assert not optimal.duplicated(["model", "dataset", "layer", "sae", "mode", "criterion"]).any()
    assert set(optimal["mode"]) == {"decoder", "activations"}
    found = optimal[optimal["optimal_depth"].notna()]
    assert len(found) > 0
    assert (found["ci_low"] <= found["optimal_depth"]).all() and (
        found["optimal_depth"] <= found["ci_high"]
    ).all()
    # a criterion without an estimate says why (excluded statistic, or no value), never a bare gap
    unknown = optimal[optimal["optimal_depth"].isna()]
    assert unknown["ci_low"].isna().all() and unknown["ci_high"].isna().all()
    assert (
        unknown["basis"]
        .isin(["fixed by construction", "dense routed codes", "depth not reached", "no value"])
        .all()
    )
    assert (unknown["log_claim_depth2"] == "untested").all()
    claimed = pd.read_csv(finished / "summary" / "claims.csv")
    assert len(claimed) >= 3 and not claimed["sae"].str.contains("__s").any()  # SAE seeds: stability only


def test_no_sae_is_analysed_on_an_image_it_trained_on(finished):
    """Through the manifests: each depth-1 SAE's fit cache and the eval cache its codes (and every statistic)
    are of share no (dataset, split, index) image."""
    from metasae.activations import load_activations
    from metasae.data.refs import parse_ref
    from metasae.stack import Depth

    folders = sorted((finished / "sae").rglob("depth1/metrics.json"))
    assert len(folders) == 2 * 2 * 2  # seeds x SAE seeds x (stack, control)
    for metrics in folders:
        depth = Depth.load(metrics.parent)
        fit, held_out = load_activations(depth.fit_acts_dir), load_activations(depth.acts_dir)
        assert (fit.manifest["role"], held_out.manifest["role"]) == ("fit", "eval")
        assert depth.fit_codes.shape[0] == len(fit.index) and depth.codes.shape[0] == len(held_out.index)

        def images(cache):
            ref = parse_ref(cache.manifest["dataset"])
            return {(ref.name, ref.split, int(i)) for i in cache.index}

        assert not images(fit) & images(held_out), metrics.parent


def test_report_and_per_depth_outputs_exist(finished):
    for name in ("index.html", "index.pdf", "index.md"):
        assert (finished / "report" / name).stat().st_size > 0
    depth2 = finished / "analysis" / "mlp_digits" / "seed0" / "digits" / "fc1" / "topk" / "decoder" / "depth2"
    assert (depth2 / "latents.parquet").is_file() and any((depth2 / "figures").glob("*.png"))
    assert (finished / "benchmarks").is_dir() and (finished / "logs").is_dir()


def test_sigkill_mid_run_then_same_command_completes_identically(finished, tmp_path):
    results = tmp_path / "results"
    proc = snakemake(results, start_new_session=True)
    deadline = time.time() + 600
    # wait until the stack is under way (some SAE depth finished), then kill snakemake and all its jobs
    while time.time() < deadline and not list((results / "sae").rglob("depth2/metrics.json")):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (results / "summary" / "depths.csv").exists(), "killed too late to test a resume"
    # resumed cold (every job its own interpreter): the tables must equal the warm-started run's
    out = run_to_end(results, "warm_start=False")
    assert "Nothing to be done" not in out
    for name in SUMMARY_FILES:
        pd.testing.assert_frame_equal(
            pd.read_csv(results / "summary" / name), pd.read_csv(finished / "summary" / name), obj=name
        )
