"""Hand-made depth folders for tests, written by the library's own writers (so checksums are recorded)."""

from __future__ import annotations

from pathlib import Path

import torch

from metasae.activations import load_activations
from metasae.codes import save_codes, write_lineage
from metasae.frozen_codes import FrozenEncoder, write_frozen_codes
from metasae.io import save_tensors, write_json
from metasae.layout import (
    ACTS_FILE,
    CODES_FILE,
    LINEAGE_FILE,
    MANIFEST_FILE,
    META_CODES_FILE,
    METRICS_FILE,
    SHA256_KEY,
)
from metasae.sae import save_sae
from metasae.stack import Depth


def write_cache(path: Path, acts: torch.Tensor, labels: torch.Tensor | None = None) -> Path:
    """A minimal activation cache (acts, labels, index + the manifest keys the loader checks)."""
    n = len(acts)
    labels = torch.zeros(n, dtype=torch.int64) if labels is None else labels
    tensors = {"acts": acts.float(), "labels": labels, "index": torch.arange(n)}
    digest = save_tensors(path / ACTS_FILE, tensors)
    manifest = {"n": n, "dim": acts.shape[1], "sha256": digest, "label_names": [str(c) for c in range(10)]}
    write_json(path / MANIFEST_FILE, manifest)
    return path


def write_depth(
    path: Path,
    sae: torch.nn.Module,
    codes: torch.Tensor,
    depth: int,
    mode: str,
    acts_dir: Path,
    parent: Path | None = None,
    meta_codes: torch.Tensor | None = None,
    metrics: dict | None = None,
    frozen: FrozenEncoder | None = None,
) -> Path:
    """A trained depth folder: SAE + cfg, codes, (meta-codes + lineage from depth 2; a decoder-mode depth's
    frozen-dictionary encoder, default the untrained one keeping every latent, and its codes), metrics last.
    """
    cfg = {"depth": depth, "mode": mode, "acts_dir": str(acts_dir), "parent": str(parent) if parent else None}
    save_sae(sae, path, extra_cfg={**cfg, "seed": 0})
    checksums = {CODES_FILE: save_codes(path / CODES_FILE, codes)}
    if meta_codes is not None:
        checksums[META_CODES_FILE] = save_codes(path / META_CODES_FILE, meta_codes)
        checksums[LINEAGE_FILE] = write_lineage(path / LINEAGE_FILE, meta_codes.to_sparse())
    if mode == "decoder" and depth >= 2:
        rows = sae.W_dec.detach()
        frozen = frozen or FrozenEncoder.initial(rows, torch.zeros(rows.shape[1]), len(rows))
        acts = load_activations(acts_dir).acts
        parent_codes = Depth.load(parent).image_codes
        report, files = write_frozen_codes(path, frozen, acts, parent_codes, meta_codes.to_sparse(), 0)
        checksums |= files
        metrics = {**report, **(metrics or {})}
    record = {"status": "trained", "stop_reason": None, **(metrics or {}), SHA256_KEY: checksums}
    write_json(path / METRICS_FILE, record)
    return path
