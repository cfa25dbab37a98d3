"""Meta gain: does a depth's meta-SAE find structure in its parent's rows that a meta-SAE of the same size
cannot find in rows without any? A label-free depth statistic.

A meta-SAE of w latents with k active per row explains some of any n rows, structured or not: on n random
unit rows in high dimension a k = 1, w = n / 2 dictionary explains about half (it merges rows in pairs). So
what a depth's meta-SAE explains of its parent's rows is compared with what a same-size meta-SAE, fitted
here (`fit_null`), explains of NULL_DRAWS sets of random unit rows of the same count and dimension. Both are
measured the same scale-free way (`support_explained`): each row projected on the span of the decoder rows
its code uses, so a meta-code's magnitude (1 in the analytic stacks, anything in a trained one) does not
count, only which latents it picks.

meta_gain = explained(parent rows) - mean(explained(null rows)); `meta_gain_z` divides it by the nulls'
standard deviation (at least Z_FLOOR). On a planted tree, depths up to L have sibling structure to find,
the roots do not: the deepest depth whose meta-SAE still beats the null is L (criterion
`deepest_meta_gain` of `metasae.statistics.optimal`, which says how large a z beats it).

On trained stacks that comparison is unfair twice (measured on config/synth.yaml, README): a trained
meta-SAE explains less than the null's alternating fit does, and random isotropic rows are easier to tell
from structure than a trained dictionary's rows are. `row_structure` compares like with like: the same
fitter on the parent rows and on ROW_NULL_DRAWS copies of them with each coordinate permuted across rows
(every coordinate keeps its values, the rows lose their joint geometry). It reads the parent rows only, so
it asks whether the stack's previous depth still holds structure to merge (`deepest_row_structure`, a plain
statistic of `metasae.statistics.optimal`: it passes the oracle but not the shuffled control, synth-summary's
statistics.csv). Only the planted-tree scoring computes it.
"""

from __future__ import annotations

import hashlib
import math
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

import metasae.sae.sparse_rows
from metasae.errors import MetasaeError
from metasae.io import read_json, write_json
from metasae.layout import META_CODES_FILE
from metasae.sae.sparse_rows import SparseRows
from metasae.seeds import generator
from metasae.stack import Depth

NULL_DRAWS = 5  # random row sets per depth: the null's mean and spread
# coordinate-permuted copies of the parent rows per depth (row_structure): with 5 a z's spread alone passed 2
# on a third of the oracle's independent L = 1 roots; with 20 no oracle depth is misread (README)
ROW_NULL_DRAWS = 20
NULL_ITERS = 30  # alternating steps of a null fit (rows are few: n <= a few hundred)
MAX_SUPPORT = 64  # meta-latents per parent row above which no gain is computed (depth_meta_gain)
Z_FLOOR = 1e-3  # the smallest null spread divided by (identical nulls would give an infinite z)


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def support_explained(rows: Tensor, dictionary: Tensor, codes: Tensor) -> float:
    """Share of the rows' squared norm in the span of the dictionary rows each row's code uses (codes
    [n, w] != 0; a row with an empty code explains nothing): sum ||P_S(i) x_i||^2 / sum ||x_i||^2."""
    rows, dictionary = rows.double(), dictionary.double()
    total = float(rows.pow(2).sum())
    if not total > 0:
        return math.nan
    supports = codes != 0
    sizes = supports.sum(1)
    explained = 0.0
    for size in sizes.unique().tolist():  # rows whose codes use `size` latents: one batched solve
        if size == 0:
            continue
        members = torch.nonzero(sizes == size).squeeze(1)
        columns = torch.nonzero(supports[members])[:, 1].view(-1, size)  # row-major: each row's latents
        bases = dictionary[columns].transpose(1, 2)  # [rows, d, size]
        coef = torch.linalg.lstsq(bases, rows[members].unsqueeze(2)).solution
        explained += float((bases @ coef).pow(2).sum())
    return explained / total


