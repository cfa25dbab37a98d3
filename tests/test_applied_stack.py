"""The research log's setup in two switches: one seed for every depth of a run (`seed_per_depth: false`), and
one stack per classifier trained on its in-distribution probe and applied to the others (`meta.stack_from:
in_distribution`, `train-sae --apply`)."""

from __future__ import annotations

import pytest
import torch

from metasae import study
from metasae.activations import load_activations
from metasae.cli import main
from metasae.errors import MetasaeError
from metasae.io import read_json
from metasae.models import build_classifier, save_classifier
from metasae.stack import Depth
from metasae.stages import train_sae as stages
from metasae.stages.analyse import analyse
from metasae.stages.cache_acts import cache_activations

BASE = {
    "architecture": "relu",
    "width": 24,
    "l1_coeff": 0.001,
    "lr": 0.003,
    "batch_size": 16,
    "epochs": 20,
    "normalize_inputs": False,
    "b_dec_init": "zeros",
}
ACTIVATIONS = {**BASE, "width": {"factor": 1.0, "min": 1}}
DECODER = {"architecture": "topk", "k": 2, "width": {"factor": 0.25, "min": 2}, "steps": 20, "batch_size": 8}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """A tiny classifier's fc1 cached for two probes: `a` (the stack's own) and `b` (the stack applied)."""
    root = tmp_path_factory.mktemp("applied")
    torch.manual_seed(0)  # test-only: fixed weights for the tiny classifier
    model = build_classifier("mlp", 10, (1, 28, 28))
    save_classifier(model, root / "model", {"model": "mlp", "num_classes": 10, "input_shape": [1, 28, 28]})
    for name, ref in (("a", "digits:test[:80]"), ("b", "digits:test[80:140]")):
        cache_activations(root / "model", ref, "fc1", root / name / "acts")
    return root


@pytest.fixture(scope="module")
def stacks(caches):
    """Probe a trains depth 1 and depth 2 in both modes (one seed for every depth); probe b applies them."""
    a, b = caches / "a", caches / "b"
    log, act = {**BASE, "seed_per_depth": False}, {**ACTIVATIONS, "seed_per_depth": False}
    dec3 = {**DECODER, "width": {"factor": 0.25, "min": 4}}  # 6 * 0.25 rounds to 2 < 4: stops
    keep = stages.StopRules(min_alive=1, max_fvu=1e6)  # untrained-quality SAEs: wiring, not quality
    stages.train_base(a / "acts", log, a / "depth1", seed=3)
    stages.train_meta(a / "depth1", "activations", 2, act, a / "act2", 3, keep)
    stages.train_meta(a / "act2", "activations", 3, act, a / "act3", 3, keep)
    stages.train_meta(a / "depth1", "decoder", 2, DECODER, a / "dec2", 3, keep)
    stages.train_meta(a / "dec2", "decoder", 3, dec3, a / "dec3", 3, keep)
    stages.apply_base(b / "acts", a / "depth1", b / "depth1")
    stages.apply_meta(b / "depth1", a / "act2", b / "act2")
    stages.apply_meta(b / "depth1", a / "dec2", b / "dec2")
    stages.apply_meta(b / "dec2", a / "dec3", b / "dec3")
    return a, b


def test_one_seed_for_every_depth_when_asked(stacks):
    a, _ = stacks
    seeds = [read_json(a / name / "cfg.json")["seed"] for name in ("depth1", "act2", "act3")]
    assert len(set(seeds)) == 1
    assert seeds[0] == stages.depth_seed(3, 1, "base", per_depth=False)
    # same-shape depths therefore start from identical weights, as the log's did (torch.manual_seed(42))
    assert stages.depth_seed(3, 2, "activations") != stages.depth_seed(3, 3, "activations")
    assert read_json(a / "dec2" / "cfg.json")["seed"] == stages.depth_seed(3, 2, "decoder")  # the default


def test_applied_depth1_is_the_source_sae_on_this_probes_activations(stacks):
    a, b = stacks
    source, applied = Depth.load(a / "depth1"), Depth.load(b / "depth1")
    for name, tensor in source.sae.state_dict().items():
        assert torch.equal(tensor, applied.sae.state_dict()[name]), name
    cache = load_activations(b / "acts")
    assert torch.allclose(applied.codes.to_dense(), source.sae.encode(cache.acts), atol=1e-6)
    assert applied.acts_dir == b / "acts" and applied.parent is None
    metrics = applied.metrics
    assert metrics["applied_from"] == str(a / "depth1") and metrics["status"] == "trained"
    assert metrics["n_examples"] == len(cache.acts) and metrics["fvu"] >= 0


