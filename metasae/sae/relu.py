"""ReLU SAE with an L1 penalty: decoder-norm-weighted (April update) or the research log's summed form."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from metasae.sae.base import SAE, LossParts
from metasae.sae.sparse import Positive, TooDense, sparse_decode, sparse_encode

# A CPU step runs on the positive pairs alone (sparse ops, as TopK) while at most this share of the
# pre-activations is positive: the measured cross-over lies above it (README, Speed; benchmarks
# test_relu_step_with_sparse_codes). A trained ReLU SAE lives far below (L0 << width).
SPARSE_MAX_DENSITY = 0.05


class ReLUSAE(SAE):
    saelens_architecture = "standard"

    def encode(self, x: Tensor) -> Tensor:
        return self.pre_acts(x).relu()

    def loss(self, x: Tensor, dead: Tensor | None = None, sparsity_scale: float = 1.0) -> LossParts:
        """The same loss and gradients either way; a GPU always takes the dense ops (not yet measured)."""
        if x.device.type == "cpu":
            try:
                return self._sparse_loss(x, sparsity_scale)
            except TooDense:  # decided on the first dense chunk of this very batch, so a resumed run agrees
                pass
        z = self.encode(x)
        x_hat = self.decode(z)
        l1 = z.sum() if self.cfg.l1_reduction == "sum" else (z @ self.W_dec.norm(dim=1)).mean()  # a mat-vec
        sparsity = self.cfg.l1_coeff * sparsity_scale * l1
        return LossParts.penalised(self._mse(x, x_hat), sparsity, z, x_hat)

    def _sparse_loss(self, x: Tensor, sparsity_scale: float) -> LossParts:
        b_dec = self.b_dec if self.cfg.pre_encoder_bias else None
        sel = sparse_encode(x, b_dec, self.W_enc, self.b_enc, [Positive(SPARSE_MAX_DENSITY)])[0]
        x_hat = sparse_decode(sel, self.W_dec) + self.b_dec
        l1 = (
            sel.vals.sum()
            if self.cfg.l1_reduction == "sum"
            else (sel.vals @ self.W_dec.norm(dim=1)[sel.idx]) / len(x)
        )
        sparsity = self.cfg.l1_coeff * sparsity_scale * l1
        mse = self._mse(x, x_hat)
        return LossParts.from_selection(
            mse + sparsity, mse, sparsity, torch.zeros((), device=x.device), sel, self.cfg.width, x_hat
        )

    def _mse(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """The research log's mean over every element (l1_reduction sum), else the sum over dimensions."""
        return F.mse_loss(x_hat, x) if self.cfg.l1_reduction == "sum" else self.sum_dims_mse(x, x_hat)
