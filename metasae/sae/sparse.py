"""Sparse encode/decode for selection SAEs (TopK, BatchTopK): no dense batch x d_sae gradients.

A selection SAE keeps only a few latents per example, so after the one unavoidable encoder matmul every
other product touches just the selected (row, latent) pairs: decoding is an `embedding_bag` over decoder rows
and the encoder's backward scatters per-latent sums (idea from EleutherAI/sparsify's fused encoder).
Pairs are kept row-major (`rows` ascending) with `offsets[b]` = first pair of row b, which is exactly what
`F.embedding_bag` takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Selection:
    """Selected (row, latent) pairs of a batch, row-major, with their ReLU'd pre-activations."""

    rows: Tensor  # int64 [nnz], ascending
    idx: Tensor  # int64 [nnz], latent of each pair
    vals: Tensor  # [nnz], differentiable
    batch: int

    @property
    def offsets(self) -> Tensor:
        counts = torch.bincount(self.rows, minlength=self.batch)
        return counts.cumsum(0) - counts

    def dense(self, d_sae: int) -> Tensor:
        out = self.vals.new_zeros(self.batch, d_sae)
        return out.index_put_((self.rows, self.idx), self.vals)


# A selector maps pre-activations [B, d_sae] to (rows, idx) of the pairs to keep, row-major.
Selector = Callable[[Tensor], tuple[Tensor, Tensor]]


def select_topk(k: int) -> Selector:
    def select(pre: Tensor) -> tuple[Tensor, Tensor]:
        idx = pre.topk(min(k, pre.shape[1]), dim=1, sorted=False).indices
        rows = torch.arange(pre.shape[0], device=pre.device).repeat_interleave(idx.shape[1])
        return rows, idx.reshape(-1)

    return select


def select_batch_topk(k: int) -> Selector:
    """The k*B largest positive pre-activations of the whole batch (BatchTopK).

    Exact, and avoids a flat top-(k*B) over B*d_sae values: take each row's top `width` candidates, find
    the batch threshold among them, and widen only if some row had all its candidates above it (only then
    could a row hold a winner outside its candidates).
    """

    def select(pre: Tensor) -> tuple[Tensor, Tensor]:
        batch, d_sae = pre.shape
        n_keep = min(k * batch, batch * d_sae)
        width = min(d_sae, 4 * k)
        while True:
            cand = pre.topk(width, dim=1, sorted=True).values
            tau = cand.reshape(-1).topk(n_keep, sorted=False).values.min()
            if width == d_sae or not bool((cand[:, -1] >= tau).any()):
                break
            width = min(d_sae, 2 * width)
        tau = tau.clamp_min(0.0)
        mask = pre > tau if tau == 0 else pre >= tau
        rows, idx = mask.nonzero(as_tuple=True)
        return rows, idx

    return select


def select_dead_topk(k_aux: int, dead: Tensor) -> Selector:
    """Per-row top k_aux among dead latents only (the AuxK loss's codes)."""
    dead_idx = dead.nonzero(as_tuple=True)[0]

    def select(pre: Tensor) -> tuple[Tensor, Tensor]:
        kk = min(k_aux, dead_idx.numel())
        local = pre[:, dead_idx].topk(kk, dim=1, sorted=False).indices
        rows = torch.arange(pre.shape[0], device=pre.device).repeat_interleave(kk)
        return rows, dead_idx[local.reshape(-1)]

    return select


def _per_latent_sum(idx: Tensor, rows: Tensor, weights: Tensor, source: Tensor, d_sae: int) -> Tensor:
    """out[j] = sum over pairs (r, j) of weights * source[r]  -> [d_sae, source.shape[1]], without an
    [nnz, d] intermediate: the pairs are regrouped by latent and summed as embedding bags."""
    order = torch.argsort(idx)
    counts = torch.bincount(idx, minlength=d_sae)
    return F.embedding_bag(rows[order], source, counts.cumsum(0) - counts,
                           per_sample_weights=weights[order], mode="sum")


