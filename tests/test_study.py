import copy
from pathlib import Path

import pytest
import yaml

from metasae import study, study_names
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
    config["meta"]["modes"]["decoder"]["width"]["min"] = 8
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
    probes, saes = len(config["classifiers"]["mlp_digits"]["probes"]), 1 + 2  # topk and its 2 controls
    assert len(runs) == len(config["seeds"]) * probes * saes * len(config["sae_seeds"])
    folders = study.depth_folders(config, runs[0])
    assert folders[0].endswith("/depth1")
    assert len(folders) == 1 + len(config["meta"]["modes"]) * (config["meta"]["max_depth"] - 1)
    control = next(r for r in runs if r.is_control)
    assert study.depth_folders(config, control) == [f"{control.path}/depth1"]


def test_sae_seeds_multiply_the_runs_and_name_their_folders():
    config = load()
    config["sae_seeds"] = [0, 3]
    names = {r.sae for r in study.runs(config)}
    assert names == {"topk", "topk__w128", "topk__w256", "topk__s3", "topk__w128__s3", "topk__w256__s3"}
    config["classifiers"]["mlp_digits"]["sae_seeds"] = [1]  # a classifier's own replace the top-level ones
    study.validate_schema(config)
    assert {r.sae for r in study.runs(config)} == {"topk__s1", "topk__w128__s1", "topk__w256__s1"}


@pytest.mark.parametrize(
    "name,parsed",
    [
        ("topk", study_names.RunSAE("topk", None, 0)),
        ("synth_w32", study_names.RunSAE("synth_w32", None, 0)),
        ("topk__w128", study_names.RunSAE("topk", 128, 0)),
        ("topk__s2", study_names.RunSAE("topk", None, 2)),
        ("my_sae__w8__s1", study_names.RunSAE("my_sae", 8, 1)),
    ],
)
def test_run_sae_names_round_trip(name, parsed):
    assert study.parse_run_sae(name) == parsed
    assert study.run_sae_name(parsed.sae, parsed.control_width, parsed.sae_seed) == name


@pytest.mark.parametrize("name", ["topk__s0", "topk__w0", "topk__s1__w8", "topk_", "a__b", "topk;rm"])
def test_run_sae_names_outside_the_pattern_are_refused(name):
    with pytest.raises(MetasaeError, match="not a run SAE name"):
        study.parse_run_sae(name)


@pytest.mark.parametrize("name", ["a__b", "topk__w8", "topk_"])
def test_configured_sae_names_may_not_look_like_run_names(name):
    config = load()
    config["sae"][name] = config["sae"]["topk"]
    with pytest.raises(MetasaeError, match=rf"config key sae.{name}: a name may not hold '__'"):
        study.validate_semantics(config, study.known_datasets())


def test_matched_controls_cover_every_mode_width_at_or_above_k():
    config = load()  # topk: width 512, k 96; decoder 0.5 (min 96): 256 128; activations 0.5: 256 128 64 32
    assert study.matched_controls(config, "topk") == ([128, 256], [32, 64])
    config["meta"]["modes"]["decoder"]["width"] = {"factor": 0.25, "min": 8}  # 128 32 8
    assert study.matched_controls(config, "topk") == ([128, 256], [8, 32, 64])
    assert study.matched_controls(config, "synth_w32") == ([], [])  # no `controls`
    spec = study_names.run_spec(config, "topk__w128__s1")
    assert spec["width"] == 128 and spec["k"] == 96 and "controls" not in spec
    assert study_names.run_spec(config, "topk") == {
        k: v for k, v in config["sae"]["topk"].items() if k != "controls"
    }


@pytest.mark.parametrize(
    "entry,eval_ref,fit_ref",
    [
        ("mnist:test", "mnist:test", "mnist:train"),
        ("mnist:test[:8000]", "mnist:test[:8000]", "mnist:train"),
        ("digits:train", "digits:test", "digits:train"),
        ("glyphs:train[:600]", "glyphs:test", "glyphs:train[:600]"),
        (
            {"dataset": "mnist:test[:5000]", "fit": "mnist:test[5000:]"},
            "mnist:test[:5000]",
            "mnist:test[5000:]",
        ),
    ],
)
def test_a_probe_has_disjoint_fit_and_eval_sets(entry, eval_ref, fit_ref):
    config = {"probes": {"p": entry}}
    assert (study.probe_ref(config, "p"), study.fit_ref(config, "p")) == (eval_ref, fit_ref)
    assert not study_names.probe_shuffled(config, "p")


@pytest.mark.parametrize(
    "fit,dataset",
    [
        ("digits:test", "digits:test"),
        ("digits:test[:100]", "digits:test[50:]"),
        ("digits:test[300:]", "digits:test"),
    ],
)
def test_a_probe_whose_fit_and_eval_sets_overlap_is_refused(fit, dataset):
    config = load()
    config["probes"]["digits"] = {"dataset": dataset, "fit": fit}
    with pytest.raises(MetasaeError, match="config key probes.digits: fit .* share images"):
        study.validate_semantics(config, study.known_datasets())
    config["probes"]["digits"] = {"dataset": "digits:test[:100]", "fit": "digits:test[100:]"}  # disjoint
    study.validate_semantics(config, study.known_datasets())


def test_a_derived_split_that_does_not_exist_names_the_probe():
    config = load()
    config["probes"]["digits"] = "dsprites_gen:sample"  # no train split to fit on
    with pytest.raises(
        MetasaeError, match=r"probes.digits \(its derived fit set\): dataset dsprites_gen has no"
    ):
        study.validate_semantics(config, study.known_datasets())


def test_shuffled_probe_is_read_from_its_mapping():
    config = load()
    assert study_names.probe_shuffled(config, "digits_shuffled")
    assert not study_names.probe_shuffled(config, "digits")
    assert study.probe_ref(config, "digits_shuffled") == study.probe_ref(config, "digits")


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
    names = {study.parse_run_sae(run.sae).sae for run in study.runs(config)}
    assert names == {"topk"}  # synth_w32 is the planted tree's alone
    assert {run.sae for run in study.synth_runs(config)} == {"synth_w32"}
    config["classifiers"]["mlp_digits"]["saes"] = ["topk", "synth_w32"]
    assert {study.parse_run_sae(run.sae).sae for run in study.runs(config)} == set(config["sae"])


def test_a_planted_trees_stacks_stop_two_depths_past_its_roots():
    config = load()
    assert study.stop_rules(config, "mlp_digits", "digits") == config["meta"]["stop"]
    for tree, spec in config["synth"]["trees"].items():
        rules = study.stop_rules(config, study.SYNTH, tree)
        assert rules == {**config["meta"]["stop"], "max_depth": spec["depth"] + 2}
