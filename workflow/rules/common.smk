"""Paths and parameters shared by the rules (plain functions of wildcards)."""

import json
import shlex
from pathlib import Path

RUN = "{clf}/seed{seed}/{probe}/{layer}/{sae}"
THREADS_ENV = "export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}; "


def flags(**values):
    """`--key value` pairs, each value shell-quoted; None values are left out, lists become several words."""
    words = []
    for key, value in values.items():
        if value is None:
            continue
        words.append("--" + key.replace("_", "-"))
        words += [shlex.quote(str(v)) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return " ".join(words)


def common_flags():
    return flags(device=config.get("device", "cpu"), data_dir=config.get("data_dir"))


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def all_analysis_summaries():
    return [f"{R}/analysis/{folder}/summary.json" for run in RUNS for folder in study.depth_folders(config, run)]


rule check_data:
    """Load every dataset the config names, first: a missing real dataset fails here, saying what to download."""
    output:
        f"{R}/data_check.json",
    params:
        config=as_json(config),
    log:
        f"{R}/logs/check_data.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "metasae check-data --config-json {params.config:q} --out {output} > {log} 2>&1"
