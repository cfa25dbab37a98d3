"""Train one SAE on any [N, d] tensor (activations or another SAE's decoder rows), resumable bit-for-bit.

Batches are a pure function of (seed, step), so a resumed run needs only weights, optimizer moments,
dead-latent counters and the log from its checkpoint to end identical to an uninterrupted run on CPU.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from metasae.devices import resolve_device, stage_on
from metasae.errors import MetasaeError
from metasae.io import load_tensors, provenance, read_json, save_tensors, sha256_file, write_json, write_text
from metasae.layout import METRICS_FILE, TRAIN_LOG_FILE
from metasae.metrics import sae_metrics
from metasae.optim import Adam
from metasae.sae.base import SAE, SAEConfig
from metasae.sae.checkpoint import save_sae
from metasae.sae.registry import build_sae
from metasae.sae.sparse_rows import SparseRows, as_dense, take_rows
from metasae.seeds import generator
from metasae.settings import B_DEC_INITS, DECODER_INITS, K_ARCHITECTURES, SAMPLINGS, SAESpec

AUTOCAST_DTYPES = {"bf16": torch.bfloat16}  # keys: metasae.settings.AUTOCAST
CKPT_DIR = "checkpoint"
LOG_FIELDS = ("step", "examples", "lr", "total", "mse", "sparsity", "aux", "l0", "fvu", "dead_fraction")


@dataclass
class TrainConfig:
    """How to train. Exactly one of epochs / steps; lr schedule = linear warmup, constant, linear decay to 0
    over the last `decay_steps`; the sparsity coefficient ramps up linearly over `sparsity_warmup_steps`."""

    lr: float = 3e-4
    # the decoder's learning rate / lr (see optimizer_step); None = the architecture's (decoder_lr_scale_for)
    decoder_lr_scale: float | None = None
    # the encoder's (W_enc, b_enc) learning rate / lr: below 1 a latent's receptive field turns more slowly,
    # so fewer latents lose the inputs they won (see optimizer_step); 1 = Adam at lr, as the peers train
    encoder_lr_scale: float = 1.0
    # W_enc starts as this x the decoder's transpose: a small encoder turns further per Adam step relative
    # to its norm, as SAELens's (both at norm 0.1) does; the unit-norm decoder keeps its rate (README, Speed)
    encoder_init_scale: float = 1.0
    batch_size: int = 4096
    epochs: int | None = None
    steps: int | None = None
    sampling: str = "epoch"  # 'replacement': each batch drawn uniformly with replacement (SAEBench meta-SAE)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    decay_steps: int = 0
    sparsity_warmup_steps: int = 0
    dead_after_examples: int = 20_000  # a latent is dead after this many examples without firing
    # topk: over the first balance_fraction of the steps each row's latents are ranked by pre-activation +
    # a per-latent bias that rises for a latent firing below its share k/width of a batch and falls above it,
    # by balance_rate a step (balance_); the later steps train the plain TopK SAE that is saved
    balance_fraction: float = 0.0
    balance_rate: float = 0.003
    log_every: int = 50
    checkpoint_every: int = 500
    seed: int = 0
    b_dec_init: str = "geometric_median"
    # 'data': the decoder rows start as distinct training rows (minus b_dec, unit norm), the encoder their
    # transpose over k: each latent starts on an input it explains (data_init_decoder_)
    decoder_init: str = "random"
    normalize_inputs: bool = True  # train on x / sqrt(E||x||^2); folded back into the saved weights
    eval_batch_size: int = 4096
    # 'bf16': training steps run their matmuls in bfloat16 under torch.autocast (faster on AMX CPUs and GPUs:
    # README, Speed); weights, optimizer, TopK/BatchTopK selection and evaluation stay in float32
    autocast: str | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # JSON round-trips give lists
        if (self.epochs is None) == (self.steps is None):
            raise MetasaeError(
                f"train: set exactly one of epochs / steps (got epochs={self.epochs}, steps={self.steps})"
            )
        if (self.epochs or self.steps or 0) < 1:
            raise MetasaeError("train.epochs / train.steps must be >= 1")
        if self.sampling not in SAMPLINGS:
            raise MetasaeError(f"train.sampling={self.sampling!r}; allowed: {', '.join(SAMPLINGS)}")
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise MetasaeError(
                f"train.autocast={self.autocast!r}; allowed: {', '.join(AUTOCAST_DTYPES)} or null"
            )
        if self.b_dec_init not in B_DEC_INITS:
            raise MetasaeError(f"train.b_dec_init={self.b_dec_init!r}; allowed: {', '.join(B_DEC_INITS)}")
        if self.decoder_init not in DECODER_INITS:
            raise MetasaeError(
                f"train.decoder_init={self.decoder_init!r}; allowed: {', '.join(DECODER_INITS)}"
            )
        if not 0 <= self.balance_fraction <= 1 or self.balance_rate <= 0:
            raise MetasaeError(
                f"train.balance_fraction={self.balance_fraction} must be in [0, 1] and "
                f"train.balance_rate={self.balance_rate} > 0"
            )
        for key in ("batch_size", "log_every", "checkpoint_every", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise MetasaeError(f"train.{key}={getattr(self, key)}: must be >= 1")
        if (
            self.lr <= 0
            or self.encoder_lr_scale <= 0
            or self.encoder_init_scale <= 0
            or (self.decoder_lr_scale is not None and self.decoder_lr_scale <= 0)
        ):
            raise MetasaeError(
                f"train.lr={self.lr}, train.decoder_lr_scale={self.decoder_lr_scale}, "
                f"train.encoder_lr_scale={self.encoder_lr_scale}, "
                f"train.encoder_init_scale={self.encoder_init_scale}: each must be > 0"
            )

    def total_steps(self, n: int) -> int:
        return self.steps if self.steps is not None else self.epochs * math.ceil(n / self.batch_size)

    def balance_steps(self, n: int) -> int:
        return round(self.balance_fraction * self.total_steps(n))

    def lr_at(self, step: int, total: int) -> float:
        scale = 1.0
        if self.warmup_steps:
            scale = min(scale, (step + 1) / self.warmup_steps)
        if self.decay_steps:
            scale = min(scale, (total - step) / self.decay_steps)
        return self.lr * scale

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def geometric_median(points: Tensor, iters: int = 64, eps: float = 1e-8) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the summed Euclidean distance (robust b_dec init)."""
    median = points.mean(0)
    for _ in range(iters):
        w = 1.0 / (points - median).norm(dim=1).clamp_min(eps)
        new = (w[:, None] * points).sum(0) / w.sum()
        if (new - median).norm() <= eps * (1 + median.norm()):
            return new
        median = new
    return median