def test_applied_meta_depths_route_this_probes_codes(stacks):
    a, b = stacks
    parent = Depth.load(b / "depth1")
    act2, source = Depth.load(b / "act2"), Depth.load(a / "act2")
    assert torch.allclose(act2.codes.to_dense(), source.sae.encode(parent.codes.to_dense()), atol=1e-6)
    assert act2.parent.path == b / "depth1" and act2.acts_dir == b / "acts"
    dec2 = Depth.load(b / "dec2")
    assert torch.equal(dec2.meta_codes, Depth.load(a / "dec2").meta_codes)
    assert torch.allclose(dec2.codes.to_dense(), parent.codes.to_dense() @ dec2.meta_codes, atol=1e-5)
    assert dec2.lineage is not None and dec2.metrics["parent_width"] == 24


def test_a_stopped_source_depth_stops_the_applied_one(stacks):
    a, b = stacks
    assert read_json(a / "dec3" / "metrics.json")["status"] == "stopped"  # width 1 < min 4
    stopped = read_json(b / "dec3" / "metrics.json")
    assert stopped["status"] == "stopped" and stopped["stop_reason"].startswith("applied stack: width")
    assert stopped["acts_dir"] == str(b / "acts")  # so the analysis can say what the probe was


def test_applied_depths_analyse_and_say_the_probe_is_embedded(stacks):
    _, b = stacks
    summary = analyse(b / "act2", b / "analysis_act2", feature_viz=False)
    assert summary["dataset_is_real"] is False and summary["n_images"] == 60
    stopped = analyse(b / "dec3", b / "analysis_dec3")
    assert stopped["status"] == "stopped" and stopped["dataset_is_real"] is False


def test_cli_apply(stacks, tmp_path):
    a, b = stacks
    main(
        ["train-sae", "--acts", str(b / "acts"), "--apply", str(a / "depth1"), "--out", str(tmp_path / "d1")]
    )
    main(
        [
            "train-sae",
            "--parent",
            str(tmp_path / "d1"),
            "--mode",
            "activations",
            "--depth",
            "2",
            "--apply",
            str(a / "act2"),
            "--out",
            str(tmp_path / "d2"),
        ]
    )
    assert torch.equal(Depth.load(tmp_path / "d2").codes.to_dense(), Depth.load(b / "act2").codes.to_dense())
    with pytest.raises(MetasaeError, match="not a trained depth-1 folder"):
        stages.apply_base(b / "acts", a / "act2", tmp_path / "bad")


def _config(stack_from: str | None) -> dict:
    config = {
        "results": "results",
        "classifiers": {
            "m": {"model": "mlp", "train": "mnist:train", "test": "mnist:test", "layers": ["fc1"]},
        },
        "probes": {"fashion": "fashion_mnist:test", "mnist": "mnist:test"},
        "seeds": [0, 1],
        "sae": {"s": BASE},
        "meta": {"max_depth": 2, "modes": {"activations": ACTIVATIONS}},
    }
    config["classifiers"]["m"]["probes"] = ["fashion", "mnist"]
    if stack_from:
        config["meta"]["stack_from"] = stack_from
    return config


def test_stack_from_in_distribution_names_the_classifiers_own_probe():
    config = _config("in_distribution")
    study.validate_schema(config)
    study.validate_semantics(config)
    runs = {run.probe: run for run in study.runs(config) if run.seed == 1}
    assert study.stack_source(config, runs["fashion"]) == runs["mnist"]
    assert study.stack_source(config, runs["mnist"]) is None
    assert study.stack_source(_config("own"), runs["fashion"]) is None
    assert study.stack_source(_config(None), runs["fashion"]) is None


def test_stack_from_in_distribution_needs_a_probe_of_the_training_dataset():
    config = _config("in_distribution")
    config["classifiers"]["m"]["probes"] = ["fashion"]
    with pytest.raises(MetasaeError, match="meta.stack_from: in_distribution: classifier m has no probe"):
        study.validate_semantics(config)


def test_a_classifier_may_run_its_own_seeds():
    config = _config(None)
    config["classifiers"]["m"]["seeds"] = [4]
    study.validate_schema(config)
    assert {run.seed for run in study.runs(config)} == {4}
