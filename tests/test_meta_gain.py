"""Meta gain's null fit: its pair-wise least-squares decoder step against the dense solve and a planted
answer."""

from __future__ import annotations

import torch

from metasae.sae.sparse_rows import SparseRows
from metasae.statistics.meta_gain import _unit, least_squares_decoder, tied_codes


def test_least_squares_decoder_recovers_a_planted_decoder_and_zeroes_unused_latents():
    g = torch.Generator().manual_seed(0)
    true = _unit(torch.randn(12, 16, generator=g)).double()
    others = torch.arange(12) != 4  # latent 4: no row uses it
    codes = tied_codes(_unit(torch.randn(200, 16, generator=g)).double(), true[others], 3)
    codes = SparseRows(codes.vals, others.nonzero().flatten()[codes.idx], 12)
    decoder = least_squares_decoder(codes, codes.dense() @ true)
    assert torch.allclose(decoder[others], true[others], atol=1e-6)
    assert torch.equal(decoder[4], torch.zeros(16, dtype=decoder.dtype))


def test_least_squares_decoder_equals_the_dense_solve_on_noisy_rows():
    g = torch.Generator().manual_seed(1)
    rows = _unit(torch.randn(300, 32, generator=g)).double()
    codes = tied_codes(rows, _unit(rows[:40]), 4)
    dense_codes = codes.dense()
    dense = torch.linalg.lstsq(dense_codes, rows).solution
    used = dense_codes.abs().sum(0) > 0
    assert torch.equal(used, codes.usage() > 0)
    assert torch.allclose(least_squares_decoder(codes, rows)[used], dense[used], atol=1e-8)