def tied_codes(rows: Tensor, decoder: Tensor, k: int) -> SparseRows:
    """A tied TopK code of the rows as its k (value, latent) pairs per row, so that a null fit's products cost
    n * k * d where dense [n, width] codes cost n * width * d (a real-study depth: 2,304 rows, 576 latents,
    k 4); a zero value is a latent the row does not use."""
    top = (rows @ decoder.T).topk(k, dim=1)
    return SparseRows(top.values.relu(), top.indices, len(decoder))


def fit_null(rows: Tensor, width: int, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """A TopK meta-SAE of `width` unit decoder rows with a tied encoder (codes: the k largest positive
    x . D_j), fitted to `rows` by alternating minimisation from `width` of the rows (seeded): codes for the
    decoder, then the least-squares decoder for the codes, NULL_ITERS times; a latent left unused restarts on
    the worst-explained row. For k = 1 this is spherical k-means, what a k = 1 meta-SAE converges to, and
    with no autograd it costs milliseconds: (decoder [width, d], codes [n, width])."""
    g = generator(seed, "meta-gain-null")
    rows = rows.double()
    k = max(1, min(k, width))
    decoder = rows[torch.randperm(len(rows), generator=g)[:width]]
    if len(decoder) < width:
        decoder = torch.cat([decoder, torch.randn(width - len(decoder), rows.shape[1], generator=g).double()])
    decoder = _unit(decoder)
    for _ in range(NULL_ITERS):
        codes = tied_codes(rows, decoder, k)
        fresh = least_squares_decoder(codes, rows)  # [width, d]
        unused = codes.usage() == 0
        worst = (rows - codes.product(decoder)).pow(2).sum(1).argsort(descending=True)
        fresh[unused] = rows[worst[: int(unused.sum())]]
        decoder = _unit(fresh)
    return decoder.float(), tied_codes(rows, decoder, k).dense().float()


def least_squares_decoder(codes: SparseRows, rows: Tensor) -> Tensor:
    """argmin_D ||codes @ D - rows||^2 ([width, d]) through the normal equations, summed from the codes'
    pairs (n * k * (k + d) products, where the dense [n, width] codes cost n * width * (width + d)). A ridge
    of 1e-9 of the mean diagonal keeps the system definite (an unused latent's row comes out 0 and
    restarts); the dense solve is the fallback if it is not."""
    gram, rhs = codes.gram(), codes.transposed_product(rows)
    ridge = 1e-9 * float(gram.diagonal().mean()) + 1e-300
    chol, info = torch.linalg.cholesky_ex(gram + ridge * torch.eye(codes.width, dtype=gram.dtype))
    if int(info) != 0:
        return torch.linalg.lstsq(codes.dense(), rows).solution
    return torch.cholesky_solve(rhs, chol)


@cache
def _null_code_digest() -> str:
    """The sha256 of the code a null's value depends on (this module and the sparse products it fits with):
    a memo written by other code is never read."""
    sha = hashlib.sha256()
    for module in (__file__, metasae.sae.sparse_rows.__file__):
        sha.update(Path(module).read_bytes())
    return sha.hexdigest()


def null_explained(
    n: int, d: int, width: int, k: int, seed: int, memo: Path | None = None
) -> tuple[float, ...]:
    """What a fitted same-size meta-SAE explains of NULL_DRAWS sets of n random unit rows in d dimensions.

    A function of its arguments only, so computed once per process for each, and, with a `memo` folder, once
    per study: the stacks of one classifier on its several probes share their nulls (in the real study 95
    null computations are 30 distinct ones, half of an analysis job's time). A memo file holds the values
    and the key they were computed under (the arguments, torch's version and thread count, which fix the
    summation order, and the code's digest), so a read returns exactly what a fresh computation would."""
    if memo is None:
        return _null_explained(n, d, width, k, seed)
    key = {
        "n": n,
        "d": d,
        "width": width,
        "k": k,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "code": _null_code_digest(),
    }
    path = Path(memo) / f"{hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:32]}.json"
    if path.is_file():
        try:
            stored = read_json(path)
        except MetasaeError:
            stored = {}  # a damaged memo is recomputed and rewritten
        if stored.get("key") == key:
            return tuple(stored["explained"])
    out = _null_explained(n, d, width, k, seed)
    write_json(path, {"key": key, "explained": list(out)})
    return out


@cache
def _null_explained(n: int, d: int, width: int, k: int, seed: int) -> tuple[float, ...]:
    out = []
    for draw in range(NULL_DRAWS):
        rows = _unit(torch.randn(n, d, generator=generator(seed, f"meta-gain-rows-{draw}")))
        decoder, codes = fit_null(rows, width, k, seed + draw)
        out.append(support_explained(rows, decoder, codes))
    return tuple(out)


def row_structure(parent_rows: Tensor, width: int, k: int, seed: int) -> dict:
    """What a same-size alternating fit explains of the parent's unit rows minus its mean over
    coordinate-permuted copies of them (`row_structure`), and that in the copies' standard deviations."""
    rows = _unit(parent_rows.double())
    fitted = support_explained(rows, *fit_null(rows, width, k, seed))
    nulls = []
    for draw in range(ROW_NULL_DRAWS):
        g = generator(seed, f"row-structure-{draw}")
        permuted = torch.stack([col[torch.randperm(len(col), generator=g)] for col in rows.T], 1)
        permuted = _unit(permuted)
        nulls.append(support_explained(permuted, *fit_null(permuted, width, k, seed + 1 + draw)))
    null = torch.tensor(nulls)
    gain = fitted - float(null.mean())
    return {"row_structure": gain, "row_structure_z": gain / max(float(null.std()), Z_FLOOR)}


def meta_gain(
    parent_rows: Tensor,
    rows: Tensor,
    meta_codes: Tensor,
    seed: int,
    with_row_structure: bool = False,
    memo: Path | None = None,
) -> dict:
    """The gain of one depth's meta-SAE (its activation-space rows [w, d] and meta-codes [n, w] of the
    parent's n rows [n, d]) over the null of the module docstring, with k = the meta-codes' mean support
    (rounded, at least 1); with `with_row_structure` also `row_structure` at that width and k. `memo`: the
    folder of `null_explained`'s memo."""
    parent_rows = _unit(parent_rows.float())
    explained = support_explained(parent_rows, _unit(rows.float()), meta_codes)
    k = max(1, round(float((meta_codes != 0).sum(1).double().mean())))
    null = torch.tensor(null_explained(len(parent_rows), parent_rows.shape[1], len(rows), k, seed, memo))
    gain = explained - float(null.mean())
    return {
        "meta_explained": explained,
        "meta_null_explained": float(null.mean()),
        "meta_gain": gain,
        "meta_gain_z": gain / max(float(null.std()), Z_FLOOR),
        **(row_structure(parent_rows, len(rows), k, seed) if with_row_structure else {}),
    }


def depth_meta_gain(depth: Depth, with_row_structure: bool = False, memo: Path | None = None) -> dict:
    """The meta gain of a trained depth >= 2 on its parent's layer-space rows (`Depth.directions`), the null
    seeded by the depth's own seed; empty at depth 1, without meta-codes, and where the meta-codes use more
    than MAX_SUPPORT latents per row (a dense ReLU meta-code: its span is most of the space, and the solves
    grow with it). `with_row_structure` adds `row_structure`: the planted-tree scoring asks for it, the
    analyse stage does not (six more fits, 13 s on a real-study depth of 2,304 rows, for a statistic that is
    no criterion). `memo`: the folder of `null_explained`'s memo."""
    if depth.parent is None or depth.stopped or META_CODES_FILE not in depth.checksums:
        return {}
    meta_codes = depth.meta_codes.to_dense()
    if float((meta_codes != 0).sum(1).double().mean()) > MAX_SUPPORT:
        return {}
    seed = int(depth.cfg.get("seed", 0))
    return meta_gain(
        depth.parent.directions(), depth.directions(), meta_codes, seed, with_row_structure, memo
    )
