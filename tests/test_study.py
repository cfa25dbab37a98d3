import copy
from pathlib import Path

import pytest
import yaml

from metasae import study
from metasae.errors import MetasaeError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


def load(name="config.yaml"):
    return yaml.safe_load((ROOT / "config" / name).read_text())


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name != "schema.yaml"], ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    config = study.drop_nulls(yaml.safe_load(path.read_text()))
    study.validate_schema(config)
    study.validate_semantics(config, study.known_datasets())


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c.update(bogus=1), "Additional properties are not allowed"),
        (
            lambda c: c["sae"]["topk"].update(architecture="vanilla"),
            r"config key sae.topk.architecture: 'vanilla'",
        ),
        (lambda c: c["meta"].update(max_depth=-1), r"config key meta.max_depth: -1 is less than the minimum"),
        (lambda c: c.update(seeds="0"), r"config key seeds: '0' is not of type 'array'"),
        (lambda c: c["probes"].update(digits="digits:train; rm -rf /"), r"config key probes.digits"),
    ],
)
def test_schema_errors_name_the_key(edit, message):
    config = load()
    edit(config)
    with pytest.raises(MetasaeError, match=message):
        study.validate_schema(config)


def test_unknown_dataset_and_probe_and_layer_are_named():
    config = load()
    config["probes"]["digits"] = "nosuch:train"
    with pytest.raises(MetasaeError, match=r"probes.digits: unknown dataset 'nosuch'; allowed: cifar10, "):
        study.validate_semantics(config, study.known_datasets())
    config = load()
    config["classifiers"]["mlp_digits"]["probes"].append("missing")
    with pytest.raises(MetasaeError, match="unknown probe 'missing'"):
        study.validate_semantics(config, study.known_datasets())
    config = load()
    config["classifiers"]["mlp_digits"]["saes"] = ["topk", "nosuch"]
    with pytest.raises(MetasaeError, match=r"classifiers.mlp_digits.saes: unknown SAE 'nosuch'"):
        study.validate_semantics(config, study.known_datasets())
    config = load()
    config["classifiers"]["mlp_digits"]["layers"] = ["conv1"]
    with pytest.raises(MetasaeError, match="mlp has no layer 'conv1'"):
        study.validate_semantics(config, study.known_datasets())


def test_a_schedule_reaching_zero_stops_at_width_min_first():
    config = load()
    config["meta"]["modes"]["decoder"]["width"]["factor"] = 0.02  # 512, 10, 0, ...: depth 3 is below min 8
    study.validate_semantics(config, study.known_datasets())
    config["meta"]["modes"]["decoder"]["width"]["factor"] = 0.01  # 512, 5, ...: no meta-SAE would train
    with pytest.raises(MetasaeError, match="meta.modes.decoder.width.min: 8 is above every depth-2"):
        study.validate_semantics(config, study.known_datasets())
    assert study._trained_depths(study.width_schedule(512, 0.01, 5), 8) == []
    assert study._trained_depths(study.width_schedule(32, 0.25, 5), 8) == [(2, 8)]


def test_width_schedule():
    assert study.width_schedule(512, 0.25, 5) == [512, 128, 32, 8, 2]
    assert study.width_schedule(64, 2, 3) == [64, 128, 256]


def test_presets_drop_inherited_entries_with_null():
    config = copy.deepcopy(load())
    config["sae"]["topk"] = None
    config["sae"]["other"] = {"architecture": "relu", "width": 8}
    study.drop_nulls(config)
    assert list(config["sae"]) == ["synth_w32", "other"]  # the planted tree's SAE stays


def test_runs_and_depth_folders_cover_every_combination():
    config = load()
    runs = study.runs(config)
    assert len(runs) == len(config["seeds"]) * 3
    folders = study.depth_folders(config, runs[0])
    assert folders[0].endswith("/depth1")
    assert len(folders) == 1 + len(config["meta"]["modes"]) * (config["meta"]["max_depth"] - 1)


def _merge(base: dict, over: dict) -> dict:
    """Snakemake's --configfile merge: nested dicts merge, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


@pytest.mark.parametrize("preset", sorted((ROOT / "config" / "presets").glob("*.yaml")), ids=lambda p: p.name)
def test_presets_merge_over_the_default_into_a_valid_config(preset):
    config = study.drop_nulls(_merge(load(), yaml.safe_load(preset.read_text())))
    study.validate_schema(config)
    study.validate_semantics(config, study.known_datasets())
    if preset.name == "log.yaml":
        assert {run.sae for run in study.runs(config)} == {"log_relu"}
        assert list(config["meta"]["modes"]) == ["activations"]
        assert config["sae"]["log_relu"]["l1_reduction"] == "sum" and "k" not in config["sae"]["log_relu"]


def test_a_classifier_trains_every_sae_but_the_planted_trees_unless_it_names_them():
    config = study.drop_nulls(load())
    names = {run.sae for run in study.runs(config)}
    assert names == {"topk"}  # synth_w32 is the planted tree's alone
    assert {run.sae for run in study.synth_runs(config)} == {"synth_w32"}
    config["classifiers"]["mlp_digits"]["saes"] = ["topk", "synth_w32"]
    assert {run.sae for run in study.runs(config)} == set(config["sae"])