class _SparseEncode(torch.autograd.Function):
    """pre = (x - b_dec) @ W_enc + b_enc; returns ReLU(pre) at the selected pairs of each selector."""

    @staticmethod
    def forward(ctx, x, b_dec, W_enc, b_enc, selectors):
        x_c = x - b_dec if b_dec is not None else x
        pre = torch.addmm(b_enc, x_c, W_enc)
        outs: list[Tensor] = []
        for select in selectors:
            rows, idx = select(pre)
            outs += [rows, idx, pre[rows, idx].relu()]
        ctx.save_for_backward(x_c, W_enc, *outs)
        ctx.has_b_dec = b_dec is not None
        ctx.mark_non_differentiable(*outs[0::3], *outs[1::3])
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        x_c, W_enc, *outs = ctx.saved_tensors
        rows = torch.cat(outs[0::3])
        idx = torch.cat(outs[1::3])
        vals = torch.cat(outs[2::3])
        g = torch.cat([gr if gr is not None else torch.zeros_like(v)
                       for gr, v in zip(grads[2::3], outs[2::3], strict=True)])
        g = g * (vals > 0)
        d_sae = W_enc.shape[1]
        grad_b_enc = torch.zeros(d_sae, dtype=g.dtype, device=g.device).index_add_(0, idx, g)
        grad_W_enc = _per_latent_sum(idx, rows, g, x_c, d_sae).t() if ctx.needs_input_grad[2] else None
        grad_x = grad_b_dec = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x_c).index_add_(0, rows, W_enc.t()[idx] * g[:, None])
        if ctx.has_b_dec and ctx.needs_input_grad[1]:
            # sum over the batch of -dL/dx_c, computed from per-latent sums: never per row.
            grad_b_dec = -(W_enc @ grad_b_enc)
        return grad_x, grad_b_dec, grad_W_enc, grad_b_enc, None


def sparse_encode(x: Tensor, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor,
                  selectors: list[Selector]) -> list[Selection]:
    """One encoder matmul, one Selection per selector (e.g. the main codes and the AuxK codes)."""
    outs = _SparseEncode.apply(x, b_dec, W_enc, b_enc, tuple(selectors))
    return [Selection(outs[i], outs[i + 1], outs[i + 2], x.shape[0]) for i in range(0, len(outs), 3)]


class _SparseDecode(torch.autograd.Function):
    """x_hat[b] = sum over b's pairs of vals * W_dec[idx]."""

    @staticmethod
    def forward(ctx, rows, idx, vals, offsets, W_dec):
        ctx.save_for_backward(rows, idx, vals, W_dec)
        return F.embedding_bag(idx, W_dec, offsets, per_sample_weights=vals, mode="sum")

    @staticmethod
    def backward(ctx, grad_out):
        rows, idx, vals, W_dec = ctx.saved_tensors
        grad_vals = grad_W_dec = None
        if ctx.needs_input_grad[2]:
            batch = grad_out.shape[0]
            if idx.numel() % batch == 0 and bool((rows == torch.arange(batch, device=rows.device)
                                                  .repeat_interleave(idx.numel() // batch)).all()):
                # every row has the same number of pairs (TopK): one batched matvec, no gather of grad rows
                gathered = W_dec[idx].view(batch, -1, W_dec.shape[1])
                grad_vals = torch.bmm(gathered, grad_out.unsqueeze(2)).reshape(-1)
            else:
                grad_vals = (W_dec[idx] * grad_out[rows]).sum(1)
        if ctx.needs_input_grad[4]:
            grad_W_dec = _per_latent_sum(idx, rows, vals, grad_out, W_dec.shape[0])
        return None, None, grad_vals, None, grad_W_dec


def sparse_decode(sel: Selection, W_dec: Tensor) -> Tensor:
    """Reconstruction without bias, [B, d_in]; gradients reach sel.vals and W_dec only through the pairs."""
    if sel.idx.numel() == 0:
        return W_dec.new_zeros(sel.batch, W_dec.shape[1]) + 0 * W_dec.sum()
    return _SparseDecode.apply(sel.rows, sel.idx, sel.vals, sel.offsets, W_dec)
