"""SAE architectures: invariants (property tests), sparse-vs-dense gradients, hand-computed losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from metasae.errors import MetasaeError
from metasae.sae import ARCHITECTURES, SAEConfig, build_sae, encoder, relu, sparse, topk
from metasae.sae.sparse import BatchTopK

ARCHS = sorted(ARCHITECTURES)


def _sae(arch: str, d_in: int = 6, width: int = 20, k: int = 3, seed: int = 0, **kw):
    return build_sae(
        SAEConfig(arch, d_in, width, k=k, l1_coeff=0.01, **kw), torch.Generator().manual_seed(seed)
    )


@settings(max_examples=25, deadline=None)
@given(
    arch=st.sampled_from(ARCHS),
    batch=st.integers(1, 9),
    d_in=st.integers(1, 8),
    width=st.integers(4, 24),
    seed=st.integers(0, 2**16),
)
def test_shapes_and_unit_decoder_rows(arch, batch, d_in, width, seed):
    sae = _sae(arch, d_in, width, k=min(3, width), seed=seed)
    x = torch.randn(batch, d_in, generator=torch.Generator().manual_seed(seed))
    assert sae.encode(x).shape == (batch, width)
    assert sae(x).shape == (batch, d_in)
    assert sae.W_enc.shape == (d_in, width) and sae.W_dec.shape == (width, d_in)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(width))
    parts = sae.loss(x, dead=torch.ones(width, dtype=torch.bool))
    assert torch.isfinite(parts.total)
    # a training step keeps the rows at unit norm
    parts.total.backward()
    sae.remove_parallel_grad_()
    with torch.no_grad():
        for p in sae.parameters():
            p -= 0.1 * p.grad
    sae.normalize_decoder_()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(width))


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 9), k=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_topk_exactly_k_active(batch, k, seed):
    sae = _sae("topk", k=k, seed=seed)
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # all pre-activations positive, so ReLU zeroes none of the k
    x = torch.randn(batch, 6, generator=torch.Generator().manual_seed(seed))
    assert ((sae.encode(x) != 0).sum(1) == k).all()
    assert sae.loss(x).l0 == k


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 40), k=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_batchtopk_selects_k_times_batch(batch, k, seed):
    pre = torch.randn(batch, 20, generator=torch.Generator().manual_seed(seed)) + 3.0  # all positive
    rows, idx, vals = BatchTopK(k).select(pre)
    assert len(rows) == k * batch  # mean L0 is exactly k
    assert (rows[1:] >= rows[:-1]).all()  # row-major, as embedding_bag needs
    flat = pre.flatten()
    expected = set(flat.topk(k * batch).indices.tolist())
    assert set((rows * 20 + idx).tolist()) == expected
    assert torch.equal(vals, pre[rows, idx])
    selector = BatchTopK(k)  # the GPU's path (one flat top-k over the whole batch) picks the same pairs
    selector.width = 20
    flat_rows, flat_idx, flat_vals = selector._flat_pairs(pre)
    assert torch.equal(flat_rows, rows) and set((flat_rows * 20 + flat_idx).tolist()) == expected
    assert torch.equal(flat_vals, pre[flat_rows, flat_idx])


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 6),
    blocks=st.integers(4, 24),
    k=st.integers(1, 6),
    ties=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_block_row_topk_is_exact(rows, blocks, k, ties, seed):
    _check_row_topk(
        torch.randn(rows, blocks * sparse.BLOCK, generator=torch.Generator().manual_seed(seed)), k, ties
    )


@settings(max_examples=10, deadline=None)
@given(
    rows=st.integers(1, 4),
    extra=st.integers(0, 40),
    k=st.integers(33, 40),
    ties=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_small_block_row_topk_is_exact_above_k_32(rows, extra, k, ties, seed):
    cols = sparse.SMALL_BLOCK * (4 * k + extra)
    assert sparse.topk_block(cols, k) == sparse.SMALL_BLOCK  # < 4k blocks of 32 at these widths
    _check_row_topk(torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)), k, ties)


def test_topk_block_choice():
    assert sparse.topk_block(8192, 32) == sparse.BLOCK
    assert sparse.topk_block(2304, 48) == sparse.SMALL_BLOCK  # 72 blocks of 32 < 4k; 288 of 8 >= 4k
    assert sparse.topk_block(2304, 32) is None  # k <= 32: torch.topk itself is fast enough
    assert sparse.topk_block(576, 48) is None  # too few blocks of either width


def _check_row_topk(pre: torch.Tensor, k: int, ties: bool) -> None:
    if ties:
        pre = pre.round()  # many equal values across blocks
    vals, idx = sparse.row_topk(pre, k)
    assert torch.equal(vals, pre.gather(1, idx))  # the values sit at the returned columns
    assert all(len(set(row)) == k for row in idx.tolist())  # distinct columns
    torch.testing.assert_close(vals.sort(1).values, pre.topk(k, dim=1).values.sort(1).values)


def _batchtopk_in_chunks(pre: torch.Tensor, k: int, bounds: list[int]):
    """BatchTopK's CPU path fed chunk by chunk, as the encoder feeds it; also returns the recomputed rows."""
    selector, recomputed = BatchTopK(k), []

    def full_rows(r: torch.Tensor) -> torch.Tensor:
        recomputed.append(r.tolist())
        return pre[r]

    for start, stop in zip([0, *bounds], [*bounds, len(pre)], strict=True):
        if stop > start:
            selector.take(pre[start:stop].clone())
    return *selector.pairs(full_rows), recomputed


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 40),
    width=st.sampled_from([20, 64, 96]),
    k=st.integers(1, 6),
    cuts=st.lists(st.integers(0, 40), max_size=4),
    shift=st.floats(-3, 3),
    ties=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_batchtopk_in_chunks_is_exact(batch, width, k, cuts, shift, ties, seed):
    """Any chunking, rows of very different scales, scarce positives, ties: the pairs are exactly the positive
    values >= the (k*B)-th largest of the batch."""
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(batch, width, generator=g) * torch.randn(batch, 1, generator=g).mul(2).exp() + shift
    if ties:
        pre = pre.round()
    rows, idx, vals, _ = _batchtopk_in_chunks(pre, k, sorted(c for c in cuts if c < batch))
    flat = pre.flatten()
    tau = flat.kthvalue(flat.numel() - min(k * batch, flat.numel()) + 1).values
    expected = ((pre >= tau) & (pre > 0)).nonzero(as_tuple=True)  # row-major
    assert torch.equal(rows, expected[0]) and torch.equal(idx, expected[1])
    assert torch.equal(vals, pre[rows, idx])


