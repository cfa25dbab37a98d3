"""Stage `train-sae`: depth 1 of a stack on cached activations, or depth d >= 2 on depth d-1.

- depth 1: an SAE on a layer's cached activations of the probe's fit images (`--acts`), with codes of its eval
  images (`--eval-acts`, which no SAE of the stack sees: what the analysis reads) and of the fit images
  (`fit_codes`, what an activations-mode depth 2 trains on).
- `decoder` mode (the published meta-SAE): depth d trains on the unit-normed decoder rows of depth d-1, one
  example per parent latent. C_d = meta-SAE codes of those rows; an image's depth-d code is
  code_{d-1}(x) @ C_d.
- `activations` mode (the research log's): depth d trains on depth d-1's codes of the fit images and
  encodes both image sets; the meta-code of a parent latent is the code of that latent firing alone at its
  mean active value on the fit images.
- applied (`--apply`, a classifier's `stack_from` probe): no training; depth d is a copy of the same depth
  of a stack trained on another probe, with this probe's codes (the research log applied its MNIST stack to
  EMNIST, Fashion-MNIST and CIFAR instead of training one per dataset).
Every depth folder ends with `metrics.json` (status `trained` or `stopped` + reason), written last.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from metasae.activations import load_activations
from metasae.codes import save_codes, write_lineage
from metasae.errors import MetasaeError
from metasae.frozen_codes import depth1_k, fit_frozen_encoder, write_frozen_codes
from metasae.io import provenance, read_json, stage_output, write_json
from metasae.layout import (
    CODES_FILE,
    FIT_CODES_FILE,
    LINEAGE_FILE,
    META_CODES_FILE,
    METRICS_FILE,
    MODES,
    SHA256_KEY,
)
from metasae.metrics import sae_metrics
from metasae.sae import SAE, save_sae
from metasae.sae.sparse_rows import SparseRows, take_rows
from metasae.sae.trainer import spec_to_configs, train_sae
from metasae.seeds import derive_seed, generator
from metasae.stack import Depth, trained_record

EVAL_FRACTION = 0.2


@dataclass(frozen=True)
class StopRules:
    """When a depth is not trained. `max_depth` (None: none) is the last depth trained: a planted tree's
    stack ends where its oracle does (metasae.study.stop_rules), so a criterion sees the same depths on
    both."""

    min_alive: int = 1
    max_fvu: float = 1.0
    max_depth: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> StopRules:
        allowed = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise MetasaeError(f"stop rules: unknown key(s) {unknown}; allowed: {allowed}")
        return cls(**d)


def depth_seed(run_seed: int, depth: int, mode: str, per_depth: bool = True) -> int:
    """Each depth's own seed: the log's SAEs all started from identical weights because they shared one.
    `per_depth` False (`seed_per_depth: false`, the log preset) gives every depth of a run that one seed."""
    if not per_depth:
        return derive_seed(run_seed, "sae-depth", "shared")
    return derive_seed(run_seed, "sae-depth", depth, mode if depth > 1 else "base")


def sae_run_seed(seed: int, sae_seed: int) -> int:
    """The seed a stack's depths derive theirs from: the classifier's run seed for SAE seed 0 (a study with
    one SAE seed trains what it always did), else one derived from both."""
    return seed if sae_seed == 0 else derive_seed(seed, "sae-seed", sae_seed)


def split_rows(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed train/held-out split of the fit images (the trainer's held-out FVU), shared by every depth."""
    order = torch.randperm(n, generator=generator(seed, "train-eval-split"))
    n_eval = max(1, int(round(n * EVAL_FRACTION))) if n > 1 else 0
    return order[n_eval:].sort().values, order[:n_eval].sort().values


@torch.no_grad()
def _encode(sae: SAE, x: torch.Tensor | SparseRows, batch_size: int = 4096) -> torch.Tensor:
    """Codes of many rows, in batches, as a sparse tensor (keeps memory near O(batch) + non-zeros); sparse
    rows (a parent's codes) are encoded from their non-zeros, never made dense."""
    rows = SparseRows.from_sparse(x) if isinstance(x, torch.Tensor) and x.is_sparse else x
    parts = [
        sae.encode(take_rows(rows, slice(i, i + batch_size))).to_sparse()
        for i in range(0, len(rows), batch_size)
    ]
    return torch.cat(parts).coalesce() if parts else torch.zeros(0, sae.cfg.width).to_sparse()


