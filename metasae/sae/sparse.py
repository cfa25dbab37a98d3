"""Sparse encode/decode for selection SAEs (TopK, BatchTopK): no dense batch x width gradients.

A selection SAE keeps only a few latents per example, so after the one unavoidable encoder matmul every
other product touches just the selected (row, latent) pairs: decoding is an `embedding_bag` over decoder rows,
the gradient of the pairs' values a sampled matmul (SDDMM) over them, and the weights' gradients per-latent
sums (idea from EleutherAI/sparsify's fused encoder).
Pairs are kept row-major (`rows` ascending) with `offsets[b]` = first pair of row b, which is exactly what
`F.embedding_bag` takes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from metasae.errors import MetasaeError
from metasae.sae.encoder import encoder_product, encoder_weight
from metasae.sae.sparse_rows import SparseRows, group_by_latent, per_latent_sum


@dataclass
class Selection:
    """Selected (row, latent) pairs of a batch, row-major, with their ReLU'd pre-activations."""

    rows: Tensor  # int64 [nnz], ascending
    idx: Tensor  # int64 [nnz], latent of each pair
    vals: Tensor  # [nnz], differentiable
    batch: int
    per_row: int | None  # pairs per row when every row has the same number (TopK), else None
    # (pair order grouping latents, first pair of each latent); None: selected by autograd's own ops
    # (a small batch, see SMALL_BATCH_ELEMENTS), and decoded by them too
    by_latent: tuple[Tensor, Tensor] | None

    @property
    def offsets(self) -> Tensor:
        """First pair of each row; searchsorted rather than bincount, which makes a GPU wait for the host."""
        starts = torch.arange(self.batch, device=self.rows.device)
        return starts * self.per_row if self.per_row is not None else torch.searchsorted(self.rows, starts)


# On a CPU the encoder runs in row chunks of about this many pre-activations (16 MiB in fp32; measured best
# here among 4-32 MiB): selecting from a chunk still in cache is far cheaper than from the whole [B, width]
# matrix in DRAM, and 512-row GEMMs run as fast as one whole one. A GPU takes the batch in one piece.
CPU_CHUNK_ELEMENTS = 1 << 22


