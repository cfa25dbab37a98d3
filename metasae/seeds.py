"""Seeds derived from names, so every stage and depth gets its own stream and none is reused by accident."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from (run seed, stage, depth, ...): the same parts give the same seed
    everywhere."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    """A CPU torch.Generator seeded from `parts`; pass it explicitly instead of touching the global RNG."""
    return torch.Generator().manual_seed(derive_seed(*parts))
