"""Hand-made depth folders for tests, written by the library's own writers (so checksums are recorded)."""

from __future__ import annotations

from pathlib import Path

import torch

from metasae.codes import save_codes, write_lineage
from metasae.io import write_json
from metasae.layout import CODES_FILE, LINEAGE_FILE, META_CODES_FILE, METRICS_FILE, SHA256_KEY
from metasae.sae import save_sae


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
) -> Path:
    """A trained depth folder: SAE + cfg, codes, (meta-codes + lineage from depth 2), metrics last."""
    cfg = {"depth": depth, "mode": mode, "acts_dir": str(acts_dir), "parent": str(parent) if parent else None}
    save_sae(sae, path, extra_cfg={**cfg, "seed": 0})
    checksums = {CODES_FILE: save_codes(path / CODES_FILE, codes)}
    if meta_codes is not None:
        checksums[META_CODES_FILE] = save_codes(path / META_CODES_FILE, meta_codes)
        checksums[LINEAGE_FILE] = write_lineage(path / LINEAGE_FILE, meta_codes.to_sparse())
    record = {"status": "trained", "stop_reason": None, **(metrics or {}), SHA256_KEY: checksums}
    write_json(path / METRICS_FILE, record)
    return path