@torch.no_grad()
def initialise_(sae: SAE, train_cfg: TrainConfig, sample: Tensor) -> None:
    """The start the trainer gives a freshly built SAE, from `sample` (random training rows, normalised):
    b_dec, then the decoder rows (decoder_init), then the encoder's scale (encoder_init_scale)."""
    if train_cfg.b_dec_init != "zeros":
        sae.b_dec.copy_(
            geometric_median(sample) if train_cfg.b_dec_init == "geometric_median" else sample.mean(0)
        )
    if train_cfg.decoder_init == "data":
        data_init_decoder_(sae, sample.to(sae.b_dec.device))
    sae.W_enc.mul_(train_cfg.encoder_init_scale)


@torch.no_grad()
def data_init_decoder_(sae: SAE, rows: Tensor) -> None:
    """Decoder rows := the first `width` of `rows` (distinct training rows, already in a random order) minus
    b_dec, unit norm, and the encoder their transpose divided by k (k latents of rows alike in direction
    would otherwise rebuild an input k times over); rows that are zero after b_dec, and latents beyond the
    rows there are, keep their random init."""
    centred = rows[: sae.cfg.width] - sae.b_dec
    norms = centred.norm(dim=1)
    keep = norms > 1e-6 * float(norms.max().clamp_min(1e-30))
    latents = torch.arange(len(centred), device=sae.W_dec.device)[keep]
    sae.W_dec[latents] = (centred[keep] / norms[keep, None]).to(sae.W_dec)
    sae.W_enc[:, latents] = sae.W_dec[latents].t() / (sae.cfg.k if sae.needs_k else 1)


