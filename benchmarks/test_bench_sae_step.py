"""One SAE training step per architecture, and one meta-SAE step on decoder rows, against the floor: the one
[batch x d_in] @ [d_in x width] encoder matmul no implementation can avoid, into a warm buffer (the physical
floor, and a steady one). Also reported: the product as `x @ W + b` allocates it in torch
(extra_info["vs_torch_addmm"]; its page faults make it 10-60% slower and noisy on a CPU) and, for TopK /
BatchTopK, the straightforward dense-autograd implementation ("vs_dense").
Defaults are the SAE-core issue's sizes; BENCH_BATCH / BENCH_D_IN / BENCH_D_SAE change them for a quick look
(the baseline holds the defaults)."""

from __future__ import annotations

import os

import pytest
import torch

from metasae.optim import Adam
from metasae.sae import SAEConfig, build_sae, load_sae, save_sae
from metasae.sae.sparse_rows import SparseRows
from metasae.seeds import generator
from metasae.stack import unit_rows

BATCH, D_SAE = int(os.environ.get("BENCH_BATCH", 4096)), int(os.environ.get("BENCH_D_SAE", 8192))
D_IN, K = int(os.environ.get("BENCH_D_IN", 256)), 32
# The meta-SAE of the default study's decoder mode: a quarter as many latents, k=4, on unit-normed decoder
# rows.
META_D_SAE, META_K = D_SAE // 4, 4
ARCH_OPTIONS = {
    "relu": {"l1_coeff": 1e-3},
    "topk": {"k": K},
    "batchtopk": {"k": K},
    "jumprelu": {"l1_coeff": 1e-3},
}


def _setup(cfg: SAEConfig, x: torch.Tensor, device: torch.device):
    sae = build_sae(cfg, generator("bench", cfg.architecture, "init")).to(device)
    return sae, x.to(device), Adam(sae.parameters(), lr=1e-4)  # the trainer's optimizer


def _dense_loss(sae, x: torch.Tensor, arch: str) -> torch.Tensor:
    """The straightforward implementation: dense codes, dense decoder matmul, autograd everywhere."""
    k = sae.cfg.k
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    if arch == "topk":
        vals, idx = pre.topk(k, dim=1)
        z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    else:
        flat = pre.relu().flatten()
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.topk(k * len(x), sorted=False).indices] = True
        z = (flat * keep).view_as(pre)
    return ((z @ sae.W_dec + sae.b_dec) - x).pow(2).sum(1).mean()


def _step(sae, opt, loss_fn):
    def run() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        sae.remove_parallel_grad_()
        opt.step()
        sae.normalize_decoder_()

    return run


def _encoder_matmul(sae, x: torch.Tensor):
    @torch.no_grad()
    def run() -> None:
        torch.addmm(sae.b_enc, x, sae.W_enc)

    return run


def _warm_matmul(sae, x: torch.Tensor, dtype: torch.dtype = torch.float32):
    x, W = x.to(dtype), sae.W_enc.detach().to(dtype)
    out = x.new_empty(len(x), sae.cfg.width)

    @torch.no_grad()
    def run() -> None:
        torch.mm(x, W, out=out)

    return run


@pytest.mark.parametrize(
    "arch", [pytest.param("topk", marks=pytest.mark.quick), "batchtopk", "relu", "jumprelu"]
)
def test_sae_step(compare, device, arch):
    cfg = SAEConfig(arch, D_IN, D_SAE, **ARCH_OPTIONS[arch])
    x = torch.randn(BATCH, D_IN, generator=generator("bench", "sae-step", "x"))
    sae, x, opt = _setup(cfg, x, device)
    refs = {"torch_addmm": _encoder_matmul(sae, x)}
    if arch in ("topk", "batchtopk"):
        dense, _, dense_opt = _setup(cfg, x, device)
        refs["dense"] = _step(dense, dense_opt, lambda: _dense_loss(dense, x, arch))
    compare(
        _step(sae, opt, lambda: sae.loss(x).total),
        _warm_matmul(sae, x),
        "encoder matmul (warm buffer)",
        rounds=5,
        refs=refs,
        items=BATCH,
    )


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_sae_step_bf16_autocast(compare, device, arch):
    """train.autocast=bf16: against the same product in bf16 (AMX / tensor cores); vs_float32_matmul relates
    the step to the float32 floor of the rows above."""
    cfg = SAEConfig(arch, D_IN, D_SAE, **ARCH_OPTIONS[arch])
    x = torch.randn(BATCH, D_IN, generator=generator("bench", "sae-step", "x"))
    sae, x, opt = _setup(cfg, x, device)

    def loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return sae.loss(x).total

    compare(
        _step(sae, opt, loss),
        _warm_matmul(sae, x, torch.bfloat16),
        "encoder matmul in bf16 (warm buffer)",
        rounds=5,
        refs={"float32_matmul": _warm_matmul(sae, x)},
        items=BATCH,
    )


