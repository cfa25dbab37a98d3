"""What a study's names resolve to, light enough for the workflow's parse time: a run's SAE folder name
(the configured SAE, its width-matched control, its SAE seed), a probe's two image sets (eval and fit), and
a classifier's training flags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from metasae.errors import MetasaeError

SEP = "__"  # joins a configured SAE's name to its control width and SAE seed (configured names lack it)
_NAME, _NUMBER = r"[a-z0-9]+(?:_[a-z0-9]+)*", r"[1-9]\d*"
RUN_SAE_PATTERN = re.compile(rf"^(?P<sae>{_NAME})(?:__w(?P<width>{_NUMBER}))?(?:__s(?P<seed>{_NUMBER}))?$")
# The workflow's `sae` wildcard of the two kinds of run: a stack (depth 1 and its meta-SAEs, trained in one
# job) and a width-matched control (depth 1 alone); together they match what RUN_SAE_PATTERN matches.
STACK_SAE_REGEX = rf"{_NAME}(?:__s{_NUMBER})?"
CONTROL_SAE_REGEX = rf"{_NAME}__w{_NUMBER}(?:__s{_NUMBER})?"


@dataclass(frozen=True)
class RunSAE:
    """What a run's SAE folder name says: the configured SAE, the width of a control (None: the stack's own
    depth 1), and the SAE seed."""

    sae: str
    control_width: int | None
    sae_seed: int

    @property
    def role(self) -> str:
        return "stack" if self.control_width is None else "control"


def run_sae_name(sae: str, control_width: int | None = None, sae_seed: int = 0) -> str:
    """`topk`, `topk__w128` (its width-matched control), `topk__s1` / `topk__w128__s1` (SAE seed 1): seed 0 is
    the bare name, so a study with one SAE seed keeps the paths it always had."""
    width = f"{SEP}w{control_width}" if control_width is not None else ""
    return f"{sae}{width}{f'{SEP}s{sae_seed}' if sae_seed else ''}"


def parse_run_sae(name: str) -> RunSAE:
    """The inverse of `run_sae_name` (a strict pattern: a name it does not match is an error)."""
    match = RUN_SAE_PATTERN.match(name)
    if match is None:
        raise MetasaeError(f"{name!r}: not a run SAE name (<sae>[__w<width>][__s<seed>])")
    width, seed = match["width"], match["seed"]
    return RunSAE(match["sae"], int(width) if width else None, int(seed) if seed else 0)


def run_spec(config: dict, name: str) -> dict:
    """The training settings of a run's depth-1 SAE: its configured block, at the control's width for a
    control (a control is trained like depth 1, with no controls of its own)."""
    parsed = parse_run_sae(name)
    spec = {k: v for k, v in config["sae"][parsed.sae].items() if k != "controls"}
    return spec if parsed.control_width is None else {**spec, "width": parsed.control_width}


def probe_ref(config: dict, name: str) -> str:
    """The probe's eval images: what every image statistic is computed on, and no SAE of the stack saw."""
    return probe_sets(config, name)["dataset"]


def fit_ref(config: dict, name: str) -> str:
    """The probe's fit images: what the SAE stack trains on (disjoint from `probe_ref`, checked)."""
    return probe_sets(config, name)["fit"]


def probe_shuffled(config: dict, name: str) -> bool:
    """Whether the probe's cached labels are permuted (the negative control: no purity claim may hold)."""
    return bool(probe_sets(config, name)["shuffle_labels"])


EVAL_SPLIT = "test"  # a probe given as a train split is evaluated on this split of its dataset


def probe_sets(config: dict, name: str) -> dict:
    """A probe as {dataset, fit, shuffle_labels}. A string names a dataset reference: a non-train split is
    the eval set and fits on the dataset's whole `train` split (`mnist:test` fits on `mnist:train`); a train
    split (or slice of it) is the fit set and evaluates on the dataset's whole `test` split (`digits:train`
    evaluates on `digits:test`). A mapping says both."""
    from metasae.data.refs import DEFAULT_SPLIT, parse_ref

    entry = config["probes"][name]
    if isinstance(entry, dict):
        return {"shuffle_labels": False, **entry}
    ref = parse_ref(entry)
    if ref.split == DEFAULT_SPLIT:
        return {"dataset": f"{ref.name}:{EVAL_SPLIT}", "fit": entry, "shuffle_labels": False}
    return {"dataset": entry, "fit": f"{ref.name}:{DEFAULT_SPLIT}", "shuffle_labels": False}


CLASSIFIER_DEFAULTS = {"epochs": 5, "batch_size": 64, "lr": 1e-3}


def classifier_args(config: dict, name: str) -> dict:
    """The `metasae train-classifier` flags of one configured classifier, defaults filled in."""
    clf = {**CLASSIFIER_DEFAULTS, **config["classifiers"][name]}
    return {
        "model": clf["model"],
        "train": clf["train"],
        "test": clf["test"],
        "epochs": clf["epochs"],
        "batch_size": clf["batch_size"],
        "lr": clf["lr"],
        "input_shape": clf.get("input_shape"),
    }
