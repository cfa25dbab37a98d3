"""TopK SAE (Gao et al. 2024) with the AuxK dead-latent loss, trained through the sparse ops."""

from __future__ import annotations

import torch
from torch import Tensor

from metasae.sae.base import SAE, LossParts
from metasae.sae.sparse import RowTopK, Selection, Selector, sparse_decode, sparse_encode


class TopKSAE(SAE):
    needs_k = True
    saelens_architecture = "topk"

    def selector(self) -> Selector:
        return RowTopK(self.cfg.k)

    def encode(self, x: Tensor) -> Tensor:
        pre = self.pre_acts(x)
        vals, idx = pre.topk(self.cfg.k, dim=1, sorted=False)
        return torch.zeros_like(pre).scatter_(1, idx, vals.relu())

    def after_selection(self, sel: Selection) -> None:
        """Hook for architectures that learn from the training selection (BatchTopK's threshold)."""

    def loss(self, x: Tensor, dead: Tensor | None = None, sparsity_scale: float = 1.0) -> LossParts:
        cfg = self.cfg
        k_aux = cfg.k_aux_resolved
        use_aux = dead is not None and cfg.aux_coeff > 0 and k_aux > 0 and bool(dead.any())
        selectors = [self.selector()] + ([RowTopK(k_aux, dead.nonzero(as_tuple=True)[0])] if use_aux else [])
        b_dec = self.b_dec if cfg.pre_encoder_bias else None
        sels = sparse_encode(x, b_dec, self.W_enc, self.b_enc, selectors)
        main = sels[0]
        x_hat = sparse_decode(main, self.W_dec) + self.b_dec
        mse = self.sum_dims_mse(x, x_hat)
        aux = torch.zeros((), device=x.device)
        if use_aux:
            # Dead latents learn to explain what the live ones missed (target detached, as in Gao et al.).
            aux = cfg.aux_coeff * self.sum_dims_mse((x - x_hat).detach(), sparse_decode(sels[1], self.W_dec))
        live = main.vals > 0
        if self.training:
            self.after_selection(main)
        # index_add, not fired[idx[live]] = True: a boolean mask makes a GPU wait for the host
        fired = torch.zeros(cfg.d_sae, device=x.device).index_add_(0, main.idx, live.float()) > 0
        return LossParts(total=mse + aux, mse=mse.detach(), sparsity=torch.zeros((), device=x.device),
                         aux=aux.detach(), l0=live.sum() / len(x), fired=fired, x_hat=x_hat.detach())
