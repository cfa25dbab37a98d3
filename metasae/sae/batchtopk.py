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
        kept = sel.vals[sel.vals > 0]
        if kept.numel() == 0:
            return
        smallest = kept.min()
        m = self.cfg.threshold_momentum
        self.threshold.copy_(smallest if self.threshold <= 0 else m * self.threshold + (1 - m) * smallest)

    def _scale_thresholds(self, scale: float) -> None:
        self.threshold *= scale