@torch.no_grad()
def balance_(rank_bias: Tensor, fired: Tensor, batch: int, k: int, rate: float) -> None:
    """One step of auxiliary-loss-free load balancing (Wang et al. 2024, DeepSeek-V3's expert router): a
    latent that fired on fewer than k/width of the batch's rows ranks `rate` higher at the next step, one that
    fired on more ranks `rate` lower, while its value stays its pre-activation.

    Why: on a layer of low effective rank (7-15 for the real study's fc1 on Fashion-MNIST) a free TopK SAE
    of 2,304 latents leaves a fifth of them firing on a handful of training images (median 3 of 60,000) and
    on none of the held-out ones; ranked by this bias for the first 2/3 of training they all find inputs,
    and stay alive once it is gone (README, Dead latents)."""
    rank_bias.add_(torch.sign(k / len(fired) * batch - fired), alpha=rate)


class _Batches:
    """Row indices of step t: epoch-wise permutations, or uniform with replacement; both from (seed, t)."""

    def __init__(self, n: int, cfg: TrainConfig) -> None:
        self.n, self.cfg = n, cfg
        self.per_epoch = math.ceil(n / cfg.batch_size)
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> Tensor:
        cfg = self.cfg
        if cfg.sampling == "replacement":
            return torch.randint(self.n, (cfg.batch_size,), generator=generator(cfg.seed, "sae-batch", step))
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = (
                epoch,
                torch.randperm(self.n, generator=generator(cfg.seed, "sae-epoch", epoch)),
            )
        return self._perm[pos * cfg.batch_size : (pos + 1) * cfg.batch_size]


def decoder_lr_scale_for(architecture: str, given: float | None) -> float:
    """The decoder's lr / lr: `given`, else 3 for the fixed-k architectures and 1 for relu / jumprelu.

    Measured (README, Speed): on a planted dictionary 10 (SAELens's per-step decoder turn, see optimizer_step)
    is fastest early but settles at a higher FVU at a constant lr (0.137 vs 0.122 after 800 steps) and, on
    MNIST fc1 at 16x width, leaves 25% of latents dead against 14% (3: 18%); 3 ends level with 1 on the
    planted task, finds its atoms (98% vs 55%) and gets there sooner. relu / jumprelu: it moves their L0
    instead (jumprelu's doubled on the planted task), so they keep one rate.
    """
    if given is not None:
        return given
    return 3.0 if architecture in K_ARCHITECTURES else 1.0


@torch.no_grad()
def _scale_step_(param: Tensor, before: Tensor, scale: float) -> None:
    """param = before + scale * (the optimizer's step): without weight decay an Adam step is lr times a
    direction that does not depend on lr, so this is the step at lr * scale for this one parameter."""
    param.sub_(before).mul_(scale).add_(before)


def optimizer_step(sae: SAE, opt: Adam, decoder_lr_scale: float, encoder_lr_scale: float = 1.0) -> None:
    """Apply the loss's gradients: Adam at the group's lr, the decoder at lr * decoder_lr_scale, its rows kept
    at unit norm (the gradient along each row removed before, the rows renormalised after), and the encoder
    (W_enc, b_enc) at lr * encoder_lr_scale.

    Why the decoder gets its own rate: Adam moves every weight by about lr per step whatever the gradient's
    scale, so a unit-norm row of d_in weights turns by about lr * sqrt(d_in) radians a step. SAELens starts
    its rows at norm 0.1 (and folds their norm into the codes), so at the same lr they turn 10x as fast: that
    is what finds planted atoms sooner (issue 29; README, Speed). Its other change, a 0.1-scale encoder, left
    74% of the latents dead on MNIST fc1, so our encoder keeps its unit-scale tied init. Our Adam has one
    parameter group, hence the rescaled displacement instead of a per-parameter lr.

    Why the encoder may get a slower one: a TopK latent learns only from the inputs it wins, and a large turn
    of its encoder column can lose it all of them for good. Measured on the real study's depth-1 SAEs (2,304
    latents, k 48, 3 epochs), dead on held-out images at scale 1 / 0.3: MNIST fc1 5.7% / 2.2%, Fashion-MNIST
    fc1 30% / 17%; at 3, 37% on MNIST fc1 at 16x width where 1 left 10% (README, Dead latents).
    """
    normalize = sae.cfg.normalize_decoder
    if normalize:
        sae.remove_parallel_grad_()
    scaled = [
        (p, scale)
        for p, scale in (
            (sae.W_dec, decoder_lr_scale),
            (sae.W_enc, encoder_lr_scale),
            (sae.b_enc, encoder_lr_scale),
        )
        if scale != 1
    ]
    before = [p.detach().clone() for p, _ in scaled]
    opt.step()
    for (param, scale), old in zip(scaled, before, strict=True):
        _scale_step_(param, old, scale)
    if normalize:
        sae.normalize_decoder_()


