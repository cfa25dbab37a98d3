"""The study configuration: validation with readable errors, and the runs and depths it asks for.

Snakemake (the conductor) imports this at parse time, so it stays light: no torch import here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from metasae.errors import MetasaeError

SCHEMA = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
MODES = ("decoder", "activations")
MODEL_LAYERS = {"mlp": ("fc1", "fc2", "fc3"), "cnn": ("conv1", "conv2", "fc1", "fc2")}


@dataclass(frozen=True)
class Run:
    """One SAE stack: a classifier (per seed) probed on one dataset at one layer with one depth-1 SAE."""

    classifier: str
    seed: int
    probe: str
    layer: str
    sae: str

    @property
    def path(self) -> str:
        return f"{self.classifier}/seed{self.seed}/{self.probe}/{self.layer}/{self.sae}"


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate_schema(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """JSON-schema check whose error names the offending key and the allowed values."""
    import jsonschema
    from jsonschema.exceptions import best_match

    schema = yaml.safe_load(Path(schema_path).read_text())
    error = best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        allowed = error.schema.get("enum") or error.schema.get("pattern") or error.schema.get("type")
        hint = f" (allowed: {allowed})" if allowed and error.validator != "additionalProperties" else ""
        raise MetasaeError(f"config key {_key(error.absolute_path)}: {error.message}{hint}")


def width_schedule(start: int, factor: float, max_depth: int) -> list[int]:
    """Widths of depths 1..max_depth: width_d = round(width_{d-1} * factor)."""
    widths = [start]
    while len(widths) < max_depth:
        widths.append(int(round(widths[-1] * factor)))
    return widths


def validate_semantics(config: dict, known_datasets: set[str] | None = None) -> None:
    """What a schema cannot say: references between sections, known dataset names, width schedules."""
    from metasae.data.refs import parse_ref

    probes = config["probes"]
    for name, clf in config["classifiers"].items():
        for key in ("train", "test"):
            _check_ref(parse_ref, clf[key], f"classifiers.{name}.{key}", known_datasets)
        for probe in clf["probes"]:
            if probe not in probes:
                raise MetasaeError(f"config key classifiers.{name}.probes: unknown probe {probe!r}; "
                                   f"defined probes: {sorted(probes)}")
        for layer in clf["layers"]:
            if layer not in MODEL_LAYERS[clf["model"]]:
                raise MetasaeError(f"config key classifiers.{name}.layers: {clf['model']} has no layer {layer!r}; "
                                   f"allowed: {list(MODEL_LAYERS[clf['model']])}")
    for name, ref in probes.items():
        _check_ref(parse_ref, ref, f"probes.{name}", known_datasets)
    meta = config["meta"]
    for sae_name, sae in config["sae"].items():
        _check_k(sae, f"sae.{sae_name}")
        for mode, spec in meta["modes"].items():
            _check_k(spec, f"meta.modes.{mode}")
            widths = width_schedule(sae["width"], spec["width"]["factor"], meta["max_depth"])
            if 0 in widths:
                raise MetasaeError(f"config key meta.modes.{mode}.width: the schedule from sae.{sae_name}.width "
                                   f"reaches 0 latents by depth {widths.index(0) + 1} (widths {widths}); raise "
                                   "width.factor or lower meta.max_depth")


def _check_ref(parse_ref, ref: str, key: str, known: set[str] | None) -> None:
    try:
        parsed = parse_ref(ref)
    except MetasaeError as exc:
        raise MetasaeError(f"config key {key}: {exc}") from None
    if known is not None and parsed.name not in known:
        raise MetasaeError(f"config key {key}: unknown dataset {parsed.name!r}; allowed: {sorted(known)}")


def _check_k(spec: dict, key: str) -> None:
    needs_k = spec["architecture"] in ("topk", "batchtopk")
    if needs_k and "k" not in spec:
        raise MetasaeError(f"config key {key}.k: required for architecture {spec['architecture']!r}")


def runs(config: dict) -> list[Run]:
    return [
        Run(clf_name, seed, probe, layer, sae_name)
        for clf_name, clf in config["classifiers"].items()
        for seed in config["seeds"]
        for probe in clf["probes"]
        for layer in clf["layers"]
        for sae_name in config["sae"]
    ]


def depth_folders(config: dict, run: Run) -> list[str]:
    """Relative folders of every depth of a run: depth 1 is shared by the modes, deeper depths are per mode."""
    folders = [f"{run.path}/depth1"]
    for mode in config["meta"]["modes"]:
        folders += [f"{run.path}/{mode}/depth{d}" for d in range(2, config["meta"]["max_depth"] + 1)]
    return folders


def drop_nulls(config: dict) -> dict:
    """Remove entries set to null, in place: how a preset drops an entry it inherits from the base config."""
    for key in [k for k, v in config.items() if v is None and k != "data_dir"]:
        del config[key]
    for value in config.values():
        if isinstance(value, dict):
            drop_nulls(value)
    return config


def known_datasets() -> set[str]:
    from metasae.data import list_datasets

    return set(list_datasets())


def dataset_refs(config: dict) -> list[str]:
    refs = [clf[k] for clf in config["classifiers"].values() for k in ("train", "test")]
    return sorted(set(refs + list(config["probes"].values())))


def check_data_available(config: dict) -> list[dict]:
    """Load every dataset the study names once, so a missing real dataset fails the first job, naming what to
    download and where; returns what each reference resolved to."""
    from metasae.data import load_dataset

    found, missing = [], []
    for ref in dataset_refs(config):
        try:
            data = load_dataset(ref, config.get("data_dir"))
        except MetasaeError as exc:
            missing.append(str(exc))
            continue
        found.append({"ref": ref, "n": len(data.labels), "is_real": data.is_real, "description": data.description})
    if missing:
        raise MetasaeError("datasets not available offline:\n  " + "\n  ".join(missing))
    return found


CLASSIFIER_DEFAULTS = {"epochs": 5, "batch_size": 64, "lr": 1e-3}


def classifier_args(config: dict, name: str) -> dict:
    """The `metasae train-classifier` flags of one configured classifier, defaults filled in."""
    clf = {**CLASSIFIER_DEFAULTS, **config["classifiers"][name]}
    return {"model": clf["model"], "train": clf["train"], "test": clf["test"], "epochs": clf["epochs"],
            "batch_size": clf["batch_size"], "lr": clf["lr"], "input_shape": clf.get("input_shape")}
