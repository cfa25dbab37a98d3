"""Meta gain's null fit: its pair-wise least-squares decoder step against the dense solve and a planted
answer; the null's memo."""

from __future__ import annotations

import json

import torch

from metasae.sae.sparse_rows import SparseRows
from metasae.statistics import meta_gain
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


def test_null_memo_returns_the_computed_values_and_ignores_foreign_or_damaged_files(tmp_path):
    args = (40, 8, 10, 2, 7)
    fresh = meta_gain._null_explained.__wrapped__(*args)  # uncached: a computation, not the process memo
    assert meta_gain.null_explained(*args, memo=tmp_path) == fresh  # written
    (memo_file,) = tmp_path.glob("*.json")
    assert meta_gain.null_explained(*args, memo=tmp_path) == fresh  # read back, to the bit
    stored = json.loads(memo_file.read_text())
    stored["explained"] = [0.5] * len(fresh)
    memo_file.write_text(json.dumps(stored))
    assert meta_gain.null_explained(*args, memo=tmp_path) == (0.5,) * len(fresh)  # the memo is what is read
    stored["key"]["code"] = "other code"
    memo_file.write_text(json.dumps(stored))
    assert meta_gain.null_explained(*args, memo=tmp_path) == fresh  # another key: recomputed and rewritten
    memo_file.write_text("{not json")
    assert meta_gain.null_explained(*args, memo=tmp_path) == fresh
    assert json.loads(memo_file.read_text())["explained"] == list(fresh)
    assert meta_gain.null_explained(40, 8, 10, 3, 7, memo=tmp_path) != fresh  # k is part of the key
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_row_structure_finds_sibling_pairs_and_not_random_rows():
    """Known answer and null of `row_structure` (deepest_row_structure's statistic): 32 rows in 16 tight
    sibling pairs hold structure a 16-latent, k = 1 fit finds far beyond its coordinate-permuted copies;
    32 random rows do not pass the criterion's threshold."""
    from metasae.statistics.optimal import Z_ENOUGH

    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        parents = torch.nn.functional.normalize(torch.randn(16, 64, generator=g), dim=1)
        siblings = parents.repeat_interleave(2, 0) + 0.05 * torch.randn(32, 64, generator=g)
        random_rows = torch.randn(32, 64, generator=g)
        assert meta_gain.row_structure(siblings, 16, 1, seed)["row_structure_z"] > 5 * Z_ENOUGH
        assert meta_gain.row_structure(random_rows, 16, 1, seed)["row_structure_z"] < Z_ENOUGH
