"""BatchTopK SAE (Bussmann et al. 2024): k*B latents over the whole batch while training, and a learned
global threshold at inference so that an example's code never depends on its batch-mates."""

from __future__ import annotations

import torch
from torch import Tensor

from metasae.sae.base import SAEConfig
from metasae.sae.sparse import BatchTopK, Selection, Selector
from metasae.sae.topk import TopKSAE


class BatchTopKSAE(TopKSAE):
    saelens_architecture = "jumprelu"  # inference is a JumpReLU with one shared threshold

    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(cfg, generator)
        # 0 = not yet learned (kept activations are always > 0).
        self.register_buffer("threshold", torch.zeros(()))

    def selector(self) -> Selector:
        return BatchTopK(self.cfg.k)

    def encode(self, x: Tensor) -> Tensor:
        pre = self.pre_acts(x)
        return pre.relu() * (pre > self.threshold)

    @torch.no_grad()
    def after_selection(self, sel: Selection) -> None:
        """EMA of the smallest kept activation (its first value taken as is); branch-free, so no GPU sync."""
        smallest = (
            torch.where(sel.vals > 0, sel.vals, torch.inf).amin()
            if sel.vals.numel()
            else torch.tensor(torch.inf)
        )
        m = self.cfg.threshold_momentum
        updated = torch.where(self.threshold > 0, m * self.threshold + (1 - m) * smallest, smallest)
        self.threshold.copy_(torch.where(torch.isfinite(smallest), updated, self.threshold))

    def _scale_thresholds(self, scale: float) -> None:
        self.threshold *= scale
