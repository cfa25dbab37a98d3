"""Meta gain's null fit: its least-squares decoder step against the dense solve and a planted answer."""

from __future__ import annotations

import torch

from metasae.statistics.meta_gain import _topk_codes, _unit, least_squares_decoder


def test_least_squares_decoder_recovers_a_planted_decoder_and_zeroes_unused_latents():
    g = torch.Generator().manual_seed(0)
    true = _unit(torch.randn(12, 16, generator=g)).double()
    codes = _topk_codes(_unit(torch.randn(200, 16, generator=g)).double(), true, 3)
    codes[:, 4] = 0  # a latent no row uses
    decoder = least_squares_decoder(codes, codes @ true)
    used = torch.arange(12) != 4
    assert torch.allclose(decoder[used], true[used], atol=1e-6)
    assert torch.equal(decoder[4], torch.zeros(16, dtype=decoder.dtype))


def test_least_squares_decoder_equals_the_dense_solve_on_noisy_rows():
    g = torch.Generator().manual_seed(1)
    rows = _unit(torch.randn(300, 32, generator=g)).double()
    codes = _topk_codes(rows, _unit(rows[:40]), 4)
    dense = torch.linalg.lstsq(codes, rows).solution
    used = codes.abs().sum(0) > 0
    assert torch.allclose(least_squares_decoder(codes, rows)[used], dense[used], atol=1e-8)
