"""Sparse SAE codes of the probe images, stored as COO in safetensors.

Codes are mostly zeros (L0 of tens out of thousands), so a depth folder stores only the non-zeros; the
analysis reads them back as a torch sparse tensor or densifies small slices.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from metasae.errors import MetasaeError
from metasae.io import atomic_path, load_tensors, save_tensors, sha256_file


def save_codes(path: str | Path, codes: torch.Tensor) -> str:
    """Write a dense or sparse [n_images, n_latents] code matrix as COO (indices, values, shape); returns the
    file's sha256 (the depth's metrics.json records it)."""
    sparse = (codes if codes.is_sparse else codes.to_sparse()).coalesce().cpu()
    return save_tensors(
        path,
        {
            "indices": sparse.indices().to(torch.int64),
            "values": sparse.values().to(torch.float32),
            "shape": torch.tensor(list(sparse.shape), dtype=torch.int64),
        },
    )


def load_codes(path: str | Path, checksums: dict | None = None, producer: str | None = None) -> torch.Tensor:
    """Read codes back as a coalesced sparse COO tensor [n_images, n_latents] (checked against `checksums`,
    the {file: sha256} recorded when they were written, when `producer` is given)."""
    t = load_tensors(path, checksums=checksums, producer=producer)
    try:
        indices, values, shape = t["indices"], t["values"], t["shape"].tolist()
    except KeyError as exc:
        raise MetasaeError(f"{path}: missing tensor {exc} (expected indices, values, shape)") from None
    if indices.shape[0] != 2 or indices.shape[1] != values.shape[0] or len(shape) != 2:
        raise MetasaeError(f"{path}: malformed sparse codes")
    if len(values) and ((indices[0] >= shape[0]).any() or (indices[1] >= shape[1]).any()):
        raise MetasaeError(f"{path}: code indices out of range for shape {shape}")
    return torch.sparse_coo_tensor(indices, values, shape, check_invariants=True).coalesce()


def write_lineage(path: Path, meta_codes: torch.Tensor) -> str:
    """One row per (parent latent, meta-latent) pair with a non-zero weight; sorted for stable bytes.
    Returns the file's sha256."""
    mc = meta_codes.coalesce()
    parent, meta = mc.indices()
    table = pd.DataFrame(
        {"parent_latent": parent.numpy(), "meta_latent": meta.numpy(), "weight": mc.values().numpy()}
    ).sort_values(["parent_latent", "meta_latent"])
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
        return sha256_file(tmp)
