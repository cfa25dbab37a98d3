"""Wall time of one `metasae probe` job with each backend, and how far the torch scores are from sklearn's.

Runs the probe stage on a train-vit output (the workflow's `probe_vit` job: config/config.yaml's dsprites
probe_set and probes settings) once per backend in this process, then prints the seconds and, per factor,
metric and probe, the mean and largest |torch - sklearn| over the checkpoint x layer rows.

    python benchmarks/probe_backends.py --vit-dir RESULTS/vit/dsprites_shape [--out /tmp/probe_backends]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd
import torch

from metasae.stages.probe import ProbeConfig, run_probes

WORKFLOW_SPEC = {"test_fraction": 0.3, "mlp_at": "ends", "mlp_hidden": 32, "mlp_iter": 60, "bootstrap": 200}


def timed_run(vit_dir: Path, dataset: str, out: Path, backend: str) -> tuple[float, pd.DataFrame]:
    cfg = dataclasses.replace(ProbeConfig(**WORKFLOW_SPEC), backend=backend)
    start = time.perf_counter()
    table = run_probes(vit_dir, dataset, out / backend, cfg)
    return time.perf_counter() - start, table


def differences(sklearn: pd.DataFrame, torch_: pd.DataFrame) -> pd.DataFrame:
    """Per factor, metric and probe: mean and max |Δ| of torch against sklearn over the probed rows."""
    keys = ["train_set", "checkpoint", "layer", "factor", "metric", "probe"]
    probed = sklearn[sklearn["train_set"] != "symmetry_ceiling"]
    both = probed.merge(torch_, on=keys, suffixes=("_sklearn", "_torch"))
    both["delta"] = both["value_torch"] - both["value_sklearn"]
    both["abs"] = both["delta"].abs()
    return both.groupby(["factor", "metric", "probe"], sort=False).agg(
        mean_delta=("delta", "mean"), max_abs=("abs", "max"), rows=("abs", "size")
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vit-dir", type=Path, required=True)
    p.add_argument("--dataset", default="dsprites_gen:sample[:3000]")
    p.add_argument("--out", type=Path, default=Path("/tmp/probe_backends"))
    p.add_argument("--threads", type=int, default=1, help="torch / BLAS threads (the workflow's: 1)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    runs = {b: timed_run(a.vit_dir, a.dataset, a.out, b) for b in ("sklearn", "torch")}
    for backend, (seconds, _) in runs.items():
        print(f"{backend}: {seconds:.1f} s")
    print(f"speed-up: {runs['sklearn'][0] / runs['torch'][0]:.2f}x")
    with pd.option_context("display.width", 120, "display.max_rows", 100):
        print(differences(runs["sklearn"][1], runs["torch"][1]).round(4))


if __name__ == "__main__":
    main()
