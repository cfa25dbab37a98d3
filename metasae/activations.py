"""An activation cache on disk (`cache-acts` writes it): one layer's activations over a whole dataset, one
row per image in dataset order with each image's stable index, verified against its manifest's sha256 on
every load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from metasae.errors import MetasaeError
from metasae.io import load_tensors, read_json, remembered_digest
from metasae.layout import ACTS_FILE, MANIFEST_FILE

RERUN = "rerun `metasae cache-acts`"  # what every other artefact's checksum error names: its producer
ROLES = ("eval", "fit")  # a cache's images: analysed (a probe's eval set), or trained on (its fit set)


@dataclasses.dataclass
class ActivationCache:
    acts: torch.Tensor  # float32 [N, dim]
    labels: torch.Tensor  # int64 [N]
    index: torch.Tensor  # int64 [N], position of each image in its dataset split
    manifest: dict


def load_activations(cache_dir: str | Path) -> ActivationCache:
    """Read a cache and verify it against its manifest; any mismatch is a one-line MetasaeError."""
    cache_dir = Path(cache_dir)
    manifest = read_json(cache_dir / MANIFEST_FILE)
    path = cache_dir / ACTS_FILE
    for key in ("n", "dim", "sha256"):
        if key not in manifest:
            raise MetasaeError(f"{cache_dir / MANIFEST_FILE}: missing key {key!r}; {RERUN}")
    if not path.is_file():
        raise MetasaeError(f"{path}: file not found; {RERUN}")
    if remembered_digest(path) != manifest["sha256"]:
        raise MetasaeError(
            f"{path}: sha256 does not match {MANIFEST_FILE} (corrupt or replaced file); {RERUN}"
        )
    tensors = load_tensors(path)
    acts, labels, index = tensors["acts"], tensors["labels"], tensors["index"]
    n, dim = manifest["n"], manifest["dim"]
    if tuple(acts.shape) != (n, dim) or len(labels) != n or len(index) != n:
        raise MetasaeError(
            f"{path}: shapes {list(acts.shape)}/{len(labels)}/{len(index)} do not match "
            f"manifest n={n}, dim={dim}"
        )
    if not torch.isfinite(acts).all():
        raise MetasaeError(f"{path}: contains NaN/inf activations")
    return ActivationCache(acts, labels, index, manifest)


def effective_rank(acts: torch.Tensor) -> float:
    """The participation ratio (sum λ)^2 / sum λ^2 of the activation covariance's eigenvalues λ: k for
    activations spread evenly over k directions, 1 for a line. A low rank caps how many latents an SAE can
    use (the stand-ins' fc1 is nearly low-rank). Computed as tr(C)^2 / |C|_F^2, in float64; 0 for constant
    activations."""
    x = acts.double()
    centred = x - x.mean(0)
    cov = centred.T @ centred / max(1, len(x))
    frobenius = float(cov.pow(2).sum())
    return float(torch.trace(cov) ** 2 / frobenius) if frobenius > 0 else 0.0