def _alive(codes: torch.Tensor) -> torch.Tensor:
    alive = torch.zeros(codes.shape[1], dtype=torch.bool)
    alive[codes.coalesce().indices()[1].unique()] = True
    return alive


def _finish(
    out_dir: Path,
    sae: SAE,
    codes: torch.Tensor,
    train_metrics: dict,
    cfg: dict,
    extra: dict,
    checksums: dict | None = None,
    fit_codes: torch.Tensor | None = None,
) -> dict:
    """Write codes (of the eval images; `fit_codes` of the fit images, where the stack has a fit set of its
    own), then metrics (last: its presence means the depth is complete), which record the sha256 of the codes
    and of the depth's other data files (`checksums`) so every reader can verify them."""
    checksums = {**(checksums or {}), CODES_FILE: save_codes(out_dir / CODES_FILE, codes)}
    if fit_codes is not None:
        checksums[FIT_CODES_FILE] = save_codes(out_dir / FIT_CODES_FILE, fit_codes)
    alive = _alive(codes)
    metrics = {
        **train_metrics,
        **extra,
        **trained_record(cfg["depth"], cfg["mode"], sae.cfg.width, checksums),
        "alive_latents_images": int(alive.sum()),
        "l0_images": float(codes._nnz() / max(1, codes.shape[0])),
    }
    write_json(out_dir / METRICS_FILE, metrics)
    return metrics


def _run_cfg(
    depth: int, mode: str, spec: dict, seed: int, acts_dir: Path, fit_acts_dir: Path, parent: Path | None
) -> dict:
    """cfg.json's run keys: `acts_dir` is the eval cache the analysis reads, `fit_acts_dir` the cache the
    stack trained on (the same folder where a stack has no fit set of its own)."""
    return {
        "depth": depth,
        "mode": mode,
        "spec": spec,
        "run_seed": seed,
        "seed": depth_seed(seed, depth, mode, spec.get("seed_per_depth") is not False),
        "acts_dir": str(acts_dir),
        "fit_acts_dir": str(fit_acts_dir),
        "parent": str(parent) if parent else None,
    }


@stage_output(METRICS_FILE, resumable=True)
def train_base(
    acts_dir: str | Path,
    spec: dict,
    out_dir: str | Path,
    seed: int,
    eval_acts_dir: str | Path | None = None,
    device: str = "cpu",
    resume: bool = True,
) -> dict:
    """Depth 1: an SAE of `spec["width"]` latents trained on the fit cache `acts_dir` (its train split; the
    rest gives the trainer's held-out FVU), with codes of the eval cache's images (default: `acts_dir`'s own,
    as for a planted tree) and, where they differ, of the fit images."""
    fit_dir, out_dir = Path(acts_dir), Path(out_dir)
    eval_dir = Path(eval_acts_dir) if eval_acts_dir is not None else fit_dir
    fit = load_activations(fit_dir)
    held_out = load_activations(eval_dir) if eval_dir != fit_dir else fit
    if held_out.acts.shape[1] != fit.acts.shape[1]:
        raise MetasaeError(
            f"--eval-acts {eval_dir}: {held_out.acts.shape[1]} dims, but the fit cache {fit_dir} has "
            f"{fit.acts.shape[1]}"
        )
    train_idx, eval_idx = split_rows(len(fit.acts), seed)
    run_cfg = _run_cfg(1, "base", spec, seed, eval_dir, fit_dir, None)
    d_in = fit.acts.shape[1]
    sae_cfg, train_cfg = spec_to_configs(spec, d_in=d_in, width=spec["width"], seed=run_cfg["seed"])
    sae = train_sae(
        fit.acts[train_idx],
        sae_cfg,
        train_cfg,
        out_dir,
        device=device,
        resume=resume,
        eval_data=fit.acts[eval_idx],
        extra_cfg=run_cfg,
    )
    sae = sae.cpu().eval()
    fit_codes = _encode(sae, fit.acts) if held_out is not fit else None
    metrics = read_json(out_dir / METRICS_FILE)
    return _finish(out_dir, sae, _encode(sae, held_out.acts), metrics, run_cfg, {}, fit_codes=fit_codes)