def _fingerprint(data: Tensor | SparseRows, sae_cfg: SAEConfig, train_cfg: TrainConfig) -> str:
    h = hashlib.sha256(repr((sae_cfg.to_dict(), train_cfg.to_dict(), tuple(data.shape))).encode())
    for part in (data.vals, data.idx) if isinstance(data, SparseRows) else (data,):
        h.update(part.contiguous().numpy().tobytes())
    return h.hexdigest()


def _checked(data: Tensor | SparseRows, d_in: int) -> Tensor | SparseRows:
    """The training data as float32 on the CPU, refused if it is not [N >= 1, d_in] or holds NaN/inf."""
    if len(data.shape) != 2 or data.shape[1] != d_in or len(data) == 0:
        raise MetasaeError(f"training data has shape {list(data.shape)}; expected [N >= 1, d_in={d_in}]")
    if isinstance(data, SparseRows):
        data.check_finite()
        return SparseRows(data.vals.to("cpu", torch.float32), data.idx.to("cpu"), data.width)
    data = data.detach().to("cpu", torch.float32)
    suspect = (~torch.isfinite(data.sum(1))).nonzero().flatten()  # row sums: no [N, d_in] temporary
    bad = suspect[(~torch.isfinite(data[suspect])).any(1)]
    if len(bad):
        raise MetasaeError(f"training data row {int(bad[0])} contains NaN/inf ({len(bad)} bad rows)")
    return data


def _row_sq_norms(data: Tensor | SparseRows) -> Tensor:
    # (data ** 2 would copy the data)
    return (
        data.row_sq_norms() if isinstance(data, SparseRows) else torch.linalg.vector_norm(data, dim=1).pow(2)
    )


