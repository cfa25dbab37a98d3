"""TopK SAE (Gao et al. 2024) with the AuxK dead-latent loss, trained through the sparse ops."""

from __future__ import annotations

import torch
from torch import Tensor

from metasae.sae.base import SAE, LossParts
from metasae.sae.sparse import RowTopK, Selection, Selector, row_topk, sparse_decode, sparse_encode
from metasae.sae.sparse_rows import SparseRows

# AuxK runs densely over the dead columns while there are at most this many per AuxK latent: the cross-over
# measured on the CPU (README, Speed; benchmarks test_topk_step_with_auxk), beyond which the pair path wins.
DENSE_AUX_MAX_DEAD_PER_K = 14


class TopKSAE(SAE):
    needs_k = True
    sparse_input = True
    saelens_architecture = "topk"
    # [width], set by the trainer while it balances firing (TrainConfig.balance_fraction); encode ignores it
    rank_bias: Tensor | None = None

    def selector(self) -> Selector:
        return RowTopK(self.cfg.k, rank_bias=self.rank_bias)

    def encode(self, x: Tensor) -> Tensor:
        pre = self.pre_acts(x)
        vals, idx = row_topk(pre, self.cfg.k)
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

    def _aux_recon(self, sel: Selection, cols: Tensor) -> Tensor:
        """The AuxK reconstruction from its pairs: while every row takes every dead column (k_aux >= dead),
        the pairs are a dense [B, dead] code and one matmul decodes them; else an embedding bag."""
        if sel.per_row != len(cols):
            return sparse_decode(sel, self.W_dec)
        position = torch.empty(self.cfg.width, dtype=torch.long, device=cols.device)
        position[cols] = torch.arange(len(cols), device=cols.device)
        shape = (sel.batch, len(cols))
        codes = sel.vals.new_zeros(shape).scatter(1, position[sel.idx].view(shape), sel.vals.view(shape))
        return codes @ self.W_dec[cols]

    def loss(
        self, x: Tensor | SparseRows, dead: Tensor | None = None, sparsity_scale: float = 1.0
    ) -> LossParts:
        """`x` may be sparse rows (a parent's codes): the encoder then multiplies their non-zeros only, and
        AuxK takes its dead columns from the same product."""
        cfg = self.cfg
        b_dec = self.b_dec if cfg.pre_encoder_bias else None
        sparse_input = isinstance(x, SparseRows)
        use_aux = dead is not None and cfg.aux_coeff > 0 and cfg.k_aux_resolved > 0 and bool(dead.any())
        cols = dead.nonzero(as_tuple=True)[0] if use_aux else None
        sparse_aux = use_aux and (sparse_input or len(cols) > DENSE_AUX_MAX_DEAD_PER_K * cfg.k_aux_resolved)
        selectors = [self.selector()] + ([RowTopK(cfg.k_aux_resolved, cols)] if sparse_aux else [])
        sels = sparse_encode(x, b_dec, self.W_enc, self.b_enc, selectors)
        x = x.dense() if sparse_input else x
        main = sels[0]
        x_hat = sparse_decode(main, self.W_dec) + self.b_dec
        mse = self.sum_dims_mse(x, x_hat)
        recon = self.reconstruction_loss(x, main, mse)
        aux = torch.zeros((), device=x.device)
        if use_aux:
            # Dead latents learn to explain what the live ones missed (target detached, as in Gao et al.).
            aux_recon = self._aux_recon(sels[1], cols) if sparse_aux else self._dense_aux_recon(x, cols)
            aux = cfg.aux_coeff * self.sum_dims_mse((x - x_hat).detach(), aux_recon)
        if self.training:
            self.after_selection(main)
        return LossParts.from_selection(
            recon + aux, mse, torch.zeros((), device=x.device), aux, main, cfg.width, x_hat
        )