def test_relu_step_with_sparse_codes(compare, device):
    """ReLU once trained: ~2% of the pre-activations positive (b_enc = -2 here), where a CPU step runs on the
    positive pairs only."""
    cfg = SAEConfig("relu", D_IN, D_SAE, **ARCH_OPTIONS["relu"])
    x = torch.randn(BATCH, D_IN, generator=generator("bench", "sae-step", "x"))
    sae, x, opt = _setup(cfg, x, device)
    with torch.no_grad():
        sae.b_enc.fill_(-2.0)
    compare(
        _step(sae, opt, lambda: sae.loss(x).total),
        _warm_matmul(sae, x),
        "encoder matmul (warm buffer)",
        rounds=5,
        refs={"torch_addmm": _encoder_matmul(sae, x)},
        items=BATCH,
    )


def test_topk_step_with_auxk(compare, device):
    """The step as training runs it once latents die: 10% dead, so AuxK's top k_aux = d_in / 2 among them."""
    cfg = SAEConfig("topk", D_IN, D_SAE, k=K)
    x = torch.randn(BATCH, D_IN, generator=generator("bench", "sae-step", "x"))
    sae, x, opt = _setup(cfg, x, device)
    dead = torch.zeros(D_SAE, dtype=torch.bool, device=device)
    dead[torch.randperm(D_SAE, generator=generator("bench", "dead"))[: D_SAE // 10].to(device)] = True
    compare(
        _step(sae, opt, lambda: sae.loss(x, dead=dead).total),
        _warm_matmul(sae, x),
        "encoder matmul (warm buffer)",
        rounds=5,
        refs={"torch_addmm": _encoder_matmul(sae, x)},
        items=BATCH,
    )


@pytest.mark.quick
def test_meta_sae_step_on_decoder_rows(compare, device, tmp_path):
    parent = build_sae(SAEConfig("topk", D_IN, D_SAE, k=K), generator("bench", "meta", "parent"))
    save_sae(parent, tmp_path)
    rows = unit_rows(load_sae(tmp_path).W_dec.detach())
    batch = rows[torch.randint(len(rows), (BATCH,), generator=generator("bench", "meta", "batch"))]
    sae, x, opt = _setup(SAEConfig("batchtopk", D_IN, META_D_SAE, k=META_K), batch, device)
    compare(
        _step(sae, opt, lambda: sae.loss(x).total),
        _warm_matmul(sae, x),
        "encoder matmul (warm buffer)",
        rounds=5,
        refs={"torch_addmm": _encoder_matmul(sae, x)},
        items=BATCH,
    )


# The real study's activations-mode depth 2: a TopK meta-SAE on its parent's codes (2,304 latents, 48 active),
# a quarter as wide, k 8, with a third of its latents dead (as early in training), so AuxK takes them all.
CODES_WIDTH, CODES_K, CODES_BATCH = 2304, 48, 256


def test_meta_sae_step_on_sparse_codes(compare, device):
    """The codes as SparseRows: the floor is their product with W_enc over the non-zeros; "vs_dense_input"
    is the same step on the dense codes (the encoder matmul and AuxK's over every input column)."""
    g = generator("bench", "sparse-codes")
    idx = torch.rand(CODES_BATCH, CODES_WIDTH, generator=g).topk(CODES_K, dim=1).indices
    rows = SparseRows(torch.rand(CODES_BATCH, CODES_K, generator=g), idx, CODES_WIDTH).to(device)
    cfg = SAEConfig("topk", CODES_WIDTH, CODES_WIDTH // 4, k=8)
    sae, _, opt = _setup(cfg, rows.dense(), device)
    dense_sae, dense, dense_opt = _setup(cfg, rows.dense(), device)  # its own state, as test_sae_step's ref
    dead = torch.zeros(cfg.width, dtype=torch.bool, device=device)
    dead[torch.randperm(cfg.width, generator=g)[: cfg.width // 3].to(device)] = True
    W = sae.W_enc.detach().contiguous()
    compare(
        _step(sae, opt, lambda: sae.loss(rows, dead=dead).total),
        lambda: rows.product(W),
        "sparse input product (embedding bag)",
        rounds=5,
        refs={"dense_input": _step(dense_sae, dense_opt, lambda: dense_sae.loss(dense, dead=dead).total)},
        items=CODES_BATCH,
    )
