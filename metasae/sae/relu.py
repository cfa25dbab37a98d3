"""ReLU SAE with an L1 penalty: decoder-norm-weighted (April update) or the research log's summed form."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from metasae.sae.base import SAE, LossParts


class ReLUSAE(SAE):
    saelens_architecture = "standard"

    def encode(self, x: Tensor) -> Tensor:
        return self.pre_acts(x).relu()

    def loss(self, x: Tensor, dead: Tensor | None = None, sparsity_scale: float = 1.0) -> LossParts:
        z = self.encode(x)
        x_hat = self.decode(z)
        if self.cfg.l1_reduction == "sum":
            mse = F.mse_loss(x_hat, x)
            l1 = z.sum()
        else:
            mse = self.sum_dims_mse(x, x_hat)
            l1 = (z @ self.W_dec.norm(dim=1)).mean()  # a mat-vec: no [batch, d_sae] temporary
        sparsity = self.cfg.l1_coeff * sparsity_scale * l1
        return LossParts.penalised(mse, sparsity, z, x_hat)