@pytest.mark.parametrize("width", [64, 20])  # with and without 32-column blocks
def test_batchtopk_refuses_nan_pre_activations(width):
    pre = torch.randn(8, width)
    pre[3, 5] = math.nan
    with pytest.raises(MetasaeError, match="NaN pre-activations"):
        BatchTopK(2).select(pre)


def test_batchtopk_recomputes_a_chunk_whose_floor_lies_above_the_threshold():
    pre = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    pre[0] += 100  # all 64 values of row 0 are among the k*B = 128 winners, but its chunk pooled only ~1.5k
    rows, idx, vals, recomputed = _batchtopk_in_chunks(pre, 4, [1])
    assert recomputed == [[0]]
    assert (rows == 0).sum() == 64 and len(rows) == 128
    assert torch.equal(vals, pre[rows, idx])


def test_batchtopk_mean_l0_near_k_at_inference():
    sae = _sae("batchtopk", d_in=8, width=64, k=4, threshold_momentum=0.9)
    g = torch.Generator().manual_seed(3)
    for _ in range(50):
        sae.loss(torch.randn(256, 8, generator=g))
    sae.eval()
    l0 = float((sae.encode(torch.randn(4096, 8, generator=g)) != 0).sum(1).float().mean())
    assert 2.5 < l0 < 6.0


