"""JumpReLU SAE (Rajamanoharan et al. 2024): per-latent thresholds trained by straight-through estimators
with a rectangle kernel, and an L0 penalty."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from metasae.sae.base import SAE, LossParts, SAEConfig


def _rectangle(u: Tensor) -> Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """z = x * H(x - theta); d/dtheta uses the kernel density estimate -(theta/eps) K((x - theta)/eps)."""

    @staticmethod
    def forward(ctx, x: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(x, theta)
        ctx.eps = eps
        return x * (x > theta)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, theta = ctx.saved_tensors
        grad_theta = (-(theta / ctx.eps) * _rectangle((x - theta) / ctx.eps) * g).sum(0)
        return g * (x > theta), grad_theta, None


class _Step(torch.autograd.Function):
    """H(x - theta); only theta gets a (pseudo-)gradient, -(1/eps) K((x - theta)/eps)."""

    @staticmethod
    def forward(ctx, x: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(x, theta)
        ctx.eps = eps
        return (x > theta).to(x.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, theta = ctx.saved_tensors
        return None, (-(1.0 / ctx.eps) * _rectangle((x - theta) / ctx.eps) * g).sum(0), None


class JumpReLUSAE(SAE):
    saelens_architecture = "jumprelu"

    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(cfg, generator)
        self.log_threshold = nn.Parameter(torch.full((cfg.d_sae,), math.log(cfg.jumprelu_init_threshold)))

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def encode(self, x: Tensor) -> Tensor:
        pre = self.pre_acts(x).relu()
        return pre * (pre > self.threshold)

    def loss(self, x: Tensor, dead: Tensor | None = None, sparsity_scale: float = 1.0) -> LossParts:
        pre = self.pre_acts(x).relu()
        theta, eps = self.threshold, self.cfg.jumprelu_bandwidth
        z = _JumpReLU.apply(pre, theta, eps)
        x_hat = self.decode(z)
        mse = self.sum_dims_mse(x, x_hat)
        l0 = _Step.apply(pre, theta, eps).sum(1).mean()
        sparsity = self.cfg.l1_coeff * sparsity_scale * l0
        return LossParts.penalised(mse, sparsity, z, x_hat)

    def _scale_thresholds(self, scale: float) -> None:
        self.log_threshold += math.log(scale)
