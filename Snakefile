"""The metasae study: classifiers -> activation caches -> SAE + meta-SAE stack -> per-depth analysis ->
aggregation -> write-up. Every rule calls the `metasae` CLI; depth is a wildcard whose input is depth - 1.

    snakemake --cores all                                   # the embedded default study
    snakemake --cores all --configfile config/mnist.yaml          # the real study (the headline write-up)
    snakemake --cores all --configfile config/config.yaml config/presets/log.yaml
"""

import atexit
import sys
import threading
from pathlib import Path

from snakemake.utils import min_version, validate

from metasae import runlock, study, study_names
from metasae.cli import warm
from metasae.errors import MetasaeError

min_version("8.0")


# The embedded default, unless configs are named on the command line (they replace it; presets merge over
# the configs listed before them): --configfile config/config.yaml config/presets/log.yaml
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


study.drop_nulls(config)
try:
    study.validate_schema(config)
    validate(config, str(study.SCHEMA))
    KNOWN = study.known_datasets()
    study.validate_semantics(config, KNOWN)
    study.check_data_dir(config, KNOWN)
except MetasaeError as exc:
    sys.exit(f"metasae: config error: {exc}")

R = config["results"]

# One run per results folder (the profiles run without Snakemake's own lock, which SIGKILL leaves stale),
# taken here, before the DAG is built or a plan printed, so a busy folder is refused at once. Only the driver
# takes it: Snakemake parses this file again in job subprocesses and on SLURM nodes (exec mode subprocess /
# remote), while the driver holds the lock. Dry runs take it too: a busy folder's plan would be wrong.
if workflow.is_main_process:
    try:
        runlock.lock_results(R)
    except MetasaeError as exc:
        sys.exit(f"metasae: {exc}")
    except OSError as exc:
        sys.exit(f"metasae: {exc.filename or R}: cannot take the results folder's lock: {exc.strerror}")


def start_warm_server():
    """Warm starts (metasae.cli.warm): a local run's jobs fork from one server that imported torch & co. once
    instead of each importing them. Started when the run starts (its executor is known only then): not for
    a dry run, nor for a cluster's jobs (they run cold on their nodes)."""
    if workflow.is_main_process and workflow.local_exec and config.get("warm_start", True):
        atexit.register(warm.stop, warm.start(Path(R) / "logs" / "warm_server.log"))


onstart:
    start_warm_server()


def stop_replanning_timers():
    """Snakemake (9.27) leaves a re-planning `threading.Timer` pending per finished job (the profile's
    max-jobs-per-timespan), and the interpreter waits for every one before it exits: 17 s after the default
    study's last job (measured). Once the run is over they have nothing to re-plan; cancelled, they end now."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()


onsuccess:
    stop_replanning_timers()


onerror:
    stop_replanning_timers()


RUNS = study.runs(config)
if workflow.is_main_process:  # a width-matched control narrower than depth 1's k cannot be trained: say so
    for name in config["sae"]:
        skipped = study.matched_controls(config, name)[1]
        if skipped:
            print(f"metasae: sae.{name}.controls: no control at width(s) {skipped} (below its k)", file=sys.stderr)


wildcard_constraints:
    clf="[a-z0-9_]+",
    probe="[a-z0-9_]+",
    layer="[a-z0-9_]+",
    sae="[a-z0-9_]+",
    mode="decoder|activations",
    seed=r"\d+",
    depth=r"\d+",


include: "workflow/rules/common.smk"
include: "workflow/rules/check_data.smk"
include: "workflow/rules/train_classifier.smk"
include: "workflow/rules/cache_acts.smk"
include: "workflow/rules/train_sae.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/analyse.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/explore.smk"
include: "workflow/rules/train_vit.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        rules.aggregate.output if RUNS else [],
        dsprites_targets(),
        rules.report_dsprites.output if DSP.get("runs") else [],
        rules.report.output if RUNS else [],
        rules.explore.output if RUNS else [],
        synth_targets(),
    default_target: True
