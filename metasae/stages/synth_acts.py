"""Stage `synth-acts`: planted feature hierarchies (metasae.synth_tree) written as an activation cache.

The folder is the one `cache-acts` writes (acts.safetensors with acts/labels/index, manifest.json), so the
SAE stack trains on it unchanged; beside it, truth.safetensors holds the truth's directions and node codes of
every tree level (the multi-label truth) and the first active tree's path, for `score-synth`. Labels of the
cache are that path's leaf (-1 = no tree active): one label where several trees may be active.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from metasae.activations import ActivationCache
from metasae.errors import MetasaeError
from metasae.io import provenance, save_tensors, stage_output, write_json
from metasae.layout import ACTS_FILE, MANIFEST_FILE
from metasae.synth_tree import TreeSpec, generate
from metasae.synth_truth import SYNTH_DATASET, TRUTH_FILE
from metasae.tensor_stream import stream_tensors

SYNTH_LAYER = "synth"
SPEC_DEFAULTS = {
    "regime": "leaf",
    "n_trees": 8,
    "branching": 3,
    "d": 64,
    "n_samples": 4000,
    "p_active": 0.25,
    "magnitude": [0.5, 2.0],
    "noise": 0.01,
    "child_parent_mix": 0.0,
}


def tree_spec(params: dict, seed: int) -> TreeSpec:
    """A TreeSpec from a config entry (defaults filled in). Its `data_seed` draws the data, so every run seed
    of the study trains on one planted tree and seeds vary only the SAEs; without it the run seed does (each
    seed then plants its own tree)."""
    unknown = set(params) - set(SPEC_DEFAULTS) - {"depth", "data_seed"}
    if unknown:
        allowed = ", ".join(["depth", "data_seed", *SPEC_DEFAULTS])
        raise MetasaeError(f"synth tree: unknown key(s) {sorted(unknown)}; allowed: {allowed}")
    if "depth" not in params:
        raise MetasaeError("synth tree: missing key 'depth'")
    entry = {k: v for k, v in params.items() if k != "data_seed"}
    return TreeSpec(**{**SPEC_DEFAULTS, **entry, "seed": params.get("data_seed", seed)})


@stage_output(MANIFEST_FILE)
def synth_activations(spec: TreeSpec, out_dir: str | Path) -> ActivationCache:
    tree = generate(spec)
    out_dir = Path(out_dir)
    n, d = tree.acts.shape
    labels = tree.level_labels(spec.depth)
    index = torch.arange(n, dtype=torch.int64)
    layout = {"labels": (torch.int64, (n,)), "index": (torch.int64, (n,)), "acts": (torch.float32, (n, d))}
    with stream_tensors(out_dir / ACTS_FILE, layout) as stream:
        stream.write("labels", labels)
        stream.write("index", index)
        stream.write("acts", tree.acts)
    truth = {f"features_{lvl}": f.float() for lvl, f in enumerate(tree.features, start=1)}
    truth |= {f"codes_{lvl}": c.float() for lvl, c in enumerate(tree.codes, start=1)}
    truth["labels"] = tree.labels
    truth_sha = save_tensors(out_dir / TRUTH_FILE, truth)
    spec_dict = dataclasses.asdict(spec)
    spec_dict["magnitude"] = list(spec.magnitude)
    manifest = {
        "n": n,
        "dim": d,
        "dtype": "float32",
        "sha256": stream.sha256,
        "source_model": None,
        "model": None,
        "model_train_dataset": None,
        "dataset": SYNTH_DATASET,
        "dataset_is_real": False,
        "dataset_description": (
            f"{spec.n_trees} planted trees of depth {spec.depth}, branching {spec.branching}, in {d} dims"
            f" ({spec.regime} regime)"
        ),
        "label_names": [f"leaf{j}" for j in range(spec.n_features(spec.depth))],
        "level_label_names": {
            str(lvl): [f"l{lvl}_{j}" for j in range(spec.n_features(lvl))] for lvl in range(1, spec.depth + 1)
        },
        "layer": SYNTH_LAYER,
        "tree_spec": spec_dict,
        "truth_file": TRUTH_FILE,
        "truth_sha256": truth_sha,
        "provenance": provenance({"tree_spec": spec_dict}, spec.seed),
    }
    write_json(out_dir / MANIFEST_FILE, manifest)
    return ActivationCache(tree.acts, labels, index, manifest)