def stop_reason(parent_depth: Depth, depth: int, width: int, min_width: int, rules: StopRules) -> str | None:
    """Why depth `depth` must not be trained, or None. Checked before any training."""
    if rules.max_depth is not None and depth > rules.max_depth:
        return f"depth {depth} is past stop.max_depth={rules.max_depth}"
    parent = parent_depth.metrics
    if parent.get("status") != "trained":
        return f"parent depth stopped ({parent.get('stop_reason')})"
    alive = parent.get("alive_latents_images", 0)
    if alive < rules.min_alive:
        return f"parent has {alive} alive latents, fewer than stop.min_alive={rules.min_alive}"
    fvu = parent.get("fvu")
    if fvu is not None and fvu > rules.max_fvu:
        return f"parent FVU {fvu:.4g} exceeds stop.max_fvu={rules.max_fvu}"
    if width < min_width:
        return f"width schedule gives {width} latents, fewer than width.min={min_width}"
    return None


@stage_output(METRICS_FILE, resumable=True)
def train_meta(
    parent_dir: str | Path,
    mode: str,
    depth: int,
    spec: dict,
    out_dir: str | Path,
    seed: int,
    rules: StopRules = StopRules(),
    device: str = "cpu",
    resume: bool = True,
) -> dict:
    """Depth d >= 2 in `mode`; a depth that must stop writes metrics.json with the reason and nothing else."""
    if mode not in MODES:
        raise MetasaeError(f"--mode {mode!r}; allowed: {', '.join(MODES)}")
    if depth < 2:
        raise MetasaeError(f"--depth {depth}: meta-SAEs start at depth 2 (depth 1 trains on --acts)")
    parent_dir, out_dir = Path(parent_dir), Path(out_dir)
    schedule = spec.get("width")
    if not isinstance(schedule, dict) or {"factor", "min"} - set(schedule):
        raise MetasaeError(
            f"depth {depth}: width must be a schedule {{factor, min}} (flags --width-factor and "
            f"--width-min), got {schedule!r}"
        )
    parent = Depth.load(parent_dir)
    parent_width = parent.width
    width = int(round(parent_width * schedule["factor"]))
    reason = stop_reason(parent, depth, width, schedule["min"], rules)
    if reason:
        stopped = {
            "status": "stopped",
            "stop_reason": reason,
            "depth": depth,
            "mode": mode,
            "width": width,
            "acts_dir": _stack_acts_dir(parent),  # what the probe was (the analysis reports it)
            "provenance": provenance(spec, seed),
        }
        write_json(out_dir / METRICS_FILE, stopped)
        print(f"depth {depth} ({mode}) stopped: {reason}")
        return stopped

    parent_codes = parent.codes
    run_cfg = _run_cfg(depth, mode, spec, seed, parent.acts_dir, parent.fit_acts_dir, parent_dir)
    fit_codes = None
    if mode == "decoder":
        rows = parent.decoder_rows()
        sae_cfg, train_cfg = spec_to_configs(spec, d_in=rows.shape[1], width=width, seed=run_cfg["seed"])
        sae = train_sae(
            rows, sae_cfg, train_cfg, out_dir, device=device, resume=resume, eval_data=rows, extra_cfg=run_cfg
        )
        sae = sae.cpu().eval()
        meta_codes = _encode(sae, rows)
        codes = torch.sparse.mm(parent_codes, meta_codes.to_dense()).to_sparse()  # routed: kept, not used
        extra, checksums = _frozen_codes(parent, sae, meta_codes, seed, run_cfg["seed"], out_dir)
    else:
        fit = parent.fit_codes.coalesce()
        fit_rows = SparseRows.from_sparse(fit)  # 60,000 x 2,304 dense floats would be 0.55 GB
        train_idx, eval_idx = split_rows(fit.shape[0], seed)
        sae_cfg, train_cfg = spec_to_configs(spec, d_in=fit.shape[1], width=width, seed=run_cfg["seed"])
        sae = train_sae(
            fit_rows.select(train_idx),
            sae_cfg,
            train_cfg,
            out_dir,
            device=device,
            resume=resume,
            eval_data=fit_rows.select(eval_idx),
            extra_cfg=run_cfg,
        )
        sae = sae.cpu().eval()
        meta_codes = _encode(sae, torch.diag(_mean_active(fit)))
        codes = _encode(sae, parent_codes)
        fit_codes = _encode(sae, fit_rows) if parent.has_fit_codes else None
        extra, checksums = {}, {}
    checksums |= {
        META_CODES_FILE: save_codes(out_dir / META_CODES_FILE, meta_codes),
        LINEAGE_FILE: write_lineage(out_dir / LINEAGE_FILE, meta_codes),
    }
    decomposed = int((meta_codes.to_dense() != 0).any(1).sum())
    return _finish(
        out_dir,
        sae,
        codes,
        read_json(out_dir / METRICS_FILE),
        run_cfg,
        {"parent_latents_decomposed": decomposed, "parent_width": parent_width, **extra},
        checksums,
        fit_codes,
    )