def _save_checkpoint(ckpt: Path, sae: SAE, opt: Adam, counters: dict[str, Tensor], progress: dict) -> None:
    """state.safetensors (weights, Adam moments, counters such as since_fired and rank_bias), then
    state.json naming its sha256 (commit mark)."""
    tensors = {f"model.{k}": v for k, v in sae.state_dict().items()}
    tensors.update(counters)
    params = list(sae.parameters())
    for i, p in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            tensors[f"opt.{i}.{key}"] = torch.as_tensor(value)
    save_tensors(ckpt / "state.safetensors", tensors)
    write_json(
        ckpt / "state.json",
        {
            **progress,
            "sha256": sha256_file(ckpt / "state.safetensors"),
            "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        },
    )


def _load_checkpoint(
    ckpt: Path, sae: SAE, opt: Adam, fingerprint: str, device: torch.device
) -> tuple[dict, dict[str, Tensor]] | None:
    """(progress, counters) of a valid checkpoint of this very run, loading weights and Adam state."""
    state_path = ckpt / "state.json"
    if not state_path.is_file():
        return None
    state = read_json(state_path)
    if state.get("fingerprint") != fingerprint:
        print(
            f"metasae train-sae: {ckpt} holds a run with other data or config; starting afresh",
            file=sys.stderr,
        )
        return None
    if sha256_file(ckpt / "state.safetensors") != state["sha256"]:
        print(
            f"metasae train-sae: {ckpt}/state.safetensors does not match state.json; starting afresh",
            file=sys.stderr,
        )
        return None
    tensors = load_tensors(ckpt / "state.safetensors", device=str(device))
    sae.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    params = list(sae.parameters())
    opt_state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, i, key = name.split(".", 2)
            opt_state.setdefault(int(i), {})[key] = value
    groups = [{**g, "params": list(range(len(params)))} for g in state["param_groups"]]
    opt.load_state_dict({"state": opt_state, "param_groups": groups})
    counters = {k: v for k, v in tensors.items() if not k.startswith(("model.", "opt."))}
    return {k: state[k] for k in ("step", "examples", "log", "fingerprint")}, counters


def _batch(
    source: Tensor | SparseRows, index: Tensor, dev: torch.device, scale: float, dense: bool
) -> Tensor | SparseRows:
    """One training batch on `dev`, divided by the input scale; sparse rows stay sparse unless `dense`."""
    if isinstance(source, SparseRows):
        batch = source.select(index.to(source.vals.device)).to(dev).scaled(scale)
        return as_dense(batch) if dense else batch
    return source[index.to(source.device)].to(dev) / scale


def _float32(data: Tensor | SparseRows) -> Tensor | SparseRows:
    return data if isinstance(data, SparseRows) else data.to(torch.float32)


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def train_sae(
    data: Tensor | SparseRows,
    sae_cfg: SAEConfig,
    train_cfg: TrainConfig,
    out_dir: str | Path,
    device: str = "cpu",
    resume: bool = True,
    eval_data: Tensor | SparseRows | None = None,
    extra_cfg: dict | None = None,
) -> SAE:
    """Train, then write out_dir/{sae.safetensors, cfg.json, metrics.json, train_log.csv}.

    `data` stays on the CPU (batches move to `device`). Checkpoints go to out_dir/checkpoint/ every
    `checkpoint_every` steps and are removed once the outputs are written.
    """
    out_dir = Path(out_dir)
    if train_cfg.balance_fraction and sae_cfg.architecture != "topk":
        raise MetasaeError(
            f"train.balance_fraction={train_cfg.balance_fraction}: only topk balances its firing (it ranks "
            f"each row's latents); {sae_cfg.architecture} selects otherwise, so leave it at 0"
        )
    dev = resolve_device(device)
    data = _checked(data, sae_cfg.d_in)
    rms = _row_sq_norms(data).mean().sqrt()
    scale = float(rms) if train_cfg.normalize_inputs else 1.0
    if not scale > 0:
        raise MetasaeError("training data is all zeros; cannot normalise it (set normalize_inputs false)")

    sae = build_sae(sae_cfg, generator(train_cfg.seed, "sae-init")).to(dev)
    chosen = torch.randperm(len(data), generator=generator(train_cfg.seed, "b_dec-init"))[:4096]
    initialise_(sae, train_cfg, as_dense(take_rows(data, chosen)) / scale)
    opt = Adam(sae.parameters(), lr=train_cfg.lr, betas=train_cfg.betas)
    decoder_lr_scale = decoder_lr_scale_for(sae_cfg.architecture, train_cfg.decoder_lr_scale)
    total = train_cfg.total_steps(len(data))
    fingerprint = _fingerprint(data, sae_cfg, train_cfg)
    ckpt = out_dir / CKPT_DIR
    balance_steps = train_cfg.balance_steps(len(data))
    counters = {"since_fired": torch.zeros(sae_cfg.width, dtype=torch.long, device=dev)}
    if balance_steps:
        counters["rank_bias"] = torch.zeros(sae_cfg.width, device=dev)
    progress: dict[str, Any] = {"step": 0, "examples": 0, "log": [], "fingerprint": fingerprint}
    if resume and (loaded := _load_checkpoint(ckpt, sae, opt, fingerprint, dev)):
        progress, counters = loaded
    since_fired = counters["since_fired"]
    log_rows = progress["log"]
    start = progress["step"]

    batches = _Batches(len(data), train_cfg)
    source = data.to(dev) if isinstance(data, SparseRows) else stage_on(dev, data)  # sparse rows are small
    precision = (
        torch.autocast(dev.type, dtype=AUTOCAST_DTYPES[train_cfg.autocast])
        if train_cfg.autocast
        else contextlib.nullcontext()
    )
    sae.train()
    for step in tqdm(
        range(start, total),
        desc=f"train {sae_cfg.architecture} SAE",
        initial=start,
        total=total,
        disable=None,
        leave=False,
    ):
        x = _batch(source, batches(step), dev, scale, dense=not sae.sparse_input)
        lr = train_cfg.lr_at(step, total)
        for group in opt.param_groups:
            group["lr"] = lr
        dead = since_fired >= train_cfg.dead_after_examples
        sparsity_scale = (
            min(1.0, (step + 1) / train_cfg.sparsity_warmup_steps) if train_cfg.sparsity_warmup_steps else 1.0
        )
        balancing = step < balance_steps
        sae.rank_bias = counters["rank_bias"] if balancing else None
        try:
            with precision:
                parts = sae.loss(x, dead=dead, sparsity_scale=sparsity_scale)
        except MetasaeError as e:
            raise MetasaeError(f"step {step}: {e}") from e
        if not torch.isfinite(parts.total):
            raise MetasaeError(
                f"step {step}: loss is {float(parts.total.detach())} (mse={float(parts.mse)}, "
                f"sparsity={float(parts.sparsity)}, aux={float(parts.aux)}); lower train.lr"
            )
        opt.zero_grad(set_to_none=True)
        parts.total.backward()
        optimizer_step(sae, opt, decoder_lr_scale, train_cfg.encoder_lr_scale)
        if balancing:
            balance_(counters["rank_bias"], parts.fired, len(x), sae_cfg.k, train_cfg.balance_rate)
        since_fired += len(x)
        since_fired[parts.fired > 0] = 0
        progress["examples"] += len(x)
        if step % train_cfg.log_every == 0 or step == total - 1:
            x = as_dense(x)
            var = (x - x.mean(0)).pow(2).sum()
            log_rows.append(
                {
                    "step": step,
                    "examples": progress["examples"],
                    "lr": lr,
                    "total": float(parts.total.detach()),
                    "mse": float(parts.mse),
                    "sparsity": float(parts.sparsity),
                    "aux": float(parts.aux),
                    "l0": float(parts.l0),
                    "fvu": float((x - parts.x_hat).pow(2).sum() / var) if var > 0 else float("nan"),
                    "dead_fraction": float(dead.float().mean()),
                }
            )
        if (step + 1) % train_cfg.checkpoint_every == 0 and step + 1 < total:
            progress["step"] = step + 1
            _save_checkpoint(ckpt, sae, opt, counters, progress)

    if eval_data is not None and (len(eval_data.shape) != 2 or eval_data.shape[1] != sae_cfg.d_in):
        raise MetasaeError(f"eval data has shape {list(eval_data.shape)}; expected [N, d_in={sae_cfg.d_in}]")
    sae.rank_bias = None
    sae.fold_input_scale(scale)
    sae.eval()
    metrics = sae_metrics(
        sae, data if eval_data is None else _float32(eval_data), train_cfg.eval_batch_size, dev
    )
    metrics["train_dead_fraction"] = float((since_fired >= train_cfg.dead_after_examples).float().mean())
    metrics["evaluated_on"] = "train" if eval_data is None else "eval"
    record = {
        "train_cfg": train_cfg.to_dict(),
        "input_scale": scale,
        "n_train": len(data),
        "steps": total,
        "provenance": provenance({"sae": sae_cfg.to_dict(), "train": train_cfg.to_dict()}, train_cfg.seed),
        **(extra_cfg or {}),
    }
    save_sae(sae, out_dir, record)
    write_json(out_dir / METRICS_FILE, metrics)
    _write_log(out_dir / TRAIN_LOG_FILE, log_rows)
    shutil.rmtree(ckpt, ignore_errors=True)
    return sae


def spec_to_configs(
    spec: dict, d_in: int, width: int, seed: int, where: str = "sae spec"
) -> tuple[SAEConfig, TrainConfig]:
    """Split one settings dict (a config block or CLI flags, see `metasae.settings.SAESpec`) into the SAE's
    and the trainer's configs; `width` is the caller's (depth 1 or a schedule), so it is not part of
    either."""
    settings = SAESpec.from_dict(spec, where)
    if settings.architecture is None:
        raise MetasaeError(f"{where}: missing key 'architecture'")
    return (
        SAEConfig(d_in=d_in, width=width, **settings.sae_settings()),
        TrainConfig(seed=seed, **settings.train_settings()),
    )
