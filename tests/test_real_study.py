"""The real study: config/mnist.yaml passes the config door and plans (alone and under the log preset), and a
tiny config with `data_dir` set runs end to end on real MNIST slices from ../shared/data, its real probe
reported as real from the activation cache's manifest to the report's TL;DR."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake_plan import planned_commands

from metasae import study
from metasae.cli import build_parser
from metasae.io import read_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MNIST = ROOT / "config" / "mnist.yaml"
LOG = ROOT / "config" / "presets" / "log.yaml"


def merged(*paths: Path) -> dict:
    """Configs merged as Snakemake merges --configfile (later ones update earlier ones, recursively)."""
    from snakemake.utils import update_config

    config: dict = {}
    for path in paths:
        update_config(config, yaml.safe_load(path.read_text()))
    return study.drop_nulls(config)


@pytest.mark.parametrize("presets", [(), (LOG,)], ids=["mnist", "mnist+log"])
def test_mnist_config_passes_the_door(presets):
    config = merged(MNIST, *presets)
    study.validate_schema(config)
    study.validate_semantics(config, study.known_datasets())
    mnist = config["classifiers"]["mlp_mnist"]
    assert (mnist["train"], mnist["test"]) == ("mnist:train", "mnist:test") and mnist["model"] == "mlp"
    assert [study.probe_ref(config, p) for p in mnist["probes"]] == [
        "mnist:test",
        "fashion_mnist:test",
        "glyphs:test",
    ]
    assert [study.fit_ref(config, p) for p in mnist["probes"]] == [  # each stack fits on held-out images
        "mnist:train",
        "fashion_mnist:train",
        "glyphs:train",
    ]
    assert config["data_dir"] == "../shared/data"
    assert any(sae["width"] == 2304 for sae in config["sae"].values())
    if presets:  # the log's setup: one classifier, its MNIST stack applied to the others, one seed a run
        assert list(config["classifiers"]) == ["mlp_mnist"] and list(config["meta"]["modes"]) == [
            "activations"
        ]
        assert config["meta"]["stack_from"] == "in_distribution" and config["preset"] == "log"
        assert config["sae"]["log_relu"]["seed_per_depth"] is False
    else:
        fashion = config["classifiers"]["mlp_fashion"]
        assert fashion["train"] == "fashion_mnist:train" and "mnist" in fashion["probes"]
        assert len(config["seeds"]) >= 5 and set(config["meta"]["modes"]) == {"decoder", "activations"}
        assert config["compare_with"] == merged(MNIST, LOG)["results"]


@pytest.mark.parametrize("presets", [(), (LOG,)], ids=["mnist", "mnist+log"])
def test_mnist_config_plans_with_snakemake(presets, tmp_path):
    files = [str(p.relative_to(ROOT)) for p in (MNIST, *presets)]
    commands = planned_commands(files, tmp_path)
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)
    trains = [" ".join(a) for a in commands if "train-sae" in a]
    applied = [t for t in trains if "--apply" in t]
    if presets:  # every depth of the fashion_mnist and glyphs stacks is the mnist stack's, applied
        assert applied and all("/mnist/" not in t.split("--out")[1] for t in applied)
        assert all("/mnist/fc1/log_relu" in t.split("--apply")[1] for t in applied)
        assert len(applied) == 2 * len([t for t in trains if "--apply" not in t])
    else:
        assert not applied and any('"width":2304' in t for t in trains)


TINY = {
    "data_dir": str(DATA),
    "seeds": [0],
    "classifiers": {
        "mlp": {
            "model": "mlp",
            "train": "mnist:train[:3000]",
            "test": "mnist:test[:500]",
            "epochs": 1,
            "layers": ["fc1"],
            "probes": ["mnist", "glyphs"],
        }
    },
    "probes": {
        "mnist": {"dataset": "mnist:test[500:1500]", "fit": "mnist:train[:3000]"},
        "glyphs": "glyphs:test",
    },
    "sae": {
        "topk": {"architecture": "topk", "width": 64, "k": 8, "lr": 0.002, "batch_size": 128, "epochs": 5}
    },
    "meta": {
        "max_depth": 3,
        "stack_from": "in_distribution",  # glyphs is encoded through the MNIST stack, as the log did
        "stop": {"min_alive": 2, "max_fvu": 2.0},
        "modes": {
            "activations": {
                "architecture": "topk",
                "k": 4,
                "width": {"factor": 0.5, "min": 4},
                "batch_size": 128,
                "epochs": 5,
                "seed_per_depth": False,
            }
        },
    },
    "analysis": {"top_n": 5, "feature_viz": False},
}


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.skipif(not (DATA / "MNIST").is_dir(), reason="../shared/data/MNIST is absent")
def test_a_real_data_study_runs_end_to_end_and_is_reported_as_real(tmp_path):
    results = tmp_path / "results"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "results": str(results)}))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    acts = results / "acts" / "mlp" / "seed0"
    assert read_json(acts / "mnist" / "fc1" / "manifest.json")["dataset_is_real"] is True
    assert read_json(acts / "glyphs" / "fc1" / "manifest.json")["dataset_is_real"] is False
    depths = pd.read_csv(results / "summary" / "depths.csv")
    assert depths.loc[depths["dataset"] == "mnist", "is_real"].all()  # every depth, a stopped one too
    assert not depths.loc[depths["dataset"] == "glyphs", "is_real"].any()
    applied = read_json(
        results / "sae" / "mlp" / "seed0" / "glyphs" / "fc1" / "topk" / "depth1" / "metrics.json"
    )
    assert applied["applied_from"].endswith("mlp/seed0/mnist/fc1/topk/depth1")
    study_json = read_json(results / "summary" / "study.json")
    assert {d["name"]: d["is_real"] for d in study_json["datasets"]} == {"glyphs": False, "mnist": True}
    tldr = (results / "report" / "index.md").read_text().split("## TL;DR", 1)[1].split("##", 1)[0]
    assert "real data (mnist)" in tldr and "no real dataset was run" not in tldr
    # a study to compare with (compare_with) is the report's business alone: nothing else reruns
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--configfile",
            str(config),
            "--config",
            "compare_with=elsewhere",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    planned = {line.split()[1].rstrip(":") for line in again.stdout.splitlines() if line.startswith("rule ")}
    assert planned - {"all"} == {"report"}, planned  # `all` is the target rule, planned whenever anything is
