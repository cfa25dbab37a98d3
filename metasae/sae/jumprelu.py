"""JumpReLU SAE (Rajamanoharan et al. 2024): per-latent thresholds trained by straight-through estimators
with a rectangle kernel, and an L0 penalty."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from metasae.sae.base import SAE, LossParts, SAEConfig


class _JumpReLUWithL0(torch.autograd.Function):
    """z = x * H(x - theta) and each row's L0 = sum_j H(x_j - theta_j), in one pass each way.

    Straight-through gradients with a rectangle kernel K of bandwidth eps (Rajamanoharan et al.): x gets
    g_z * H(x - theta); theta gets -(1/eps) sum_b K((x - theta)/eps) (theta * g_z + g_l0). Written as one
    function because on a CPU every [batch, width] temporary costs a pass through DRAM.
    """

    @staticmethod
    def forward(ctx, x: Tensor, theta: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        active = x > theta
        ctx.save_for_backward(x, theta, active)
        ctx.eps = eps
        return x * active, active.sum(1, dtype=x.dtype)

    @staticmethod
    def backward(ctx, g_z: Tensor, g_l0: Tensor):
        x, theta, active = ctx.saved_tensors
        window = ((x - theta).abs_() < 0.5 * ctx.eps).to(
            x.dtype
        )  # K((x - theta)/eps) with K = 1 on |u| < 1/2
        grad_theta = theta * (g_z * window).sum(0)
        if g_l0 is not None:
            grad_theta += g_l0 @ window
        return g_z * active, grad_theta.mul_(-1.0 / ctx.eps), None


class JumpReLUSAE(SAE):
    saelens_architecture = "jumprelu"

    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(cfg, generator)
        self.log_threshold = nn.Parameter(torch.full((cfg.width,), math.log(cfg.jumprelu_init_threshold)))

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def encode(self, x: Tensor) -> Tensor:
        pre = self.pre_acts(x).relu()
        return pre * (pre > self.threshold)

    def loss(self, x: Tensor, dead: Tensor | None = None, sparsity_scale: float = 1.0) -> LossParts:
        with torch.autocast(x.device.type, enabled=False):
            # float32 even under autocast: the threshold's gradient window (bandwidth ~1e-3) is finer
            # than bf16
            pre = self.pre_acts(x).relu_()
        z, row_l0 = _JumpReLUWithL0.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth)
        x_hat = self.decode(z)
        mse = self.sum_dims_mse(x, x_hat)
        l0 = row_l0.mean()
        sparsity = self.cfg.l1_coeff * sparsity_scale * l0
        return LossParts.penalised(mse, sparsity, z, x_hat)

    def _scale_thresholds(self, scale: float) -> None:
        self.log_threshold += math.log(scale)
