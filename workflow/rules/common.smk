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


REPORT_ONLY = ("compare_with",)  # config keys only the report reads: changing one reruns the report alone
DRIVER_ONLY = ("warm_start",)  # how jobs are started, not what they compute: changing one reruns nothing


def study_config():
    """The config the study's jobs depend on (their `config` params): all of it but the REPORT_ONLY and
    DRIVER_ONLY keys."""
    return {k: v for k, v in config.items() if k not in REPORT_ONLY + DRIVER_ONLY}


def all_analysis_summaries():
    return [f"{R}/analysis/{folder}/summary.json" for run in RUNS for folder in study.depth_folders(config, run)]


# A run's stack is one job per stage (train_stack, analyse_stack): depth 1, then each mode's depths
# 2..max_depth, their commands run one after another in one `metasae` process (`--then`), so the stack pays
# one interpreter start-up and one set of imports (torch, pandas, ...) instead of one per depth. A stack
# killed half-way is rerun whole.
META_DEPTHS = list(range(2, config["meta"]["max_depth"] + 1))
META_MODES = list(config["meta"]["modes"])


def stack_folder(mode, depth):
    """A depth's folder inside its run (depth 1 is shared by the modes)."""
    return "depth1" if depth == 1 else f"{mode}/depth{depth}"


STACK_FOLDERS = ["depth1"] + [stack_folder(mode, d) for mode in META_MODES for d in META_DEPTHS]


def chained(commands):
    """`metasae` commands joined to run in one process, in order; the first that fails stops the chain."""
    return " --then ".join(commands)


def run_folder(w, stage):
    """results/<stage>/<run> of a job's wildcards."""
    return f"{R}/{stage}/{RUN.format(**dict(w.items()))}"


def depth_folder(w, stage, folder):
    """results/<stage>/<run>/<folder> (a STACK_FOLDERS entry) of a job's wildcards."""
    return f"{run_folder(w, stage)}/{folder}"


DSP = config.get("dsprites") or {}


def dsprites_targets():
    """The dSprites branch targets: each run's probe table and k-sparse table (none without config)."""
    runs = DSP.get("runs", {})
    summary = [f"{R}/probes_summary/summary.json"] if runs else []
    return [f"{R}/probes/{run}/{name}" for run in runs for name in ("probes.csv", "ksparse.csv")] + summary