def _fit_rows(root: Depth, run_seed: int) -> torch.Tensor:
    """The activations depth 1 trained on (its fit cache's train split): a decoder-mode depth's frozen-
    dictionary encoder is fitted on the same rows. The one place to repoint if depth 1 trains elsewhere."""
    acts = load_activations(root.fit_acts_dir).acts
    return acts[split_rows(len(acts), run_seed)[0]]


def _frozen_codes(
    parent: Depth, sae: SAE, meta_codes: torch.Tensor, run_seed: int, depth_seed: int, out_dir: Path
) -> tuple[dict, dict]:
    """Decoder mode: fit the TopK encoder onto this depth's frozen decoder rows (depth 1's k and b_dec) and
    write it with the eval images' frozen codes; returns their metrics and {file: sha256}."""
    root = parent.root
    k = depth1_k(root.sae.cfg.k, root.metrics.get("l0_images"))
    b_dec = root.sae.b_dec.detach()
    encoder = fit_frozen_encoder(_fit_rows(root, run_seed), sae.W_dec.detach(), b_dec, k, depth_seed)
    acts = load_activations(parent.acts_dir).acts
    return write_frozen_codes(out_dir, encoder, acts, parent.image_codes, meta_codes, depth_seed)


def _mean_active(codes: torch.Tensor) -> torch.Tensor:
    """Each latent's mean value where it fires (1.0 for a latent that never fires, to keep its row
    defined), from a sparse code matrix."""
    codes = codes.coalesce()
    values, latents = codes.values(), codes.indices()[1]
    fires = values > 0
    count = torch.bincount(latents[fires], minlength=codes.shape[1])
    total = torch.zeros(codes.shape[1], dtype=values.dtype).index_add_(0, latents[fires], values[fires])
    return torch.where(count > 0, total / count.clamp_min(1), torch.ones_like(total))


def _stack_acts_dir(depth: Depth) -> str | None:
    """The activation cache a stack was trained on, from any of its depths (a stopped one records it too)."""
    return depth.cfg.get("acts_dir") if depth.cfg else depth.metrics.get("acts_dir")


def _applied_cfg(source: Depth, acts_dir: Path, parent: Path | None) -> dict:
    """cfg.json of an applied depth: the source's, pointing at this probe's cache and parent depth."""
    cfg = {k: v for k, v in source.cfg.items() if k != SHA256_KEY}
    return {
        **cfg,
        "acts_dir": str(acts_dir),
        "parent": str(parent) if parent else None,
        "applied_from": str(source.path),
    }