def row_chunk(batch: int, width: int, device: torch.device) -> int:
    """Rows per chunk: about CPU_CHUNK_ELEMENTS values of `width` each on a CPU, all on a GPU."""
    return max(1, batch if device.type != "cpu" else min(batch, CPU_CHUNK_ELEMENTS // width))


BLOCK = 32
# torch.topk's CPU cost per row jumps from k 32 to k 48 (3.3 ms, then 5.9 ms at [256, 2304] on this
# project's AVX2 EPYC); above this k, row_topk falls back to 8-column blocks where 32-column ones are too
# few for the trick.
SMALL_BLOCK, SMALL_BLOCK_MIN_K = 8, 33


def topk_block(cols: int, k: int) -> int | None:
    """The block width row_topk selects by, or None for a plain torch.topk: the trick needs >= 4k blocks."""
    if cols % BLOCK == 0 and cols // BLOCK >= 4 * k:
        return BLOCK
    if k >= SMALL_BLOCK_MIN_K and cols % SMALL_BLOCK == 0 and cols // SMALL_BLOCK >= 4 * k:
        return SMALL_BLOCK
    return None


def row_topk(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each row's k largest values and their columns, unsorted.

    On a CPU torch.topk costs ~10 ns per element, as much as a third of the encoder matmul. The k largest
    values of a row lie in the k blocks of columns with the largest maxima (any value outside them has k
    larger block maxima above it), so select those blocks first, then the k largest of their columns: exact,
    and ~25% cheaper at 8192 columns (32-column blocks), ~35% at 2304 columns and k 48 (8-column blocks).
    """
    rows, cols = pre.shape
    block = topk_block(cols, k) if pre.device.type == "cpu" else None
    if block is None:
        return pre.topk(k, dim=1, sorted=False)
    n_blocks = cols // block
    top_blocks = pre.view(rows, n_blocks, block).amax(-1).topk(k, dim=1, sorted=False).indices
    flat_blocks = (top_blocks + n_blocks * torch.arange(rows, device=pre.device)[:, None]).reshape(-1)
    # whole blocks by index_select (a copy per block): cheaper than an element-wise gather
    candidates = pre.reshape(-1, block).index_select(0, flat_blocks).view(rows, k * block)
    vals, pos = candidates.topk(k, dim=1, sorted=False)
    return vals, top_blocks.gather(1, pos // block) * block + pos % block


class Selector:
    """Chooses (row, latent) pairs from pre-activations that arrive in consecutive row chunks (`take`), so
    the batch's full [B, width] pre-activations never exist at once; `pairs` then returns them row-major."""

    def take(self, pre: Tensor) -> None:
        """The next rows' pre-activations. On a CPU `pre` is a buffer reused by the next chunk: keep
        copies."""
        raise NotImplementedError

    def pairs(self, full_rows: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(rows ascending, latents, pre-activations); `full_rows(r)` recomputes the pre-activations of
        rows r."""
        raise NotImplementedError

    def per_row(self) -> int | None:
        """Pairs per row when every row gets the same number (known before the pairs are), else None."""
        return None

    def select(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The whole batch at once (small inputs, tests)."""
        self.take(pre)
        return self.pairs(lambda r: pre[r])


class RowTopK(Selector):
    """Each row's k largest pre-activations (TopK), optionally among `columns` only (AuxK's dead latents), or
    ranked by pre-activation + `rank_bias` [width]: a training-time bias that moves which latents fire, not
    the values they fire with (the trainer's firing balance, TrainConfig.balance_fraction)."""

    def __init__(self, k: int, columns: Tensor | None = None, rank_bias: Tensor | None = None) -> None:
        if columns is not None and rank_bias is not None:
            raise ValueError("RowTopK: rank_bias covers every column; give columns or rank_bias, not both")
        self.k, self.columns, self.rank_bias = k, columns, rank_bias
        self.vals: list[Tensor] = []
        self.idx: list[Tensor] = []

    def take(self, pre: Tensor) -> None:
        source = pre if self.columns is None else pre[:, self.columns]
        k = min(self.k, source.shape[1])
        if self.rank_bias is None:
            vals, idx = row_topk(source, k)
        else:
            idx = row_topk(source + self.rank_bias, k)[1]
            vals = source.gather(1, idx)
        self.vals.append(vals)
        self.idx.append(idx if self.columns is None else self.columns[idx])

    def per_row(self) -> int | None:
        return self.vals[0].shape[1] if self.vals else None

    def pairs(self, full_rows: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        vals, idx = torch.cat(self.vals), torch.cat(self.idx)
        rows = torch.arange(vals.shape[0], device=vals.device).repeat_interleave(vals.shape[1])
        return rows, idx.reshape(-1), vals.reshape(-1)


def _kth_largest(values: Tensor, n: int) -> Tensor:
    return values.reshape(-1).kthvalue(values.numel() - n + 1).values


def _block_maxima(pre: Tensor) -> Tensor | None:
    """[rows, cols/32] maxima of the rows' 32-column blocks; None when the columns don't split into blocks."""
    rows, cols = pre.shape
    return None if cols % BLOCK else pre.view(rows, cols // BLOCK, BLOCK).amax(-1)


def _floor_for(pre: Tensor, maxima: Tensor | None, n: int) -> float:
    """A value with at least n of `pre` at or above it, found cheaply: the n-th largest block maximum (n
    blocks each hold a value >= it), which overshoots n by only ~10% at SAE sparsities."""
    if n > pre.numel():
        return -math.inf
    return float(_kth_largest(pre if maxima is None or n > maxima.numel() else maxima, n))


@dataclass
class _Pool:
    """The positive pre-activations >= `floor` of the batch rows start..start+n_rows, row-major."""

    start: int
    n_rows: int
    floor: float
    rows: Tensor
    idx: Tensor
    vals: Tensor

    @classmethod
    def above(cls, pre: Tensor, start: int, floor: float, maxima: Tensor | None) -> _Pool:
        """Only blocks whose maximum clears the floor are searched (a sixth of them at SAE sparsities), so the
        chunk is read once, by the block maxima, rather than compared and scanned whole."""

        def cleared(t: Tensor) -> Tensor:
            return t >= floor if floor > 0 else t > 0

        if maxima is None:
            rows, idx = cleared(pre).nonzero(as_tuple=True)
            vals = pre[rows, idx]
        else:
            block_rows, blocks = cleared(maxima).nonzero(as_tuple=True)
            candidates = pre.view(-1, BLOCK).index_select(0, block_rows * maxima.shape[1] + blocks)
            j, col = cleared(candidates).nonzero(as_tuple=True)
            rows, idx, vals = block_rows[j], blocks[j] * BLOCK + col, candidates[j, col]
        return cls(start, len(pre), max(floor, 0.0), rows + start, idx, vals)


class _PoolingSelector(Selector):
    """Keeps, per CPU chunk, a _Pool of its values above some floor; the pools concatenate row-major."""

    def __init__(self) -> None:
        self.pools: list[_Pool] = []

    def _next_rows(self) -> int:
        return self.pools[-1].start + self.pools[-1].n_rows if self.pools else 0

    def _checked_maxima(self, pre: Tensor) -> Tensor | None:
        """The chunk's block maxima, refusing NaN: a floor would silently drop it, where topk or relu keep
        it."""
        maxima = _block_maxima(pre)
        if bool((pre if maxima is None else maxima).isnan().any()):
            raise MetasaeError(
                f"{type(self).__name__}: NaN pre-activations (the encoder's weights or inputs are not finite)"
            )
        return maxima

    def _pooled(self) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(
            torch.cat([getattr(pool, name) for pool in self.pools]) for name in ("rows", "idx", "vals")
        )


class TooDense(Exception):
    """A Positive selector met a chunk denser than allowed: dense ops are the faster way for this batch."""


class Positive(_PoolingSelector):
    """Every positive pre-activation (ReLU's codes). Raises TooDense on the first chunk whose positives
    exceed `max_density` of it, so the caller falls back to dense ops having spent one chunk, not a pass."""

    def __init__(self, max_density: float) -> None:
        super().__init__()
        self.max_density = max_density

    def take(self, pre: Tensor) -> None:
        if len(pre) >= 256 and float((pre[::16] > 0).float().mean()) > 2 * self.max_density:  # plainly dense:
            # spare the block maxima and the pooling (16+ sampled rows: fewer would misjudge)
            raise TooDense("a sample of the chunk's rows is dense")
        pool = _Pool.above(pre, self._next_rows(), 0.0, self._checked_maxima(pre))
        if len(pool.vals) > self.max_density * pre.numel():
            raise TooDense(f"{len(pool.vals)} of {pre.numel()} pre-activations positive")
        self.pools.append(pool)

    def pairs(self, full_rows: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        return self._pooled()


class BatchTopK(_PoolingSelector):
    """The k*B largest positive pre-activations of the whole batch (BatchTopK), exactly.

    On a GPU the batch arrives whole and one flat top-(k*B) is fastest. On a CPU it arrives in chunks, and
    each chunk pools its values at or above a floor under which lie all but about POOL_MARGIN*k per row (the
    first chunk's floor serves the next while it pools between POOL_BAND k per row); a mask is far cheaper
    than a top-k per row. tau is the (k*B)-th largest pooled value. The pool holds every value >= tau when
    no chunk's floor lies above tau, and then tau is exact; a chunk whose floor does is recomputed with
    floor tau, once: more pooled values can only raise tau, so every floor is then <= it.
    """

    POOL_MARGIN = 1.5
    POOL_BAND = (1.25, 4.0)

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.width = 0
        self.whole: Tensor | None = None

    def take(self, pre: Tensor) -> None:
        self.width = pre.shape[1]
        if pre.device.type != "cpu":
            assert self.whole is None, "a GPU takes the batch in one chunk (row_chunk)"
            self.whole = pre
            return
        start, maxima = self._next_rows(), self._checked_maxima(pre)
        want, (low, high) = self.k * len(pre), self.POOL_BAND
        pool = _Pool.above(pre, start, self.pools[-1].floor, maxima) if self.pools else None
        if (
            pool is None
            or not (low * want <= len(pool.vals) or pool.floor == 0)
            or len(pool.vals) > high * want
        ):
            pool = _Pool.above(
                pre, start, _floor_for(pre, maxima, math.ceil(self.POOL_MARGIN * want)), maxima
            )
        self.pools.append(pool)

    def _flat_pairs(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        vals, flat = pre.reshape(-1).topk(min(self.k * len(pre), pre.numel()), sorted=False)
        positive = vals > 0
        flat, order = flat[positive].sort()  # flat index order is row-major order
        return flat // self.width, flat % self.width, vals[positive][order]

    def _tau(self, n_keep: int) -> float:
        """The n_keep-th largest pooled value; 0 (keep every positive value) when fewer are pooled."""
        vals = torch.cat([pool.vals for pool in self.pools])
        return float(_kth_largest(vals, n_keep)) if len(vals) >= n_keep else 0.0

    @staticmethod
    def _recomputed(pool: _Pool, floor: float, full_rows: Callable[[Tensor], Tensor]) -> _Pool:
        pre = full_rows(torch.arange(pool.start, pool.start + pool.n_rows))
        return _Pool.above(pre, pool.start, floor, _block_maxima(pre))

    def pairs(self, full_rows: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        if self.whole is not None:
            return self._flat_pairs(self.whole)
        batch = sum(pool.n_rows for pool in self.pools)
        n_keep = self.k * batch
        tau = self._tau(n_keep)
        if any(pool.floor > tau for pool in self.pools):
            self.pools = [
                pool if pool.floor <= tau else self._recomputed(pool, tau, full_rows) for pool in self.pools
            ]
            tau = self._tau(n_keep)
        rows, idx, vals = self._pooled()
        kept = (vals >= tau).nonzero().view(-1)
        return rows.index_select(0, kept), idx.index_select(0, kept), vals.index_select(0, kept)


_PER_SELECTION = 5  # outputs of _SparseEncode per selector: rows, idx, vals, and the by-latent grouping


def _dense_input_product(x_c: Tensor, W_enc: Tensor, b_enc: Tensor) -> Callable[..., Tensor]:
    """pre(rows): the pre-activations of rows of x_c (already minus b_dec). The forward pass's chunks share
    one warm buffer (`reuse`: the selectors copy what they keep); a recomputation gets its own."""
    W = encoder_weight(W_enc)
    buffer = x_c.new_empty(min(row_chunk(len(x_c), W.shape[1], x_c.device), len(x_c)), W.shape[1])
    low_buffer = None if W is W_enc else torch.empty_like(buffer, dtype=W.dtype)

    def pre(rows: slice | Tensor, reuse: bool = True) -> Tensor:
        chunk = x_c[rows]
        if not reuse:
            return encoder_product(chunk, W, b_enc)
        used = slice(0, len(chunk))
        low = None if low_buffer is None else low_buffer[used]
        return encoder_product(chunk, W, b_enc, buffer[used], low)

    return pre


def _sparse_input_product(
    x: SparseRows, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor
) -> Callable[..., Tensor]:
    """pre(rows) for sparse input rows (a parent SAE's codes): (x - b_dec) @ W_enc + b_enc computed as
    x @ W_enc + (b_enc - b_dec @ W_enc), a product over x's non-zeros only, in full precision (cheap)."""
    with torch.autocast(W_enc.device.type, enabled=False):
        bias = b_enc - b_dec @ W_enc if b_dec is not None else b_enc
    W = W_enc.contiguous()  # the bag gathers W_enc's rows: strided (a transposed init's) they cost 20x

    def pre(rows: slice | Tensor, reuse: bool = True) -> Tensor:
        with torch.autocast(W_enc.device.type, enabled=False):
            return x.select(rows).product(W).add_(bias)

    return pre


class _SparseEncode(torch.autograd.Function):
    """pre = (x - b_dec) @ W_enc + b_enc; returns ReLU(pre) at the selected pairs of each selector. Under
    autocast the encoder product runs in its dtype; selection, values and gradients stay in full precision."""

    @staticmethod
    def forward(ctx, x, b_dec, W_enc, b_enc, selectors):
        if isinstance(x, SparseRows):
            chunk_pre, x_c = _sparse_input_product(x, b_dec, W_enc, b_enc), None
        else:
            x_c = x - b_dec if b_dec is not None else x
            chunk_pre = _dense_input_product(x_c, W_enc, b_enc)
        step = row_chunk(len(x), W_enc.shape[1], W_enc.device)
        for start in range(0, len(x), step):
            pre = chunk_pre(slice(start, start + step))
            for selector in selectors:
                selector.take(pre)  # selectors copy what they keep
        outs: list[Tensor] = []
        for selector in selectors:
            rows, idx, vals = selector.pairs(lambda r: chunk_pre(r, reuse=False))
            outs += [rows, idx, vals.relu(), *group_by_latent(idx, W_enc.shape[1])]
        ctx.save_for_backward(*([] if x_c is None else [x_c]), W_enc, *outs)
        ctx.sparse_x, ctx.has_b_dec = x if x_c is None else None, b_dec is not None
        ctx.saved_b_dec = b_dec if x_c is None else None  # the sparse input's W_enc gradient needs it
        ctx.mark_non_differentiable(*[t for i, t in enumerate(outs) if i % _PER_SELECTION != 2])
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        sparse_x = ctx.sparse_x
        x_c, W_enc, *outs = (None, *ctx.saved_tensors) if sparse_x is not None else ctx.saved_tensors
        n = _PER_SELECTION
        rows, idx, vals = (torch.cat(outs[i::n]) for i in range(3))
        g = torch.cat(
            [
                gr if gr is not None else torch.zeros_like(v)
                for gr, v in zip(grads[2::n], outs[2::n], strict=True)
            ]
        )
        g = g * (vals > 0)
        width = W_enc.shape[1]
        grad_b_enc = torch.zeros(width, dtype=g.dtype, device=g.device).index_add_(0, idx, g)
        grad_W_enc = None
        if ctx.needs_input_grad[2] and sparse_x is not None:
            # x.T @ G over the input's non-zeros, G the pairs' gradients dense [B, width] (small: one batch)
            pair_grads = g.new_zeros(len(sparse_x), width).index_put_((rows, idx), g, accumulate=True)
            grad_W_enc = sparse_x.transposed_product(pair_grads)
            if ctx.has_b_dec:
                grad_W_enc -= ctx.saved_b_dec[:, None] * grad_b_enc
            grad_W_enc = torch.empty_like(W_enc).copy_(
                grad_W_enc
            )  # in W_enc's layout: Adam's reads stay linear
        elif ctx.needs_input_grad[2]:
            by_latent = (outs[3], outs[4]) if len(outs) == n else group_by_latent(idx, width)
            grad_W_enc = per_latent_sum(by_latent, rows, g, x_c).t()
        grad_x = grad_b_dec = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x_c).index_add_(0, rows, W_enc.t()[idx] * g[:, None])
        if ctx.has_b_dec and ctx.needs_input_grad[1]:
            # sum over the batch of -dL/dx_c, computed from per-latent sums: never per row.
            grad_b_dec = -(W_enc @ grad_b_enc)
        return grad_x, grad_b_dec, grad_W_enc, grad_b_enc, None


# At most this many pre-activations per batch (on a CPU, autocast off), the pairs are selected from the whole
# [B, width] pre-activations by autograd's own ops: the custom functions' Python backward then costs more than
# the dense products it saves (planted trees' SAEs, meta-SAEs on a few hundred decoder rows; README, Speed).
SMALL_BATCH_ELEMENTS = 1 << 13


def _is_small(x: Tensor | SparseRows, W_enc: Tensor) -> bool:
    return (
        W_enc.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
        and x.shape[0] * W_enc.shape[1] <= SMALL_BATCH_ELEMENTS
    )


def _autograd_encode(
    x: Tensor | SparseRows, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor, selectors: list[Selector]
) -> list[Selection]:
    """sparse_encode of a small batch: the same pairs, selected from the whole pre-activation matrix, their
    values gathered from it with their gradient."""
    dense = x.dense() if isinstance(x, SparseRows) else x
    pre = torch.addmm(b_enc, dense - b_dec if b_dec is not None else dense, W_enc)
    selections = []
    for selector in selectors:
        rows, idx, _ = selector.select(pre.detach())
        selections.append(Selection(rows, idx, pre[rows, idx].relu(), len(dense), selector.per_row(), None))
    return selections


def sparse_encode(
    x: Tensor | SparseRows, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor, selectors: list[Selector]
) -> list[Selection]:
    """One encoder matmul, one Selection per selector (e.g. the main codes and the AuxK codes); each selector
    is used once. Sparse input rows get no gradient."""
    if _is_small(x, W_enc):
        return _autograd_encode(x, b_dec, W_enc, b_enc, selectors)
    outs = _SparseEncode.apply(x, b_dec, W_enc, b_enc, tuple(selectors))
    n = _PER_SELECTION
    return [
        Selection(
            *outs[n * i : n * i + 3], x.shape[0], selector.per_row(), (outs[n * i + 3], outs[n * i + 4])
        )
        for i, selector in enumerate(selectors)
    ]


# A GPU gathers the pairs' rows in pieces of this many values (256 MiB in fp32 per gathered operand), so
# that an LLM-sized batch (8192 x 32 pairs of 768) does not hold two 0.8 GB gathers at once.
GPU_PAIR_CHUNK_ELEMENTS = 1 << 26


def _gathered_pair_dots(W_dec: Tensor, idx: Tensor, grad_out: Tensor, rows: Tensor) -> Tensor:
    """_pair_dots by gathering both operands' rows, piece by piece (the GPU's path)."""
    out = W_dec.new_empty(len(idx))
    step = max(1, GPU_PAIR_CHUNK_ELEMENTS // W_dec.shape[1])
    for start in range(0, len(idx), step):
        part = slice(start, start + step)
        torch.sum(
            W_dec.index_select(0, idx[part]).mul_(grad_out.index_select(0, rows[part])), 1, out=out[part]
        )
    return out


def _pair_dots(W_dec: Tensor, idx: Tensor, grad_out: Tensor, rows: Tensor, offsets: Tensor) -> Tensor:
    """<W_dec[idx[p]], grad_out[rows[p]]> for every pair p. On a CPU one sampled matmul (SDDMM) over the
    pairs' CSR pattern (row-major pairs and their row offsets are one), 3x faster than gathering the
    [nnz, d_in] rows through DRAM; a GPU gathers, as torch's CUDA SDDMM is not yet checked here."""
    if W_dec.device.type != "cpu":
        return _gathered_pair_dots(W_dec, idx, grad_out, rows)
    crow = torch.cat([offsets, offsets.new_tensor([len(idx)])])
    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow, idx, W_dec.new_zeros(len(idx)), (len(grad_out), len(W_dec)), check_invariants=False
        )  # true by construction; checking costs a pass
        return torch.sparse.sampled_addmm(pattern, grad_out, W_dec.t(), beta=0.0).values()


class _SparseDecode(torch.autograd.Function):
    """x_hat[b] = sum over b's pairs of vals * W_dec[idx]."""

    @staticmethod
    def forward(ctx, rows, idx, vals, offsets, W_dec, by_latent):
        ctx.save_for_backward(rows, idx, vals, offsets, W_dec, *by_latent)
        return F.embedding_bag(idx, W_dec, offsets, per_sample_weights=vals, mode="sum")

    @staticmethod
    def backward(ctx, grad_out):
        rows, idx, vals, offsets, W_dec, *by_latent = ctx.saved_tensors
        grad_vals = grad_W_dec = None
        if ctx.needs_input_grad[2]:
            grad_vals = _pair_dots(W_dec, idx, grad_out, rows, offsets)
        if ctx.needs_input_grad[4]:
            grad_W_dec = per_latent_sum(tuple(by_latent), rows, vals, grad_out)
        return None, None, grad_vals, None, grad_W_dec, None


def sparse_decode(sel: Selection, W_dec: Tensor) -> Tensor:
    """Reconstruction without bias, [B, d_in]; gradients reach sel.vals and W_dec only through the pairs."""
    if sel.idx.numel() == 0:
        return W_dec.new_zeros(sel.batch, W_dec.shape[1]) + 0 * W_dec.sum()
    if sel.by_latent is None:  # a small batch's pairs (_autograd_encode): a dense code and one matmul
        return W_dec.new_zeros(sel.batch, len(W_dec)).index_put((sel.rows, sel.idx), sel.vals) @ W_dec
    return _SparseDecode.apply(sel.rows, sel.idx, sel.vals, sel.offsets, W_dec, sel.by_latent)
