"""What every SAE architecture shares: config, parameters, decoder-norm constraint, input-scale folding.

An architecture subclasses `SAE` and implements `encode` (inference codes) and `loss` (training objective);
everything else (decode, saving, the unit-norm decoder, folding the input scale) lives here once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from metasae.errors import MetasaeError
from metasae.sae.encoder import dense_encode
from metasae.sae.sparse import Selection
from metasae.sae.sparse_rows import SparseRows
from metasae.settings import ARCHITECTURE_NAMES, K_ARCHITECTURES, L1_REDUCTIONS


def _ascending_below(sizes: object, width: int) -> bool:
    """Matryoshka prefix sizes must nest strictly inside the full dictionary, or a level would be empty."""
    if not isinstance(sizes, list | tuple) or not all(type(m) is int for m in sizes):
        return False
    return all(a < b for a, b in zip([0, *sizes], [*sizes, width], strict=True))


@dataclass
class SAEConfig:
    """Architecture and loss of one SAE. `d_in` is the input width, `width` the number of latents.

    l1_reduction (relu only): `decoder_norm` = the "April update" loss, sum_dims MSE averaged over the
    batch + l1_coeff * mean_batch sum_j |z_j| * ||W_dec[j]||; `sum` = the research log's loss exactly,
    mean-over-elements MSE + l1_coeff * sum over batch and latents of |z|.
    """

    architecture: str
    d_in: int
    width: int
    k: int | None = None  # topk / batchtopk / matryoshka: active latents per example (batch mean)
    l1_coeff: float = 0.0  # relu: L1 coefficient; jumprelu: L0 coefficient
    l1_reduction: str = "decoder_norm"
    k_aux: int | None = None  # AuxK latents per example; None = d_in // 2 (Gao et al.)
    aux_coeff: float = 1 / 32
    prefixes: list[int] | None = None  # matryoshka: nested prefix sizes; None = width/8, width/4, width/2
    normalize_decoder: bool = True  # keep decoder rows at unit norm (parallel gradient removed)
    pre_encoder_bias: bool = True  # subtract b_dec before encoding
    threshold_momentum: float = 0.99  # batchtopk: EMA of the smallest kept activation -> inference threshold
    jumprelu_init_threshold: float = 0.001
    jumprelu_bandwidth: float = 0.001

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURE_NAMES:
            allowed = ", ".join(ARCHITECTURE_NAMES)
            raise MetasaeError(f"sae.architecture={self.architecture!r}; allowed: {allowed}")
        if self.d_in < 1 or self.width < 1:
            raise MetasaeError(f"sae.d_in={self.d_in}, sae.width={self.width}: both must be >= 1")
        if self.architecture in K_ARCHITECTURES and not (self.k and 1 <= self.k <= self.width):
            raise MetasaeError(f"sae.k={self.k}: {self.architecture} needs 1 <= k <= width={self.width}")
        if self.l1_reduction not in L1_REDUCTIONS:
            raise MetasaeError(f"sae.l1_reduction={self.l1_reduction!r}; allowed: {', '.join(L1_REDUCTIONS)}")
        if self.k_aux is not None and self.k_aux < 0:
            raise MetasaeError(f"sae.k_aux={self.k_aux}: must be >= 0")
        if self.l1_coeff < 0 or self.aux_coeff < 0:
            raise MetasaeError("sae.l1_coeff and sae.aux_coeff must be >= 0")
        if self.prefixes is not None and not _ascending_below(self.prefixes, self.width):
            raise MetasaeError(
                f"sae.prefixes={self.prefixes}: need ascending latent counts 1 <= m < width={self.width}"
            )

    @property
    def k_aux_resolved(self) -> int:
        return self.d_in // 2 if self.k_aux is None else self.k_aux

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "sae config") -> SAEConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if "width" not in d:  # a cfg.json written before `width` names it d_sae, as SAELens does
            d = {("width" if key == "d_sae" else key): value for key, value in d.items()}  # SAELens name
        unknown = sorted(set(d) - names)
        if unknown:
            raise MetasaeError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
        return cls(**d)


@dataclass
class LossParts:
    """One training step's loss and the statistics the trainer logs (all but `total` detached)."""

    total: Tensor
    mse: Tensor
    sparsity: Tensor
    aux: Tensor
    l0: Tensor  # mean active latents per example (0-d; a tensor so a GPU step need not wait to read it)
    fired: Tensor  # float [width]: on how many examples of the batch each latent was active
    x_hat: Tensor  # detached reconstruction, for batch FVU

    @classmethod
    def from_selection(
        cls,
        total: Tensor,
        mse: Tensor,
        sparsity: Tensor,
        aux: Tensor,
        sel: Selection,
        width: int,
        x_hat: Tensor,
    ) -> LossParts:
        """The statistics of codes given as selected pairs (sparse ops)."""
        live = sel.vals > 0
        # index_add, not fired[idx[live]] += 1: a boolean mask makes a GPU wait for the host
        fired = torch.zeros(width, device=x_hat.device).index_add_(0, sel.idx, live.float())
        return cls(
            total=total,
            mse=mse.detach(),
            sparsity=sparsity.detach(),
            aux=aux.detach(),
            l0=live.sum() / sel.batch,
            fired=fired,
            x_hat=x_hat.detach(),
        )

    @classmethod
    def penalised(cls, mse: Tensor, sparsity: Tensor, z: Tensor, x_hat: Tensor) -> LossParts:
        """MSE + a sparsity penalty on dense codes z, no auxiliary loss (relu, jumprelu)."""
        active = z > 0
        return cls(
            total=mse + sparsity,
            mse=mse.detach(),
            sparsity=sparsity.detach(),
            aux=torch.zeros((), device=z.device),
            l0=active.sum() / len(z),
            fired=active.sum(0, dtype=torch.float32),
            x_hat=x_hat.detach(),
        )


