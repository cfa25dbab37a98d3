"""Architecture name -> SAE class. Adding an architecture: a module with an `SAE` subclass + a line here."""

from __future__ import annotations

import torch

from metasae.sae.base import SAE, SAEConfig
from metasae.sae.batchtopk import BatchTopKSAE
from metasae.sae.jumprelu import JumpReLUSAE
from metasae.sae.matryoshka import MatryoshkaSAE
from metasae.sae.relu import ReLUSAE
from metasae.sae.topk import TopKSAE

ARCHITECTURES: dict[str, type[SAE]] = {
    "relu": ReLUSAE,
    "topk": TopKSAE,
    "batchtopk": BatchTopKSAE,
    "jumprelu": JumpReLUSAE,
    "matryoshka": MatryoshkaSAE,
}


def build_sae(cfg: SAEConfig, generator: torch.Generator | None = None) -> SAE:
    """A fresh SAE; pass a seeded generator (metasae.seeds.generator) for reproducible weights."""
    return ARCHITECTURES[cfg.architecture](cfg, generator)
