"""Matryoshka SAE (Bussmann et al. 2025; Nabeshima 2024): one BatchTopK dictionary whose first m_1 latents
must reconstruct the input alone, its first m_2 > m_1 too, ..., up to the whole width. Early latents are
then pushed towards coarse, general directions that later ones refine, instead of being absorbed by them.

Selection, threshold, AuxK and inference are BatchTopK's; only the reconstruction term differs: the mean over
the prefixes (the whole dictionary last) of each prefix's sum_dims MSE, where a prefix's reconstruction keeps
the batch's selected pairs whose latent lies inside it. The logged `mse` stays the whole dictionary's.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from metasae.sae.base import SAEConfig
from metasae.sae.batchtopk import BatchTopKSAE
from metasae.sae.sparse import Selection, sparse_decode


def default_prefixes(width: int) -> list[int]:
    """width/8, width/4, width/2 (those >= 1): three coarser levels below the whole dictionary."""
    return sorted({width >> shift for shift in (3, 2, 1)} - {0})


class MatryoshkaSAE(BatchTopKSAE):
    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(cfg, generator)
        self.prefixes = default_prefixes(cfg.width) if cfg.prefixes is None else list(cfg.prefixes)

    def prefix_reconstruction(self, sel: Selection, m: int) -> Tensor:
        """The reconstruction by the first m latents: the other pairs' values zeroed (a mask, not a filter,
        so the pairs keep the row and latent grouping the sparse ops were given)."""
        inside = dataclasses.replace(sel, vals=sel.vals * (sel.idx < m))
        return sparse_decode(inside, self.W_dec) + self.b_dec

    def reconstruction_loss(self, x: Tensor, sel: Selection, full_mse: Tensor) -> Tensor:
        losses = [self.sum_dims_mse(x, self.prefix_reconstruction(sel, m)) for m in self.prefixes]
        return torch.stack([*losses, full_mse]).mean()