@pytest.mark.parametrize("arch", ARCHS)
def test_determinism_under_seed(arch):
    a, b, c = _sae(arch, seed=1), _sae(arch, seed=1), _sae(arch, seed=2)
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name])
    assert not torch.equal(a.W_dec, c.W_dec)
    torch.testing.assert_close(a.W_enc, a.W_dec.t())  # encoder starts as decoder transpose


def _dense_topk_loss(sae, x, dead, k_aux):
    """Plain autograd reference of the TopK + AuxK loss (what the sparse ops must equal)."""
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    vals, idx = pre.topk(sae.cfg.k, dim=1)
    z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    x_hat = z @ sae.W_dec + sae.b_dec
    mse = (x_hat - x).pow(2).sum(1).mean()
    masked = pre.masked_fill(~dead, -math.inf)
    avals, aidx = masked.topk(k_aux, dim=1)
    za = torch.zeros_like(pre).scatter(1, aidx, avals.relu())
    aux = ((x - x_hat).detach() - za @ sae.W_dec).pow(2).sum(1).mean()
    return mse + sae.cfg.aux_coeff * aux


# the custom sparse functions (every batch); autograd's own ops (every batch is a small one)
SELECTION_PATHS = {"sparse": 0, "autograd": 1 << 30}


@pytest.mark.parametrize("path", SELECTION_PATHS)
@pytest.mark.parametrize("aux_path", ["dense", "pairs"])
@pytest.mark.parametrize("chunk_elements", [1 << 20, 40])  # one chunk; 2 rows per chunk
@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_sparse_gradients_equal_dense_reference(arch, chunk_elements, aux_path, path, monkeypatch):
    monkeypatch.setattr(topk, "DENSE_AUX_MAX_DEAD_PER_K", 10**6 if aux_path == "dense" else 0)
    monkeypatch.setattr(sparse, "CPU_CHUNK_ELEMENTS", chunk_elements)
    monkeypatch.setattr(sparse, "SMALL_BATCH_ELEMENTS", SELECTION_PATHS[path])
    torch.manual_seed(0)
    sae = _sae(arch, d_in=5, width=16, k=3, k_aux=2).double()
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(7, 5, dtype=torch.float64)
    dead = torch.zeros(16, dtype=torch.bool)
    dead[::2] = True
    sae.train()
    sae.loss(x, dead=dead).total.backward()
    sparse_grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    if arch == "topk":
        _dense_topk_loss(sae, x, dead, 2).backward()
    else:  # dense BatchTopK reference
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        flat = pre.relu().flatten()
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.topk(3 * 7).indices] = True
        z = (flat * keep).view_as(pre)
        x_hat = z @ sae.W_dec + sae.b_dec
        masked = pre.masked_fill(~dead, -math.inf)
        av, ai = masked.topk(2, dim=1)
        za = torch.zeros_like(pre).scatter(1, ai, av.relu())
        (
            (x_hat - x).pow(2).sum(1).mean()
            + sae.cfg.aux_coeff * ((x - x_hat).detach() - za @ sae.W_dec).pow(2).sum(1).mean()
        ).backward()
    for n, p in sae.named_parameters():
        torch.testing.assert_close(sparse_grads[n], p.grad, msg=n)


