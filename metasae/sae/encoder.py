"""The encoder product (x - b_dec) @ W_enc + b_enc that every architecture starts with, autocast-aware.

Under autocast the product runs in autocast's dtype (bf16 on AMX or tensor cores: several times faster);
`encoder_product` (the sparse encoder's, whose selection wants full precision) adds the bias in and returns
full precision, the dense encoder returns autocast's dtype as autocast's addmm would. The dense encoder's
backward takes b_dec's gradient from b_enc's, -W_enc @ sum_b g (a mat-vec), where autograd would push a
[batch, d_in] gradient back through x - b_dec with a second full-size matmul.
"""

from __future__ import annotations

import torch
from torch import Tensor


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast gives matmuls on this device now, or None when it is off."""
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None


def encoder_weight(W_enc: Tensor) -> Tensor:
    """W_enc as the product takes it: a low-precision copy under autocast."""
    low = autocast_dtype(W_enc.device)
    return W_enc if low is None else W_enc.to(low)


def encoder_product(
    x: Tensor, W: Tensor, b_enc: Tensor, out: Tensor | None = None, low_out: Tensor | None = None
) -> Tensor:
    """x @ W + b_enc in b_enc's dtype, into `out` (and `low_out` for a low-precision product) when given."""
    if W.dtype == b_enc.dtype:
        return torch.mm(x, W, out=out).add_(b_enc)
    product = torch.mm(x.to(W.dtype), W, out=low_out)
    # a copy that converts, then an add: torch.add's mixed-dtype path is much slower on a CPU
    return (product.to(b_enc.dtype) if out is None else out.copy_(product)).add_(b_enc)


def _product(a: Tensor, b: Tensor, low: torch.dtype | None, dtype: torch.dtype) -> Tensor:
    return a @ b if low is None else (a.to(low) @ b.to(low)).to(dtype)


class _DenseEncode(torch.autograd.Function):
    """Under autocast the pre-activations come out in its dtype, as autocast's own addmm gives them (the
    dense codes after them then cost half the memory traffic); gradients come back in full precision."""

    @staticmethod
    def forward(ctx, x: Tensor, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor) -> Tensor:
        x_c = x - b_dec if b_dec is not None else x
        W = encoder_weight(W_enc)
        ctx.save_for_backward(x_c, W_enc)
        ctx.low, ctx.has_b_dec = None if W is W_enc else W.dtype, b_dec is not None
        return torch.addmm(b_enc.to(W.dtype), x_c.to(W.dtype), W)

    @staticmethod
    def backward(ctx, g: Tensor):
        x_c, W_enc = ctx.saved_tensors
        low, dtype = ctx.low, W_enc.dtype
        grad_b_enc = g.sum(0, dtype=dtype)
        grad_x = _product(g, W_enc.t(), low, dtype) if ctx.needs_input_grad[0] else None
        grad_b_dec = -(W_enc @ grad_b_enc) if ctx.has_b_dec and ctx.needs_input_grad[1] else None
        grad_W_enc = _product(x_c.t(), g, low, dtype) if ctx.needs_input_grad[2] else None
        return grad_x, grad_b_dec, grad_W_enc, grad_b_enc


def dense_encode(x: Tensor, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor) -> Tensor:
    """(x - b_dec) @ W_enc + b_enc, [batch, width], differentiable in all four (b_dec None: no
    subtraction)."""
    return _DenseEncode.apply(x, b_dec, W_enc, b_enc)