class SAE(nn.Module):
    """W_enc [d_in, width], b_enc [width], W_dec [width, d_in] (rows unit norm), b_dec [d_in]."""

    needs_k: ClassVar[bool] = False
    sparse_input: ClassVar[bool] = False  # `loss` takes SparseRows batches (else the trainer densifies them)
    saelens_architecture: ClassVar[str] = "standard"

    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        W_dec = torch.randn(cfg.width, cfg.d_in, generator=generator)  # noqa: N806
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        # Encoder = decoder transpose: each latent starts by reading the direction it writes.
        self.W_enc = nn.Parameter(W_dec.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(cfg.width))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))

    # -- the architecture's job -------------------------------------------------------------------
    def encode(self, x: Tensor | SparseRows) -> Tensor:
        """Dense codes [B, width], per example (no dependence on the rest of the batch)."""
        raise NotImplementedError

    def loss(self, x: Tensor, dead: Tensor | None = None, sparsity_scale: float = 1.0) -> LossParts:
        """Training objective on a batch (SparseRows where `sparse_input`); `dead` (bool [width]) feeds AuxK
        where the architecture has it."""
        raise NotImplementedError

    def _scale_thresholds(self, scale: float) -> None:
        """Architectures with activation thresholds rescale them with the input (see fold_input_scale)."""

    # -- shared -----------------------------------------------------------------------------------
    def pre_acts(self, x: Tensor | SparseRows) -> Tensor:
        """(x - b_dec) @ W_enc + b_enc; for sparse rows (a parent's codes) over their non-zeros only."""
        b_dec = self.b_dec if self.cfg.pre_encoder_bias else None
        if isinstance(x, SparseRows):
            bias = self.b_enc if b_dec is None else self.b_enc - b_dec @ self.W_enc
            return x.product(self.W_enc.contiguous()) + bias  # its rows gathered: strided, they cost 20x
        return dense_encode(x, b_dec, self.W_enc, self.b_enc)

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def sum_dims_mse(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return (x_hat - x).pow(2).sum(1).mean()

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        """Project out each decoder row's gradient component along the row, so the step keeps its norm."""
        if self.W_dec.grad is not None:
            w = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
            self.W_dec.grad -= (self.W_dec.grad * w).sum(1, keepdim=True) * w

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Make an SAE trained on x / scale take raw x, with the same decoder rows.

        Every architecture is positively homogeneous in (pre-activation, threshold), so codes of raw x are
        scale * codes of x / scale: b_enc, b_dec and thresholds scale, W_enc and W_dec stay.
        """
        self.b_enc *= scale
        self.b_dec *= scale
        self._scale_thresholds(scale)