@pytest.mark.parametrize("path", SELECTION_PATHS)
@pytest.mark.parametrize("chunk_elements", [1 << 20, 40])
def test_rank_bias_moves_the_selection_not_the_values(chunk_elements, path, monkeypatch):
    """The trainer's firing balance (TopKSAE.rank_bias): pairs chosen by pre + bias, valued (and
    differentiated) at pre, on every selection path; encode, the saved SAE's, ignores the bias."""
    monkeypatch.setattr(sparse, "CPU_CHUNK_ELEMENTS", chunk_elements)
    monkeypatch.setattr(sparse, "SMALL_BATCH_ELEMENTS", SELECTION_PATHS[path])
    torch.manual_seed(0)
    sae = _sae("topk", d_in=5, width=16, k=3).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    plain = sae.encode(x)
    sae.rank_bias = torch.zeros(16, dtype=torch.float64)
    sae.rank_bias[:4] = 10.0  # latents 0-3 win every row
    sae.train()
    sae.loss(x).total.backward()
    grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    chosen = (pre + sae.rank_bias).topk(3, dim=1).indices
    assert set(chosen.flatten().tolist()) <= {0, 1, 2, 3}
    z = torch.zeros_like(pre).scatter(1, chosen, pre.gather(1, chosen).relu())
    (z @ sae.W_dec + sae.b_dec - x).pow(2).sum(1).mean().backward()
    for n, p in sae.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, msg=n)
    assert torch.equal(sae.encode(x), plain)


@pytest.mark.parametrize("arch", ARCHS)
def test_bf16_autocast_loss_and_gradients_near_float32(arch):
    """Under bf16 autocast the encoder (and dense decoder) products run in bf16: the loss moves by rounding
    only, the gradients keep their direction, and parameters and gradients stay float32."""
    sae = _sae(arch, d_in=64, width=256, k=8)
    x = torch.randn(512, 64, generator=torch.Generator().manual_seed(0))
    results = {}
    for enabled in (False, True):
        sae.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            total = sae.loss(x).total
        total.backward()
        results[enabled] = total.detach(), {n: p.grad.clone() for n, p in sae.named_parameters()}
    (loss32, grads32), (loss16, grads16) = results[False], results[True]
    assert loss16.dtype == torch.float32 and loss16 != loss32
    torch.testing.assert_close(loss16, loss32, rtol=0.02, atol=0)
    for name, g in grads16.items():
        assert g.dtype == torch.float32, name
        assert F.cosine_similarity(g.flatten(), grads32[name].flatten(), dim=0) > 0.97, name


@pytest.mark.parametrize("with_b_dec", [True, False])
def test_dense_encode_gradients_equal_autograd(with_b_dec):
    g = torch.Generator().manual_seed(0)
    x, b_dec, W_enc, b_enc = (
        torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        for shape in [(7, 5), (5,), (5, 11), (11,)]
    )
    weights = torch.randn(7, 11, generator=g, dtype=torch.float64)  # a loss that weighs every output
    inputs = [x, b_dec, W_enc, b_enc] if with_b_dec else [x, W_enc, b_enc]
    ours = torch.autograd.grad(
        (encoder.dense_encode(x, b_dec if with_b_dec else None, W_enc, b_enc) * weights).sum(), inputs
    )
    reference = torch.autograd.grad(
        ((((x - b_dec) if with_b_dec else x) @ W_enc + b_enc) * weights).sum(), inputs
    )
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b)


def test_pair_dot_paths_agree(monkeypatch):
    """The CPU's sampled matmul and the GPU's chunked gathers (run here on CPU tensors) give the same dots."""
    g = torch.Generator().manual_seed(0)
    W_dec, grad_out = (
        torch.randn(40, 6, generator=g, dtype=torch.float64),
        torch.randn(9, 6, generator=g, dtype=torch.float64),
    )
    counts = torch.tensor([3, 0, 5, 1, 4, 4, 0, 2, 6])  # rows with different numbers of pairs, some none
    rows = torch.repeat_interleave(torch.arange(9), counts)
    idx = torch.randint(40, (len(rows),), generator=g)
    offsets = torch.cumsum(counts, 0) - counts
    expected = (W_dec[idx] * grad_out[rows]).sum(1)
    torch.testing.assert_close(sparse._pair_dots(W_dec, idx, grad_out, rows, offsets), expected)
    monkeypatch.setattr(sparse, "GPU_PAIR_CHUNK_ELEMENTS", 12)  # 2 pairs per gather
    torch.testing.assert_close(sparse._gathered_pair_dots(W_dec, idx, grad_out, rows), expected)


