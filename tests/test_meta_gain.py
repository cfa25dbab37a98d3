"""Meta gain's null fit: its pair-wise least-squares decoder step against the dense solve and a planted
answer, and its pair-wise products against the dense codes'."""

from __future__ import annotations

import torch

from metasae.statistics import meta_gain
from metasae.statistics.meta_gain import TopKCodes, _unit, least_squares_decoder


def test_least_squares_decoder_recovers_a_planted_decoder_and_zeroes_unused_latents():
    g = torch.Generator().manual_seed(0)
    true = _unit(torch.randn(12, 16, generator=g)).double()
    others = torch.arange(12) != 4  # latent 4: no row uses it
    codes = TopKCodes.of(_unit(torch.randn(200, 16, generator=g)).double(), true[others], 3)
    codes = TopKCodes(codes.vals, others.nonzero().flatten()[codes.idx])
    decoder = least_squares_decoder(codes, codes.dense(12) @ true, 12)
    assert torch.allclose(decoder[others], true[others], atol=1e-6)
    assert torch.equal(decoder[4], torch.zeros(16, dtype=decoder.dtype))


def test_least_squares_decoder_equals_the_dense_solve_on_noisy_rows():
    g = torch.Generator().manual_seed(1)
    rows = _unit(torch.randn(300, 32, generator=g)).double()
    codes = TopKCodes.of(rows, _unit(rows[:40]), 4)
    dense_codes = codes.dense(40)
    dense = torch.linalg.lstsq(dense_codes, rows).solution
    used = dense_codes.abs().sum(0) > 0
    assert torch.equal(used, codes.usage(40) > 0)
    assert torch.allclose(least_squares_decoder(codes, rows, 40)[used], dense[used], atol=1e-8)


def test_pair_products_equal_the_dense_codes_products(monkeypatch):
    g = torch.Generator().manual_seed(2)
    rows = _unit(torch.randn(100, 24, generator=g)).double()
    decoder = _unit(torch.randn(30, 24, generator=g)).double()
    codes = TopKCodes.of(rows, decoder, 5)
    dense = codes.dense(30)
    assert torch.equal(dense, torch.relu(rows @ decoder.T) * (dense != 0))  # the k largest, ReLU'd
    assert ((dense != 0).sum(1) <= 5).all()
    assert torch.allclose(codes.gram(30), dense.T @ dense, atol=1e-12)
    monkeypatch.setattr(meta_gain, "GRAM_CHUNK_PAIRS", 60)  # 2 rows of 25 pair products per chunk
    assert torch.allclose(codes.gram(30), dense.T @ dense, atol=1e-12)
    assert torch.allclose(codes.transposed_product(rows, 30), dense.T @ rows, atol=1e-12)
    assert torch.allclose(codes.reconstruction(decoder), dense @ decoder, atol=1e-12)
