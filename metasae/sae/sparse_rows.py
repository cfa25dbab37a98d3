"""Rows of a sparse matrix as s (value, column) pairs each: an SAE's codes as the next SAE's input.

A TopK code row holds k non-zeros of its width (a real-study depth 1: 48 of 2,304), so products with it cost
n * k * d where the dense rows cost n * width * d, and 60,000 rows take 23 MB instead of 0.55 GB. A row with
fewer non-zeros (a ReLU'd zero, a BatchTopK row) is padded with zero values, which every product ignores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from metasae.errors import MetasaeError

GRAM_CHUNK_PAIRS = 1 << 20  # pair products per chunk of SparseRows.gram (16 MiB of cells and products)


def group_by_latent(idx: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """(order, offsets): idx[order] ascending and offsets[j] = first position of latent j in it. Computed once
    per step and shared by the encoder's and the decoder's backward; searchsorted, as bincount would make a
    GPU wait for the host."""
    sorted_idx, order = torch.sort(idx)
    return order, torch.searchsorted(sorted_idx, torch.arange(width, device=idx.device))


def per_latent_sum(by_latent: tuple[Tensor, Tensor], rows: Tensor, weights: Tensor, source: Tensor) -> Tensor:
    """out[j] = sum over pairs (r, j) of weights * source[r]  -> [width, source.shape[1]], without an
    [nnz, d] intermediate: the pairs, grouped by latent, are summed as embedding bags."""
    order, offsets = by_latent
    return F.embedding_bag(rows[order], source, offsets, per_sample_weights=weights[order], mode="sum")


def _slots(rows: Tensor, cols: Tensor, n: int) -> tuple[tuple[Tensor, Tensor], Tensor]:
    """For row-major (row, col) pairs: each pair's (row, slot) in rows padded to the fullest row's count,
    and the padded columns [n, slots] (0 where padding)."""
    counts = torch.bincount(rows, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    slots = (rows, torch.arange(len(rows), device=rows.device) - starts[rows])
    idx = torch.zeros(n, int(counts.max()) if len(rows) else 0, dtype=torch.long, device=rows.device)
    idx[slots] = cols
    return slots, idx


@dataclass(frozen=True)
class SparseRows:
    """vals [n, s] and idx [n, s] (columns, distinct within a row where vals are non-zero) of an [n, width]
    matrix."""

    vals: Tensor
    idx: Tensor
    width: int

    @classmethod
    def from_sparse(cls, x: Tensor) -> SparseRows:
        """From a sparse COO [n, width] tensor; rows are padded to the fullest row's count."""
        x = x.coalesce()
        rows, cols = x.indices()
        slots, idx = _slots(rows, cols, len(x))
        vals = x.values().new_zeros(idx.shape)
        vals[slots] = x.values()
        return cls(vals, idx, x.shape[1])

    @classmethod
    def from_dense(cls, x: Tensor) -> SparseRows:
        """The non-zeros of a dense [n, width] tensor (codes), differentiable in x: an SAE stacked on another
        then encodes from them (feature visualisation takes gradients through the stack)."""
        rows, cols = x.detach().nonzero(as_tuple=True)
        slots, idx = _slots(rows, cols, len(x))
        kept = torch.zeros(idx.shape, dtype=torch.bool, device=x.device)
        kept[slots] = True
        return cls(torch.where(kept, x.gather(1, idx), 0.0), idx, x.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.vals), self.width

    def __len__(self) -> int:
        return len(self.vals)

    def select(self, index: Tensor | slice) -> SparseRows:
        return SparseRows(self.vals[index], self.idx[index], self.width)

    def scaled(self, factor: float) -> SparseRows:
        return SparseRows(self.vals / factor, self.idx, self.width)

    def to(self, device: torch.device | str) -> SparseRows:
        return SparseRows(self.vals.to(device), self.idx.to(device), self.width)

    def check_finite(self) -> None:
        bad = (~torch.isfinite(self.vals)).any(1).nonzero().flatten()
        if len(bad):
            raise MetasaeError(f"training data row {int(bad[0])} contains NaN/inf ({len(bad)} bad rows)")

    def row_sq_norms(self) -> Tensor:
        return self.vals.pow(2).sum(1)

    def dense(self) -> Tensor:
        return self.vals.new_zeros(len(self.vals), self.width).scatter_add_(1, self.idx, self.vals)

    def product(self, weight: Tensor) -> Tensor:
        """rows @ weight ([n, weight.shape[1]]) as an embedding bag over weight's rows; differentiable in
        weight and vals."""
        if self.vals.shape[1] == 0:
            return weight.new_zeros(len(self), weight.shape[1])
        return F.embedding_bag(self.idx, weight, per_sample_weights=self.vals, mode="sum")

    def transposed_product(self, source: Tensor) -> Tensor:
        """rows.T @ source [width, d]: each column's rows summed as an embedding bag (no [n, s, d] copy)."""
        idx = self.idx.flatten()
        rows = torch.arange(len(self.idx), device=idx.device).repeat_interleave(self.idx.shape[1])
        return per_latent_sum(group_by_latent(idx, self.width), rows, self.vals.flatten(), source)

    def usage(self) -> Tensor:
        """Each column's summed value [width]."""
        return self.vals.new_zeros(self.width).index_add_(0, self.idx.flatten(), self.vals.flatten())

    def gram(self) -> Tensor:
        """rows.T @ rows [width, width]: each row's s^2 pair products summed into their cells, in row chunks
        of at most GRAM_CHUNK_PAIRS products (s up to 64 over many rows would otherwise hold n * s^2 cells and
        products at once)."""
        width = self.width
        out = self.vals.new_zeros(width * width)
        step = max(1, GRAM_CHUNK_PAIRS // max(1, self.idx.shape[1]) ** 2)
        for start in range(0, len(self.idx), step):
            idx, vals = self.idx[start : start + step], self.vals[start : start + step]
            cells = (idx.unsqueeze(2) * width + idx.unsqueeze(1)).flatten()
            out.index_add_(0, cells, (vals.unsqueeze(2) * vals.unsqueeze(1)).flatten())
        return out.view(width, width)


def take_rows(x: Tensor | SparseRows, index: Tensor | slice) -> Tensor | SparseRows:
    """Rows of a dense tensor or of sparse rows, in the same form."""
    return x.select(index) if isinstance(x, SparseRows) else x[index]


def as_dense(x: Tensor | SparseRows) -> Tensor:
    return x.dense() if isinstance(x, SparseRows) else x
