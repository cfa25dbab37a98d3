"""TopK SAE (Gao et al. 2024) with the AuxK dead-latent loss, trained through the sparse ops."""

from __future__ import annotations

import torch
from torch import Tensor

from metasae.sae.base import SAE, LossParts
from metasae.sae.sparse import RowTopK, Selection, Selector, sparse_decode, sparse_encode

# AuxK runs densely over the dead columns while there are at most this many per AuxK latent: the cross-over
# measured on the CPU (README, Speed; benchmarks test_topk_step_with_auxk), beyond which the pair path wins.
DENSE_AUX_MAX_DEAD_PER_K = 14


class TopKSAE(SAE):
    needs_k = True
    saelens_architecture = "topk"

    def selector(self) -> Selector:
        return RowTopK(self.cfg.k)

    def encode(self, x: Tensor) -> Tensor:
        pre = self.pre_acts(x)
        vals, idx = pre.topk(self.cfg.k, dim=1, sorted=False)
        return torch.zeros_like(pre).scatter_(1, idx, vals.relu())

    def _dense_aux_recon(self, x: Tensor, cols: Tensor) -> Tensor:
        """The AuxK reconstruction computed densely over the dead columns `cols`: while they are few, k_aux
        per row is a large share of them and two small matmuls beat sorting and gathering k_aux pairs per row
        (4x as many as the main codes have)."""
        x_c = x - self.b_dec if self.cfg.pre_encoder_bias else x
        pre = torch.addmm(self.b_enc[cols], x_c, self.W_enc[:, cols])
        vals, local = pre.topk(min(self.cfg.k_aux_resolved, len(cols)), dim=1, sorted=False)
        return torch.zeros_like(pre).scatter(1, local, vals.relu()) @ self.W_dec[cols]

    def after_selection(self, sel: Selection) -> None:
        """Hook for architectures that learn from the training selection (BatchTopK's threshold)."""

    def reconstruction_loss(self, x: Tensor, sel: Selection, full_mse: Tensor) -> Tensor:
        """The objective's reconstruction term, given the whole code's MSE: that MSE itself here; Matryoshka
        adds its prefixes' reconstructions."""
        return full_mse

    def loss(self, x: Tensor, dead: Tensor | None = None, sparsity_scale: float = 1.0) -> LossParts:
        cfg = self.cfg
        b_dec = self.b_dec if cfg.pre_encoder_bias else None
        use_aux = dead is not None and cfg.aux_coeff > 0 and cfg.k_aux_resolved > 0 and bool(dead.any())
        cols = dead.nonzero(as_tuple=True)[0] if use_aux else None
        sparse_aux = use_aux and len(cols) > DENSE_AUX_MAX_DEAD_PER_K * cfg.k_aux_resolved
        selectors = [self.selector()] + ([RowTopK(cfg.k_aux_resolved, cols)] if sparse_aux else [])
        sels = sparse_encode(x, b_dec, self.W_enc, self.b_enc, selectors)
        main = sels[0]
        x_hat = sparse_decode(main, self.W_dec) + self.b_dec
        mse = self.sum_dims_mse(x, x_hat)
        recon = self.reconstruction_loss(x, main, mse)
        aux = torch.zeros((), device=x.device)
        if use_aux:
            # Dead latents learn to explain what the live ones missed (target detached, as in Gao et al.).
            aux_recon = sparse_decode(sels[1], self.W_dec) if sparse_aux else self._dense_aux_recon(x, cols)
            aux = cfg.aux_coeff * self.sum_dims_mse((x - x_hat).detach(), aux_recon)
        if self.training:
            self.after_selection(main)
        return LossParts.from_selection(
            recon + aux, mse, torch.zeros((), device=x.device), aux, main, cfg.width, x_hat
        )
