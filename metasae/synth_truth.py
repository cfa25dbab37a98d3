"""The planted truth beside a synth-acts folder (its file's name and its loader) and the names of the stacks
built from it, for the stages that score a stack against it (`score-synth`, `synth-oracle`) without
importing the stage that writes it."""

from __future__ import annotations

from pathlib import Path

from metasae.errors import MetasaeError
from metasae.io import load_tensors, read_json
from metasae.layout import ACTS_FILE, MANIFEST_FILE
from metasae.synth_tree import SynthTree, TreeSpec

TRUTH_FILE = "truth.safetensors"
SYNTH_DATASET = "synth_tree"
STACK_KINDS = ("oracle", "shuffled")  # the stacks built from the truth itself (`synth-oracle`), not trained


def load_truth(acts_dir: str | Path) -> SynthTree:
    """The planted tree of a synth-acts folder (truth checked against the sha256 its manifest records)."""
    acts_dir = Path(acts_dir)
    manifest = read_json(acts_dir / MANIFEST_FILE)
    if manifest.get("dataset") != SYNTH_DATASET:
        raise MetasaeError(f"{acts_dir}: not a synth-acts folder (dataset={manifest.get('dataset')!r})")
    spec_args = dict(manifest["tree_spec"])
    spec = TreeSpec(**spec_args)
    truth = load_tensors(
        acts_dir / TRUTH_FILE, checksums={TRUTH_FILE: manifest["truth_sha256"]}, producer="synth-acts"
    )
    acts = load_tensors(acts_dir / ACTS_FILE)["acts"]
    levels = range(1, spec.depth + 1)
    return SynthTree(
        spec=spec,
        acts=acts,
        features=[truth[f"features_{lvl}"] for lvl in levels],
        codes=[truth[f"codes_{lvl}"] for lvl in levels],
        labels=truth["labels"],
    )
