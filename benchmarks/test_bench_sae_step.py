"""One training step of TopK / BatchTopK (sparse ops) vs a dense-autograd reference vs the floor: the one
4096 x 256 x 8192 matmul the encoder cannot avoid. Run: pytest benchmarks/ --benchmark-only
(BENCH_DEVICE=cuda to time a GPU; sizes via BENCH_BATCH / BENCH_D_SAE for a quick look)."""

from __future__ import annotations

import os

import pytest
import torch

from metasae.sae import SAEConfig, build_sae

DEVICE = os.environ.get("BENCH_DEVICE", "cpu")
BATCH, D_IN, D_SAE, K = int(os.environ.get("BENCH_BATCH", 4096)), 256, int(os.environ.get("BENCH_D_SAE", 8192)), 32


def _sync() -> None:
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _setup(arch: str):
    g = torch.Generator().manual_seed(0)
    sae = build_sae(SAEConfig(arch, D_IN, D_SAE, k=K), g).to(DEVICE)
    x = torch.randn(BATCH, D_IN, generator=g).to(DEVICE)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    return sae, x, opt


def _dense_loss(sae, x, arch: str) -> torch.Tensor:
    """The straightforward implementation: dense codes, dense decoder matmul, autograd everywhere."""
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    if arch == "topk":
        vals, idx = pre.topk(K, dim=1)
        z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    else:
        flat = pre.relu().flatten()
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.topk(K * len(x), sorted=False).indices] = True
        z = (flat * keep).view_as(pre)
    return ((z @ sae.W_dec + sae.b_dec) - x).pow(2).sum(1).mean()


def _step(sae, x, opt, loss_fn):
    def run():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        sae.remove_parallel_grad_()
        opt.step()
        sae.normalize_decoder_()
        _sync()

    return run


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_step_sparse(benchmark, arch):
    sae, x, opt = _setup(arch)
    benchmark.group = arch
    benchmark.pedantic(_step(sae, x, opt, lambda: sae.loss(x).total), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_step_dense_reference(benchmark, arch):
    sae, x, opt = _setup(arch)
    benchmark.group = arch
    benchmark.pedantic(_step(sae, x, opt, lambda: _dense_loss(sae, x, arch)), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_encoder_matmul_floor(benchmark, arch):
    sae, x, _ = _setup(arch)
    benchmark.group = arch

    def run():
        torch.addmm(sae.b_enc, x, sae.W_enc)
        _sync()

    with torch.no_grad():
        benchmark.pedantic(run, rounds=5, warmup_rounds=1)