@pytest.mark.parametrize("path", SELECTION_PATHS)
@pytest.mark.parametrize("l1_reduction", ["decoder_norm", "sum"])
@pytest.mark.parametrize("pre_encoder_bias", [True, False])
def test_sparse_relu_step_equals_dense(l1_reduction, pre_encoder_bias, path, monkeypatch):
    """Few positive pre-activations: the CPU step runs on pairs, chunk by chunk, with the dense step's loss,
    statistics and gradients."""
    monkeypatch.setattr(sparse, "CPU_CHUNK_ELEMENTS", 3 * 64)  # 3 rows per chunk
    monkeypatch.setattr(sparse, "SMALL_BATCH_ELEMENTS", SELECTION_PATHS[path])
    sae = _sae(
        "relu", d_in=6, width=64, l1_reduction=l1_reduction, pre_encoder_bias=pre_encoder_bias
    ).double()
    with torch.no_grad():
        sae.b_enc.fill_(-2.5)  # a few percent of the pre-activations positive
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(11, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    results = {}
    for max_density in (1.0, -1.0):  # the sparse path; the dense one (every chunk "too dense")
        monkeypatch.setattr(relu, "SPARSE_MAX_DENSITY", max_density)
        sae.zero_grad()
        parts = sae.loss(x)
        parts.total.backward()
        results[max_density] = parts, {n: p.grad.clone() for n, p in sae.named_parameters()}
    (sparse_parts, sparse_grads), (dense_parts, dense_grads) = results.values()
    assert 0 < float(dense_parts.l0) < 0.1 * 64
    for field in ("total", "mse", "sparsity", "l0"):
        torch.testing.assert_close(getattr(sparse_parts, field), getattr(dense_parts, field), msg=field)
    assert torch.equal(sparse_parts.fired, dense_parts.fired)
    torch.testing.assert_close(sparse_parts.x_hat, dense_parts.x_hat)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(sparse_grads[name], grad, msg=name)


def test_positive_selector_gives_up_on_a_dense_chunk():
    pre = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(sparse.TooDense, match="sample"):
        sparse.Positive(0.05).select(pre)  # half positive, seen from a sample of the rows
    masked = pre.index_fill(0, torch.arange(0, 256, 16), -1.0)  # the sampled rows (every 16th) are negative
    with pytest.raises(sparse.TooDense, match="positive"):
        sparse.Positive(0.05).select(masked)
    rows, idx, vals = sparse.Positive(0.6).select(pre)
    assert torch.equal(torch.stack([rows, idx]), (pre > 0).nonzero().t()) and torch.equal(
        vals, pre[rows, idx]
    )


def test_relu_sum_loss_is_the_research_log_loss():
    sae = _sae("relu", d_in=2, width=3, l1_reduction="sum", normalize_decoder=False, pre_encoder_bias=False)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, 0.5]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        sae.b_dec.zero_()
    x = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    # z = relu(x W_enc) = [[1, 1, 1], [2, 0, 1]]; x_hat = z W_dec = [[2, 2], [3, 1]]
    # MSE mean over 4 elements = (1 + 1 + 1 + 1) / 4 = 1; L1 sum = 3 + 3 = 6; total = 1 + 0.01 * 6
    parts = sae.loss(x)
    assert parts.mse.item() == pytest.approx(1.0)
    assert parts.total.item() == pytest.approx(1.06)


def test_relu_decoder_norm_l1_weights_by_row_norm():
    sae = _sae("relu", d_in=1, width=2, normalize_decoder=False, pre_encoder_bias=False)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 1.0]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[2.0], [0.5]]))
        sae.b_dec.zero_()
    # x = 1: z = [1, 1]; x_hat = 2.5; mse = 2.25; l1 = 1*2 + 1*0.5 = 2.5
    parts = sae.loss(torch.tensor([[1.0]]))
    assert parts.total.item() == pytest.approx(2.25 + 0.01 * 2.5)


