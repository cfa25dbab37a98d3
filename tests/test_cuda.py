"""The CUDA path: the same losses, gradients and training on a GPU as on the CPU. Skipped where CUDA is absent
(CI); run on a GPU machine with `pytest tests/test_cuda.py` (benchmarks/gpu_check.sh does)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from metasae.sae import ARCHITECTURES, SAEConfig, build_sae
from metasae.sae.trainer import TrainConfig, train_sae

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
ARCHS = sorted(ARCHITECTURES)


def _sae(arch: str, d_in: int = 32, width: int = 256) -> torch.nn.Module:
    cfg = SAEConfig(arch, d_in, width, k=8, l1_coeff=1e-3, k_aux=16)
    sae = build_sae(cfg, torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    return sae


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_and_gradients_match_the_cpu(arch):
    x = torch.randn(512, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    dead = torch.zeros(256, dtype=torch.bool)
    dead[::3] = True
    results = {}
    for device in ("cpu", "cuda"):
        sae = _sae(arch).to(device)
        parts = sae.loss(x.to(device), dead=dead.to(device))
        parts.total.backward()
        results[device] = (
            parts.total.detach().cpu(),
            {n: p.grad.cpu() for n, p in sae.named_parameters()},
            float(parts.l0),
            sae.encode(x.to(device)).cpu(),
        )
    (cpu_loss, cpu_grads, cpu_l0, cpu_codes), (gpu_loss, gpu_grads, gpu_l0, gpu_codes) = results.values()
    torch.testing.assert_close(gpu_loss, cpu_loss)
    assert gpu_l0 == cpu_l0
    for name, grad in cpu_grads.items():
        torch.testing.assert_close(gpu_grads[name], grad, msg=name)
    torch.testing.assert_close(gpu_codes, cpu_codes)


@pytest.mark.parametrize("autocast", [None, "bf16"])
@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_training_on_cuda_reaches_the_cpu_result(arch, autocast, tmp_path):
    g = torch.Generator().manual_seed(3)
    atoms = torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1)
    data = torch.rand(4096, 64, generator=g).pow(8) @ atoms  # sparse-ish mixtures of 64 atoms
    fvu = {}
    for device in ("cpu", "cuda"):
        sae = train_sae(
            data,
            SAEConfig(arch, 32, 128, k=8),
            TrainConfig(steps=150, batch_size=512, lr=1e-3, autocast=autocast),
            tmp_path / device,
            device=device,
        )
        assert next(sae.parameters()).device.type == device
        fvu[device] = json.loads((tmp_path / device / "metrics.json").read_text())["fvu"]
    assert all(math.isfinite(v) for v in fvu.values())
    assert abs(fvu["cuda"] - fvu["cpu"]) < 0.02, (
        fvu
    )  # same seeds and batches; only float rounding differs (in bf16 on both with autocast)
