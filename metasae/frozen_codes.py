"""Image-level codes of a `decoder`-mode depth d >= 2 read off its own frozen dictionary.

Why: routing an image's code through the meta-codes (code_d = code_{d-1} @ C_d) multiplies L0 by about the
meta-SAE's k per depth while the width shrinks, so from depth 2-3 most of the dictionary is active on every
image and the layer rebuilt from those codes is worse than the mean. Yet depth d's meta-SAE decoder rows D_d
are unit directions in its parent's decoder-row space, which is the cached layer's space (every decoder-mode
depth trains on rows of width d_in), so they can encode an image directly:

- `fit_frozen_encoder`: TopK at depth 1's L0 with D_d frozen: W_enc and b_enc learnt by a short seeded Adam
  fit on the activations depth 1 trained on, depth 1's b_dec frozen as pre-encoder and output bias,
  x ~ b_dec + TopK(W_enc^T (x - b_dec) + b_enc) @ D_d. Its codes are the depth's image codes (`frozen_topk`).
  The k chosen latents keep their excess over the (k+1)-th pre-activation (`topk_shifted`), so every image
  has exactly k non-zeros: a ReLU after TopK zeroes the chosen pre-activations that are negative, and on the
  default's low-rank layers that left 37-77 of k 96 (measured), so depths would not compare at one L0.
- `pursuit_codes`: the reference an encoder is judged against, non-negative orthogonal matching pursuit at the
  same L0 (greedy and slow: a subset of images).
- `strongest_routed`: the cheap variant, each parent latent routed to its strongest meta-latent only (it
  keeps depth d-1's L0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from metasae.codes import save_codes
from metasae.errors import MetasaeError
from metasae.io import load_tensors, save_tensors
from metasae.layout import FROZEN_CODES_FILE, FROZEN_ENCODER_FILE
from metasae.metrics import fvu
from metasae.optim import Adam
from metasae.seeds import generator

CODES_USED = ("frozen_topk", "own", "routed")  # summary.json `codes_used`: what the image statistics read
FIT_STEPS = 300
FIT_BATCH = 256
FIT_LR = 1e-3
PURSUIT_ROWS = 256  # images the pursuit reference encodes (it solves k least-squares problems per image)


@dataclass
class FrozenEncoder:
    """A TopK encoder onto a fixed dictionary [m, d_in] (unit rows) with a fixed bias b_dec [d_in]."""

    W_enc: Tensor  # [d_in, m]  # noqa: N815 (the SAE's names)
    b_enc: Tensor  # [m]
    b_dec: Tensor  # [d_in]
    dictionary: Tensor  # [m, d_in]
    k: int

    @classmethod
    def initial(cls, dictionary: Tensor, b_dec: Tensor, k: int) -> FrozenEncoder:
        """The fit's starting point: each latent reads the direction it writes (W_enc = D^T), so before any
        step the codes are the k largest correlations with the dictionary (one step of matching pursuit)."""
        dictionary = unit_rows(dictionary.detach().float())
        if k < 1:
            raise MetasaeError(f"frozen-dictionary encoder: k={k} must be >= 1")
        if b_dec.shape != dictionary.shape[1:]:
            raise MetasaeError(
                f"frozen-dictionary encoder: b_dec has shape {list(b_dec.shape)}, the dictionary's rows "
                f"{dictionary.shape[1]}"
            )
        k = min(k, len(dictionary))  # a dictionary smaller than k is used whole
        return cls(dictionary.T.clone(), torch.zeros(len(dictionary)), b_dec.detach().float(), dictionary, k)

    @property
    def width(self) -> int:
        return len(self.dictionary)

    def encode(self, x: Tensor) -> Tensor:
        """Dense codes [B, m] with exactly k non-zeros (differentiable in x and the weights)."""
        return topk_shifted((x - self.b_dec) @ self.W_enc + self.b_enc, self.k)

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.dictionary + self.b_dec

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def save(self, path: Path) -> str:
        """Write the encoder (atomically); returns its sha256 for the depth's metrics.json."""
        return save_tensors(path, {**self._tensors(), "k": torch.tensor(self.k)})

    def _tensors(self) -> dict[str, Tensor]:
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "b_dec": self.b_dec, "dictionary": self.dictionary}

    @classmethod
    def load(cls, path: Path, checksums: dict, producer: str) -> FrozenEncoder:
        """Read an encoder back, checked against the sha256 recorded when it was written."""
        t = load_tensors(path, checksums=checksums, producer=producer)
        missing = sorted({"W_enc", "b_enc", "b_dec", "dictionary", "k"} - set(t))
        if missing:
            raise MetasaeError(f"{path}: missing tensor(s) {missing}; rerun `metasae {producer}`")
        return cls(t["W_enc"], t["b_enc"], t["b_dec"], t["dictionary"], int(t["k"]))