def test_jumprelu_straight_through_threshold_gradient():
    sae = _sae(
        "jumprelu",
        d_in=1,
        width=1,
        jumprelu_init_threshold=1.0,
        jumprelu_bandwidth=0.5,
        pre_encoder_bias=False,
    )
    with torch.no_grad():
        sae.W_enc.fill_(1.0)
        sae.W_dec.fill_(1.0)
    x = torch.tensor([[1.2]])  # pre = 1.2 > theta = 1: z = 1.2, x_hat = 1.2, mse = 0
    parts = sae.loss(x)
    parts.total.backward()
    # L0 = 1; sparsity = 0.01. d/dtheta: mse part 0 (error 0);
    # L0 part -(1/eps) K((1.2-1)/0.5) = -2 (|0.4| < 0.5)
    # d/dlog_theta = theta * d/dtheta = 1 * 0.01 * -2
    assert parts.sparsity.item() == pytest.approx(0.01)
    assert sae.log_threshold.grad.item() == pytest.approx(-0.02)


def test_jumprelu_gradients_elementwise():
    """The fused z / L0 function against the per-element definition of its straight-through gradients."""
    from metasae.sae.jumprelu import _JumpReLUWithL0

    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, 7, generator=g, dtype=torch.float64).requires_grad_()
    theta = torch.full((7,), 0.5, dtype=torch.float64).requires_grad_()
    eps = 0.2
    z, l0 = _JumpReLUWithL0.apply(x, theta, eps)
    g_z, g_l0 = (
        torch.randn(5, 7, generator=g, dtype=torch.float64),
        torch.randn(5, generator=g, dtype=torch.float64),
    )
    ((z * g_z).sum() + (l0 * g_l0).sum()).backward()
    x, x_grad = x.detach(), x.grad
    for b in range(5):
        assert l0[b] == sum(float(x[b, j] > 0.5) for j in range(7))
    for j in range(7):
        expected = sum(
            -(1 / eps) * (abs(float(x[b, j]) - 0.5) < eps / 2) * (0.5 * g_z[b, j] + g_l0[b]) for b in range(5)
        )
        assert theta.grad[j].item() == pytest.approx(float(expected))
        for b in range(5):
            assert x_grad[b, j] == (g_z[b, j] if x[b, j] > 0.5 else 0.0)


@pytest.mark.parametrize("arch", ARCHS)
def test_folding_the_input_scale_gives_an_sae_on_raw_inputs(arch):
    sae = _sae(arch, width=12, k=3)
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(5))
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(6))
    if arch == "batchtopk":
        sae.threshold.fill_(0.3)
    x = torch.randn(10, 6, generator=torch.Generator().manual_seed(7)) * 7.0
    scale = 7.0
    before_codes, before_out = sae.encode(x / scale), sae(x / scale)
    sae.fold_input_scale(scale)
    torch.testing.assert_close(sae.encode(x), scale * before_codes)
    torch.testing.assert_close(sae(x), scale * before_out)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(12))


def test_bad_config_is_a_one_line_error():
    with pytest.raises(MetasaeError, match="architecture='gated'; allowed"):
        SAEConfig("gated", 4, 8)
    with pytest.raises(MetasaeError, match="sae.k=None"):
        SAEConfig("topk", 4, 8)
    with pytest.raises(MetasaeError, match="l1_reduction='mean'"):
        SAEConfig("relu", 4, 8, l1_reduction="mean")
    with pytest.raises(MetasaeError, match=r"unknown key\(s\) \['kk'\]"):
        SAEConfig.from_dict({"architecture": "relu", "d_in": 4, "width": 8, "kk": 1})


def test_encode_is_per_example_for_batchtopk():
    sae = _sae("batchtopk")
    sae.threshold.fill_(0.1)
    x = torch.randn(8, 6)
    torch.testing.assert_close(sae.encode(x)[:1], sae.encode(x[:1]))
