import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metasae.latent_stats import (
    auto_label,
    column_stats,
    label_histogram,
    max_correlation_to_parent,
    max_cosine_to_parent,
    purity_entropy,
    top_activations,
)

# 4 images x 3 latents; latent 1 has a tie (2.0 on rows 0 and 1), latent 2 never fires.
DENSE = torch.tensor([[0.0, 2.0, 0.0], [1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 5.0, 0.0]])


def test_column_stats_by_hand():
    s = column_stats(DENSE.to_sparse())
    assert s.n_active.tolist() == [2, 3, 0]
    assert s.density.tolist() == [0.5, 0.75, 0.0]
    assert s.mean_when_active[:2].tolist() == [2.0, 3.0] and math.isnan(s.mean_when_active[2])
    assert s.max_act[:2].tolist() == [3.0, 5.0] and math.isnan(s.max_act[2])
    assert s.mean_l0 == 5 / 4
    assert s.dead.tolist() == [False, False, True]
    assert not s.collapsed


def test_all_zero_codes_are_collapsed():
    assert column_stats(torch.zeros(5, 4).to_sparse()).collapsed


def test_top_n_by_hand_with_ties_and_padding():
    top = top_activations(DENSE.to_sparse(), 2)
    assert top.rows.tolist() == [[2, 1], [3, 0], [-1, -1]]  # tie 2.0 on rows 0/1: lower row first
    assert top.values[:2].tolist() == [[3.0, 1.0], [5.0, 2.0]]
    assert torch.isnan(top.values[2]).all()
    assert top.n_nonzero.tolist() == [2, 2, 0]


def test_stored_zeros_do_not_count_as_activations():
    codes = torch.sparse_coo_tensor(
        torch.tensor([[0, 1], [0, 0]]), torch.tensor([0.0, 4.0]), (2, 1), check_invariants=True
    )
    assert column_stats(codes).n_active.tolist() == [1]
    assert top_activations(codes, 3).rows.tolist() == [[1, -1, -1]]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 15), m=st.integers(1, 8), top_n=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_top_n_matches_a_dense_reference(n, m, top_n, seed):
    g = torch.Generator().manual_seed(seed)
    dense = torch.randint(0, 4, (n, m), generator=g).float() * (torch.rand(n, m, generator=g) < 0.5)
    top = top_activations(dense.to_sparse(), top_n)
    for j in range(m):
        col = dense[:, j]
        order = sorted((i for i in range(n) if col[i] != 0), key=lambda i: (-col[i].item(), i))[:top_n]
        assert top.rows[j, : len(order)].tolist() == order
        assert (top.rows[j, len(order) :] == -1).all()
    assert top.n_nonzero.tolist() == [min(top_n, int((dense[:, j] != 0).sum())) for j in range(m)]


def test_label_histogram_ignores_padding():
    rows = torch.tensor([[2, 1, -1], [0, 3, 1], [-1, -1, -1]])
    labels = torch.tensor([0, 1, 1, 0])
    assert label_histogram(rows, labels, 2).tolist() == [[0, 2], [2, 1], [0, 0]]


def test_purity_and_entropy_by_hand():
    purity, entropy = purity_entropy(torch.tensor([[8, 1, 1], [5, 5, 0], [10, 0, 0], [0, 0, 0]]))
    assert purity[:3].tolist() == pytest.approx([0.8, 0.5, 1.0])
    h = -(0.8 * math.log2(0.8) + 2 * 0.1 * math.log2(0.1))  # 0.9219 bits
    assert entropy[:3].tolist() == pytest.approx([h, 1.0, 0.0])
    assert str(entropy[2].item()) == "0.0"  # not -0.0
    assert math.isnan(purity[3]) and math.isnan(entropy[3])


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 10), min_size=1, max_size=12).filter(lambda c: sum(c) > 0))
def test_purity_is_a_share_and_entropy_is_bounded(counts):
    purity, entropy = purity_entropy(torch.tensor([counts]))
    k = sum(c > 0 for c in counts)
    assert 1 / k - 1e-12 <= purity.item() <= 1.0
    assert -1e-12 <= entropy.item() <= math.log2(k) + 1e-9


@pytest.mark.parametrize(
    "counts,names,expected",
    [
        ([0, 0, 0, 8, 1, 1, 0, 0, 0, 0], [str(i) for i in range(10)], "digit 3 (80%)"),
        ([4, 2, 3, 1], ["o", "c", "e", "a"], "letters o/e (70%)"),
        ([3, 2, 1, 1, 1, 1, 1], list("oceabdf"), "letters o/c/e (60%)"),
        ([4, 3, 0], ["o", "c", "e"], "letters o/c (100%)"),
        ([2, 2, 2, 2, 2, 2], list("abcdef"), "mixed (6 labels)"),
        ([7, 3], ["cat", "dog"], "cat (70%)"),
        ([3, 4], ["0", "O"], "O/0 (100%)"),
        ([0, 0], ["cat", "dog"], "dead"),
    ],
)
def test_auto_label(counts, names, expected):
    assert auto_label(counts, names) == expected


def test_max_cosine_to_parent_by_hand():
    w = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, -2.0]])
    parent = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert max_cosine_to_parent(w, parent, chunk=1).tolist() == pytest.approx([1.0, 1 / math.sqrt(2), 0.0])


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(3, 12),
    m=st.integers(1, 5),
    p=st.integers(1, 7),
    chunk=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_max_correlation_matches_numpy(n, m, p, chunk, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, m, generator=g) * (torch.rand(n, m, generator=g) < 0.6)
    y = torch.rand(n, p, generator=g) * (torch.rand(n, p, generator=g) < 0.6)
    got = max_correlation_to_parent(x.to_sparse(), y.to_sparse(), chunk=chunk)
    xs, ys = x.double().numpy(), y.double().numpy()
    for i in range(m):
        corrs = [
            np.corrcoef(xs[:, i], ys[:, j])[0, 1]
            for j in range(p)
            if xs[:, i].std() > 0 and ys[:, j].std() > 0
        ]
        if corrs:
            assert got[i].item() == pytest.approx(max(corrs), abs=1e-5)
        else:
            assert math.isnan(got[i])