def unit_rows(w: Tensor) -> Tensor:
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def topk_shifted(pre: Tensor, k: int) -> Tensor:
    """The k largest pre-activations minus the (k+1)-th: non-negative, exactly k non-zeros unless tied. With
    k at least the width there is no (k+1)-th, and the whole dictionary is used ReLU'd."""
    if k >= pre.shape[1]:
        return pre.relu()
    vals, idx = pre.topk(k + 1, dim=1)
    return torch.zeros_like(pre).scatter(1, idx[:, :k], vals[:, :k] - vals[:, k:])


def fit_frozen_encoder(
    x: Tensor,
    dictionary: Tensor,
    b_dec: Tensor,
    k: int,
    seed: int,
    steps: int = FIT_STEPS,
    batch_size: int = FIT_BATCH,
    lr: float = FIT_LR,
) -> FrozenEncoder:
    """Learn W_enc, b_enc of a TopK encoder onto the frozen `dictionary` by minimising the summed squared
    error of x ~ b_dec + codes @ dictionary over seeded minibatches of x (Adam). The dictionary and b_dec stay
    as given, so the codes are in the depth's own latents and the rebuilt layer compares across depths."""
    if len(x) == 0:
        raise MetasaeError("frozen-dictionary encoder: no training activations")
    start = FrozenEncoder.initial(dictionary, b_dec, k)
    W_enc, b_enc = start.W_enc.requires_grad_(), start.b_enc.requires_grad_()  # noqa: N806
    fit = FrozenEncoder(W_enc, b_enc, start.b_dec, start.dictionary, start.k)
    optimiser = Adam([W_enc, b_enc], lr=lr)  # not torch.optim: its import costs 1.3 CPU-s a job
    rows = generator(seed, "frozen-encoder")
    x = x.float()
    for _ in range(steps):
        batch = x[torch.randint(len(x), (min(batch_size, len(x)),), generator=rows)]
        loss = (fit.reconstruct(batch) - batch).pow(2).sum(1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return FrozenEncoder(W_enc.detach(), b_enc.detach(), start.b_dec, start.dictionary, start.k)


@torch.no_grad()
def encode_rows(encoder: FrozenEncoder, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Codes of many rows, in batches, as a sparse tensor [n, m]."""
    parts = [encoder.encode(x[i : i + batch_size]).to_sparse() for i in range(0, len(x), batch_size)]
    return torch.cat(parts).coalesce() if parts else torch.zeros(0, encoder.width).to_sparse()


@torch.no_grad()
def pursuit_codes(x: Tensor, dictionary: Tensor, b_dec: Tensor, k: int) -> Tensor:
    """Non-negative orthogonal matching pursuit, dense codes [n, m] with at most k non-zeros per row: k times,
    add the atom most positively correlated with the residual, refit the chosen atoms' coefficients by least
    squares and clip negative ones to 0 (an approximate NNLS: the codes must be non-negative like TopK's).
    The refits solve the chosen atoms' normal equations from the dictionary's Gram matrix, so no step touches
    the [n, s, d_in] atoms (the dense lstsq per step took 41% of a default decoder-mode job), and each step
    extends the previous Cholesky factor by one row instead of factoring anew, and the residual's
    correlations come from one GEMM (k 96, 256 rows, 512 atoms, 1 thread: 2.72 -> 0.75 CPU-s)."""
    atoms = unit_rows(dictionary.float())
    target = (x - b_dec).float()
    n, m = len(target), len(atoms)
    gram, corr = atoms @ atoms.T, target @ atoms.T  # [m, m], [n, m]
    support = torch.empty(n, 0, dtype=torch.int64)
    chol = torch.empty(n, 0, 0)
    dependent = torch.zeros(n, dtype=torch.bool)  # chosen atoms numerically dependent: G_SS has no Cholesky
    codes, score = torch.zeros(n, m), corr
    for _ in range(min(k, m)):
        new = score.scatter(1, support, -torch.inf).argmax(1)
        chol, singular = _extend_cholesky(chol, gram, support, new)
        dependent |= singular
        support = torch.cat([support, new[:, None]], 1)
        coef = torch.cholesky_solve(corr.gather(1, support).unsqueeze(2), chol).squeeze(2)
        bad = dependent.nonzero().flatten()
        if len(bad):  # the dense lstsq for those rows
            chosen = atoms[support[bad]].transpose(1, 2)  # [b, d_in, s]
            coef[bad] = torch.linalg.lstsq(chosen, target[bad].unsqueeze(2)).solution.squeeze(2)
        coef = coef.clamp_min(0)
        codes = torch.zeros(n, m).scatter(1, support, coef)
        score = corr - codes @ gram  # the residual's correlations
    return codes


def _extend_cholesky(chol: Tensor, gram: Tensor, support: Tensor, new: Tensor) -> tuple[Tensor, Tensor]:
    """The lower Cholesky factors [n, s+1, s+1] of each row's G_SS + 1e-9 I after adding atom `new` to its
    support, from those of the chosen atoms [n, s, s], and which rows have none (a non-positive pivot; their
    new pivot is set to 1 to keep the factor finite; a dependent set stays dependent as atoms are added)."""
    n, s = support.shape
    pivot = gram[new, new] + 1e-9
    if s == 0:
        row, square = torch.empty(n, 0), pivot
    else:
        cross = gram[support, new[:, None]]  # [n, s]: G(chosen, new)
        row = torch.linalg.solve_triangular(chol, cross.unsqueeze(2), upper=False).squeeze(2)
        square = pivot - row.pow(2).sum(1)
    singular = ~(square > 0)
    diag = torch.where(singular, torch.ones_like(square), square).sqrt()
    grown = torch.zeros(n, s + 1, s + 1)
    grown[:, :s, :s] = chol
    grown[:, s, :s] = row
    grown[:, s, s] = diag
    return grown, singular


def strongest_routed(parent_codes: Tensor, meta_codes: Tensor) -> Tensor:
    """code_d[:, j*] += code_{d-1}[:, i] for j* = argmax_j C_d[i, j]; a parent latent with no positive
    meta-code routes nowhere. Sparse [n, m]."""
    meta_codes = meta_codes.to_dense() if meta_codes.is_sparse else meta_codes
    routed = (meta_codes > 0).any(1).nonzero().flatten()
    route = torch.zeros_like(meta_codes)
    route[routed, meta_codes[routed].argmax(1)] = 1.0
    return torch.sparse.mm(parent_codes.coalesce(), route).to_sparse().coalesce()


def depth1_k(k: int | None, l0_images: float | None) -> int:
    """The L0 the frozen codes keep: depth 1's k (TopK family), else depth 1's mean L0 on the probe images,
    rounded (ReLU, JumpReLU), so a decoder-mode depth encodes an image as sparsely as depth 1 does."""
    if k:
        return int(k)
    if l0_images is None:
        raise MetasaeError("depth 1 records neither k nor l0_images; rerun `metasae train-sae` for depth 1")
    return max(1, round(float(l0_images)))


def write_frozen_codes(
    out_dir: Path, encoder: FrozenEncoder, acts: Tensor, parent_codes: Tensor, meta_codes: Tensor, seed: int
) -> tuple[dict, dict]:
    """Write the encoder and the frozen codes of the probe images `acts` into a depth folder; returns what
    its metrics.json records of them (`frozen_report`) and their {file: sha256}."""
    codes = encode_rows(encoder, acts)
    checksums = {
        FROZEN_ENCODER_FILE: encoder.save(out_dir / FROZEN_ENCODER_FILE),
        FROZEN_CODES_FILE: save_codes(out_dir / FROZEN_CODES_FILE, codes),
    }
    return frozen_report(encoder, acts, codes, parent_codes, meta_codes, seed), checksums


def mean_l0(codes: Tensor) -> float:
    """Mean non-zeros per row of a sparse or dense code matrix."""
    codes = codes.coalesce() if codes.is_sparse else codes.to_sparse().coalesce()
    return float((codes.values() != 0).sum() / max(1, codes.shape[0]))


@torch.no_grad()
def frozen_report(
    encoder: FrozenEncoder,
    acts: Tensor,
    codes: Tensor,
    parent_codes: Tensor,
    meta_codes: Tensor,
    seed: int,
) -> dict:
    """What metrics.json records of the frozen codes `codes` of the probe images `acts`: their L0 beside the
    reference pursuit's on a seeded subset (same L0), and the strongest-meta-latent routing's."""
    subset = torch.randperm(len(acts), generator=generator(seed, "pursuit-subset"))[:PURSUIT_ROWS]
    pursuit = pursuit_codes(acts[subset], encoder.dictionary, encoder.b_dec, encoder.k)
    strongest = strongest_routed(parent_codes, meta_codes)
    return {
        "codes_used": "frozen_topk",
        "frozen_k": encoder.k,
        "frozen_fit": {"steps": FIT_STEPS, "batch_size": FIT_BATCH, "lr": FIT_LR},
        "frozen_l0_images": mean_l0(codes),
        "frozen_fvu": fvu(acts, encoder.decode(codes.to_dense())),
        "frozen_fvu_pursuit_subset": fvu(acts[subset], encoder.reconstruct(acts[subset])),
        "pursuit_fvu": fvu(acts[subset], encoder.decode(pursuit)),
        "pursuit_l0_images": mean_l0(pursuit),
        "pursuit_rows": len(subset),
        "strongest_routed_fvu": fvu(acts, encoder.decode(strongest.to_dense())),
        "strongest_routed_l0_images": mean_l0(strongest),
    }
