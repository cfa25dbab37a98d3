"""Paths and parameters shared by the rules (plain functions of wildcards)."""

import json
import shlex
from pathlib import Path

RUN = "{clf}/seed{seed}/{probe}/{layer}/{sae}"


def flags(**values):
    """`--key value` pairs, each value shell-quoted; None values are left out, lists become several words."""
    words = []
    for key, value in values.items():
        if value is None:
            continue
        words.append(f"--{key.replace('_', '-')}")
        words += [shlex.quote(str(v)) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return " ".join(words)


def device_flags():
    """For stages that read no dataset (train-sae)."""
    return flags(device=config.get("device", "cpu"))


def common_flags():
    """For stages that read datasets: the device and where real datasets live."""
    return flags(device=config.get("device", "cpu"), data_dir=config.get("data_dir"))


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def all_analysis_summaries():
    return [f"{R}/analysis/{folder}/summary.json" for run in RUNS for folder in study.depth_folders(config, run)]



def parent_metrics(w):
    """The depth d-1 metrics.json a depth-d job waits for (depth 1 is shared by the modes)."""
    depth = int(w.depth) - 1
    run = RUN.format(**w)
    return f"{R}/sae/{run}/depth1/metrics.json" if depth == 1 else f"{R}/sae/{run}/{w.mode}/depth{depth}/metrics.json"


DSP = config.get("dsprites") or {}


def dsprites_targets():
    """The dSprites branch targets: each run's probe table and k-sparse table (none without config)."""
    runs = DSP.get("runs", {})
    return [f"{R}/probes/{run}/{name}" for run in runs for name in ("probes.csv", "ksparse.csv")]