def _applied_metrics(sae: SAE, inputs: torch.Tensor, source: Depth) -> dict:
    """Reconstruction and sparsity of the source's SAE on all of this probe's inputs (it saw none)."""
    metrics = sae_metrics(sae, inputs)
    return {**metrics, "evaluated_on": "all (applied)", "applied_from": str(source.path)}


@stage_output(METRICS_FILE)
def apply_base(acts_dir: str | Path, source_dir: str | Path, out_dir: str | Path) -> dict:
    """Depth 1 of a stack trained on another probe (`source_dir`), applied to this probe's activations."""
    acts_dir, out_dir = Path(acts_dir), Path(out_dir)
    source = Depth.load(source_dir)
    if source.stopped or source.depth != 1:
        raise MetasaeError(f"--apply {source_dir}: not a trained depth-1 folder")
    cache = load_activations(acts_dir)
    sae = source.sae
    if cache.acts.shape[1] != sae.cfg.d_in:
        raise MetasaeError(
            f"--apply {source_dir}: its SAE takes {sae.cfg.d_in} inputs, {acts_dir} has {cache.acts.shape[1]}"
        )
    cfg = _applied_cfg(source, acts_dir, None)
    save_sae(sae, out_dir, {k: v for k, v in cfg.items() if k not in {"sae_cfg"}})
    return _finish(out_dir, sae, _encode(sae, cache.acts), _applied_metrics(sae, cache.acts, source), cfg, {})


@stage_output(METRICS_FILE)
def apply_meta(parent_dir: str | Path, source_dir: str | Path, out_dir: str | Path) -> dict:
    """Depth d >= 2 of a stack trained on another probe (`source_dir`: its depth d), applied to this probe's
    depth d-1 (`parent_dir`, itself applied): the source's SAE and meta-codes, this probe's codes. A depth
    whose source stopped stops too."""
    parent_dir, out_dir = Path(parent_dir), Path(out_dir)
    source, parent = Depth.load(source_dir), Depth.load(parent_dir)
    if source.stopped or parent.stopped:
        reason = source.metrics.get("stop_reason") if source.stopped else "parent depth stopped"
        stopped = {
            **{k: source.metrics.get(k) for k in ("depth", "mode", "width")},
            "status": "stopped",
            "stop_reason": f"applied stack: {reason}",
            "acts_dir": _stack_acts_dir(parent),
            "applied_from": str(source.path),
            "provenance": provenance({"source": str(source_dir), "parent": str(parent_dir)}),
        }
        write_json(out_dir / METRICS_FILE, stopped)
        print(f"depth {stopped['depth']} ({stopped['mode']}) stopped: {stopped['stop_reason']}")
        return stopped
    if source.depth != parent.depth + 1 or source.mode not in MODES:
        raise MetasaeError(f"--apply {source_dir}: not depth {parent.depth + 1} of a meta-SAE stack")
    sae, meta_codes = source.sae, source.meta_codes
    frozen, checksums = {}, {}
    if source.mode == "decoder":
        codes = torch.sparse.mm(parent.codes, meta_codes).to_sparse()
        metrics = _applied_metrics(sae, parent.decoder_rows(), source)
        acts = load_activations(parent.acts_dir).acts  # the source's frozen-dictionary encoder, this probe
        frozen, checksums = write_frozen_codes(
            out_dir, source.frozen_encoder, acts, parent.image_codes, meta_codes, source.cfg["seed"]
        )
    else:
        dense = parent.codes.to_dense()
        codes = _encode(sae, dense)
        metrics = _applied_metrics(sae, dense, source)
    cfg = _applied_cfg(source, parent.acts_dir, parent_dir)
    save_sae(sae, out_dir, {k: v for k, v in cfg.items() if k not in {"sae_cfg"}})
    checksums |= {
        META_CODES_FILE: save_codes(out_dir / META_CODES_FILE, meta_codes.to_sparse()),
        LINEAGE_FILE: write_lineage(out_dir / LINEAGE_FILE, meta_codes.to_sparse()),
    }
    extra = {k: source.metrics.get(k) for k in ("parent_latents_decomposed", "parent_width")} | frozen
    return _finish(out_dir, sae, codes, metrics, cfg, extra, checksums)
