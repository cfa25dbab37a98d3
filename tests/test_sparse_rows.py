"""SparseRows, a sparse matrix as padded (value, column) pairs per row: every product equals the dense
matrix's, and an SAE trained or encoded from it equals one from the dense rows."""

from __future__ import annotations

import pytest
import torch

from metasae.io import read_json
from metasae.sae import SAE, sparse, sparse_rows
from metasae.sae.base import SAEConfig
from metasae.sae.registry import build_sae
from metasae.sae.sparse_rows import SparseRows
from metasae.sae.trainer import TrainConfig, train_sae
from metasae.statistics.meta_gain import _unit, tied_codes


def _ragged(n: int = 40, width: int = 30, seed: int = 0) -> torch.Tensor:
    """Non-negative rows with 0 to 6 non-zeros each (an empty row included)."""
    g = torch.Generator().manual_seed(seed)
    dense = torch.zeros(n, width)
    for r in range(1, n):
        cols = torch.randperm(width, generator=g)[: int(torch.randint(1, 7, (), generator=g))]
        dense[r, cols] = torch.rand(len(cols), generator=g) + 0.1
    return dense


def test_from_sparse_pads_ragged_rows_and_keeps_the_matrix():
    dense = _ragged()
    rows = SparseRows.from_sparse(dense.to_sparse())
    assert rows.shape == (40, 30) and rows.vals.shape[1] == int((dense != 0).sum(1).max())
    assert torch.equal(rows.dense(), dense)
    assert torch.equal(rows.select(torch.tensor([3, 0, 7])).dense(), dense[[3, 0, 7]])
    assert torch.allclose(rows.row_sq_norms(), dense.pow(2).sum(1))


def test_products_equal_the_dense_products(monkeypatch):
    dense = _ragged(seed=1).double()
    rows = SparseRows.from_sparse(dense.to_sparse())
    weight = torch.randn(30, 9, dtype=torch.double, generator=torch.Generator().manual_seed(2))
    source = torch.randn(40, 5, dtype=torch.double, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(rows.product(weight), dense @ weight, atol=1e-12)
    assert torch.allclose(rows.transposed_product(source), dense.T @ source, atol=1e-12)
    assert torch.allclose(rows.usage(), dense.sum(0), atol=1e-12)
    assert torch.allclose(rows.gram(), dense.T @ dense, atol=1e-12)
    monkeypatch.setattr(sparse_rows, "GRAM_CHUNK_PAIRS", 80)  # 2 rows of 36 pair products per chunk
    assert torch.allclose(rows.gram(), dense.T @ dense, atol=1e-12)


def test_tied_codes_are_the_k_largest_relud_scores():
    g = torch.Generator().manual_seed(2)
    x = _unit(torch.randn(100, 24, generator=g)).double()
    decoder = _unit(torch.randn(30, 24, generator=g)).double()
    codes = tied_codes(x, decoder, 5)
    dense = codes.dense()
    assert torch.equal(dense, torch.relu(x @ decoder.T) * (dense != 0))
    assert ((dense != 0).sum(1) <= 5).all()
    assert torch.allclose(codes.product(decoder), dense @ decoder, atol=1e-12)


def _sae(architecture: str, k_aux: int) -> SAE:
    cfg = SAEConfig(architecture=architecture, d_in=30, width=64, k=4, k_aux=k_aux, aux_coeff=0.5)
    sae = build_sae(cfg, torch.Generator().manual_seed(4))
    with torch.no_grad():
        sae.b_dec.copy_(0.1 * torch.randn(30, generator=torch.Generator().manual_seed(5)))
        sae.b_enc.copy_(0.05 * torch.randn(64, generator=torch.Generator().manual_seed(6)))
    return sae


def _grads(sae: SAE, x, dead: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    sae.zero_grad(set_to_none=True)
    loss = sae.loss(x, dead=dead)
    loss.total.backward()
    return loss.total.detach(), {name: p.grad.clone() for name, p in sae.named_parameters()}


@pytest.mark.parametrize("small_batch_elements", [0, 1 << 30])  # the sparse functions; autograd's ops
@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "matryoshka"])
@pytest.mark.parametrize("k_aux, n_dead", [(30, 20), (4, 20), (30, 0)])  # AuxK every dead column / a top-k
def test_a_loss_on_sparse_rows_equals_the_loss_on_their_dense_rows(
    architecture, k_aux, n_dead, small_batch_elements, monkeypatch
):
    """Both AuxK branches of the sparse input (k_aux >= dead: one matmul; else the pairs) and none."""
    monkeypatch.setattr(sparse, "SMALL_BATCH_ELEMENTS", small_batch_elements)
    dense = _ragged(n=48, seed=7)
    sae = _sae(architecture, k_aux)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[torch.randperm(64, generator=torch.Generator().manual_seed(8))[:n_dead]] = True
    loss_dense, grads_dense = _grads(sae, dense, dead)
    loss_sparse, grads_sparse = _grads(sae, SparseRows.from_sparse(dense.to_sparse()), dead)
    assert torch.allclose(loss_sparse, loss_dense, rtol=1e-5)
    for name, grad in grads_dense.items():
        assert torch.allclose(grads_sparse[name], grad, rtol=1e-4, atol=1e-6), name
    assert grads_sparse["W_enc"].stride() == sae.W_enc.stride()  # in the parameter's layout


def test_encoding_and_training_from_sparse_rows_equal_the_dense_rows(tmp_path):
    dense = _ragged(n=200, seed=9)
    rows = SparseRows.from_sparse(dense.to_sparse())
    cfg = SAEConfig(architecture="topk", d_in=30, width=64, k=4, k_aux=15)
    train = TrainConfig(lr=3e-3, batch_size=32, steps=40, dead_after_examples=64, seed=0)
    from_dense = train_sae(dense, cfg, train, tmp_path / "dense", eval_data=dense[:50])
    from_sparse = train_sae(rows, cfg, train, tmp_path / "sparse", eval_data=rows.select(slice(0, 50)))
    for name, weight in from_dense.state_dict().items():
        assert torch.allclose(from_sparse.state_dict()[name], weight, rtol=1e-3, atol=1e-5), name
    assert torch.allclose(from_sparse.encode(rows), from_sparse.encode(dense), rtol=1e-5, atol=1e-6)
    metrics = [read_json(tmp_path / run / "metrics.json") for run in ("dense", "sparse")]
    assert metrics[0]["fvu"] == pytest.approx(metrics[1]["fvu"], rel=1e-3)


def test_from_dense_keeps_the_matrix_and_its_gradient():
    dense = _ragged(seed=10).requires_grad_()
    rows = SparseRows.from_dense(dense)
    assert torch.equal(rows.dense(), dense.detach())
    weight = torch.randn(30, 5, generator=torch.Generator().manual_seed(11))
    (grad,) = torch.autograd.grad(rows.product(weight).pow(2).sum(), dense)
    (expected,) = torch.autograd.grad((dense @ weight).pow(2).sum(), dense)
    nonzero = dense.detach() != 0
    assert torch.allclose(grad[nonzero], expected[nonzero], atol=1e-5)  # zeros are not inputs: no gradient
