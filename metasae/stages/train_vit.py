"""Stage `train-vit`: train the small ViT on a labelled dataset, saving checkpoints at log-spaced steps.

The checkpoints (including step 0, the random initialisation) are what the probes read to see *when* in
training a factor becomes linearly decodable. `metrics.json` is written last and lists them.

`label` picks the objective: the dataset's labels, one dSprites factor (cross-entropy over its classes), or
`factors`: one head per dSprites factor on a shared ViT (shape and scale by cross-entropy; orientation as
(cos fθ, sin fθ), f the shape's rotational symmetry order, since a square at θ and θ + π/2 is the same image;
posX, posY standardised; the regression heads by squared error).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from metasae.data import ImageDataset, InputSpec, load_dataset, to_input_spec
from metasae.data.dsprites_grid import FACTORS, LABEL_NAMES, SIZES
from metasae.devices import resolve_device
from metasae.errors import MetasaeError
from metasae.io import provenance, stage_output, write_json
from metasae.layout import METRICS_FILE
from metasae.models.vit import ViT, ViTConfig, save_vit
from metasae.probes import CLASSIFY, REGRESS, SYMMETRY_FOLD, r2
from metasae.seeds import generator

DATASET_LABEL = "label"  # train on the dataset's own labels; any dSprites factor name trains on that factor
FACTOR_HEADS = "factors"  # one head per dSprites factor (the multi-head reference)
LABELS = (DATASET_LABEL, *FACTORS, FACTOR_HEADS)


@dataclasses.dataclass(frozen=True)
class Head:
    """A slice of the ViT's outputs: `size` logits (classification) or regression outputs."""

    name: str
    kind: str
    size: int
    score: str = ""  # the name of its test score; default accuracy (classification) or r2 (regression)

    @property
    def metric(self) -> str:
        return self.score or ("accuracy" if self.kind == CLASSIFY else "r2")


@dataclasses.dataclass(frozen=True)
class ViTTrainConfig:
    train: str
    test: str
    label: str = DATASET_LABEL
    steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    checkpoints: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "checkpoints"):
            if getattr(self, key) < 1:
                raise MetasaeError(f"train-vit: {key}={getattr(self, key)} must be >= 1")
        if self.label not in LABELS:
            raise MetasaeError(f"train-vit: label={self.label!r}; allowed: {', '.join(LABELS)}")


def checkpoint_steps(total: int, n: int) -> list[int]:
    """Step 0 plus up to n - 1 log-spaced steps ending at `total` (fewer where rounding merges them)."""
    if n < 2:
        return [total]
    spaced = (  # geomspace of one point is its start: two checkpoints are step 0 and the last
        np.unique(np.round(np.geomspace(1, total, n - 1)).astype(int)) if total > 1 and n > 2 else [total]
    )
    return [0, *(int(s) for s in spaced)]


def labels_of(ds: ImageDataset, label: str) -> tuple[torch.Tensor, list[str]]:
    """Class ids and names to train on: the dataset's labels or one dSprites factor's class ids."""
    if label == DATASET_LABEL:
        return ds.labels, list(ds.label_names)
    if not ds.factors or label not in ds.factors:
        raise MetasaeError(
            f"dataset {ds.ref}: has no factor {label!r} (label={label!r} needs a dSprites dataset)"
        )
    names = LABEL_NAMES if label == "shape" else [str(i) for i in range(SIZES[FACTORS.index(label)])]
    return ds.factors[label], list(names)


def factor_targets(ds: ImageDataset) -> tuple[list[Head], dict[str, torch.Tensor]]:
    """The multi-head objective of a dSprites dataset: heads and per-head targets (see the module doc)."""
    if not ds.factors or any(f"{k}_value" not in ds.factors for k in ("orientation", "posX", "posY")):
        raise MetasaeError(f"dataset {ds.ref}: label={FACTOR_HEADS!r} needs a dSprites dataset")
    f = ds.factors
    fold = torch.tensor([SYMMETRY_FOLD[s] for s in range(len(LABEL_NAMES))])[f["shape"]]
    angle = fold * f["orientation_value"]
    unit = lambda v: ((v - 0.5) * math.sqrt(12.0)).float()[:, None]  # noqa: E731 - uniform [0, 1] -> unit variance
    heads = [
        Head("shape", CLASSIFY, len(LABEL_NAMES)),
        Head("scale", CLASSIFY, SIZES[FACTORS.index("scale")]),
        Head("orientation", REGRESS, 2, "r2_sincos_fold"),
        Head("posX", REGRESS, 1),
        Head("posY", REGRESS, 1),
    ]
    targets = {
        "shape": f["shape"],
        "scale": f["scale"],
        "orientation": torch.stack([torch.cos(angle), torch.sin(angle)], 1).float(),
        "posX": unit(f["posX_value"]),
        "posY": unit(f["posY_value"]),
    }
    return heads, targets


def objective(ds: ImageDataset, label: str) -> tuple[list[Head], dict[str, torch.Tensor], list[str]]:
    """Heads, their targets, and the class names of the first head."""
    if label == FACTOR_HEADS:
        heads, targets = factor_targets(ds)
        return heads, targets, list(LABEL_NAMES)
    y, names = labels_of(ds, label)
    return [Head(label, CLASSIFY, len(names))], {label: y}, names


def head_loss(out: torch.Tensor, heads: list[Head], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over heads: cross-entropy for classification, mean squared error for regression."""
    total, at = out.new_zeros(()), 0
    for h in heads:
        part, at = out[:, at : at + h.size], at + h.size
        y = targets[h.name]
        total = total + (F.cross_entropy(part, y) if h.kind == CLASSIFY else F.mse_loss(part, y))
    return total


@torch.no_grad()
def evaluate_heads(
    model: ViT,
    images: torch.Tensor,
    heads: list[Head],
    targets: dict[str, torch.Tensor],
    batch_size: int = 1024,
) -> dict[str, float]:
    """Per head: test accuracy (classification) or pooled R² (regression), keyed `<head>_<metric>`."""
    device = next(model.parameters()).device
    out = torch.cat(
        [model(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    )
    scores, at = {}, 0
    for h in heads:
        part, at = out[:, at : at + h.size], at + h.size
        y = targets[h.name]
        value = (part.argmax(1) == y).double().mean() if h.kind == CLASSIFY else r2(y.numpy(), part.numpy())
        scores[f"{h.name}_{h.metric}"] = float(value)
    return scores


def _lr_scale(step: int, cfg: ViTTrainConfig) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    rest = max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup_steps) / rest))


@stage_output(METRICS_FILE)
def train_vit(
    cfg: ViTTrainConfig,
    vit: dict,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str = "cpu",
) -> dict:
    """Train; write out_dir/step{s}/{model.safetensors, cfg.json} per checkpoint and out_dir/metrics.json."""
    started, cpu_started = time.time(), time.process_time()
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    train, test = load_dataset(cfg.train, data_dir), load_dataset(cfg.test, data_dir)
    heads, y_train, names = objective(train, cfg.label)
    _, y_test, _ = objective(test, cfg.label)
    try:
        arch = ViTConfig(num_classes=sum(h.size for h in heads), **vit)
    except TypeError as exc:
        raise MetasaeError(f"vit architecture: {exc}") from None
    spec = InputSpec(*arch.input_shape)
    x_train, x_test = to_input_spec(train.images, spec), to_input_spec(test.images, spec)

    model = ViT(arch, generator(cfg.seed, "vit-init")).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_scale(s, cfg))
    shuffle = generator(cfg.seed, "vit-shuffle")
    saves = checkpoint_steps(cfg.steps, cfg.checkpoints)
    record = {
        "model": "vit",
        "label": cfg.label,
        "label_names": names,
        "heads": [dataclasses.asdict(h) for h in heads],
        "train_dataset": train.ref,
        "test_dataset": test.ref,
        "train_config": dataclasses.asdict(cfg),
        "provenance": provenance({"train": dataclasses.asdict(cfg), "vit": vit}, cfg.seed),
    }
    checkpoints, order, pos, losses = [], torch.empty(0, dtype=torch.long), 0, []

    def save(step: int) -> None:
        model.eval()
        scores = evaluate_heads(model, x_test, heads, y_test)
        save_vit(model, out_dir / f"step{step}", {**record, "step": step})
        acc = scores[f"{heads[0].name}_accuracy"]  # the first head is a classifier (shape, or the label)
        checkpoints.append({"step": step, "dir": f"step{step}", "test_accuracy": acc, "test_scores": scores})
        model.train()

    save(0)
    model.train()
    for step in tqdm(range(cfg.steps), desc="train ViT", disable=None, leave=False):
        if pos + cfg.batch_size > len(order):  # a fresh permutation per epoch; the ragged tail is dropped
            order, pos = torch.randperm(len(x_train), generator=shuffle), 0
        idx = order[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        loss = head_loss(model(x_train[idx].to(dev)), heads, {k: v[idx].to(dev) for k, v in y_train.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step + 1 in saves:
            save(step + 1)
    metrics = {
        "checkpoints": checkpoints,
        "final_step": cfg.steps,
        "test_accuracy": checkpoints[-1]["test_accuracy"],
        "test_scores": checkpoints[-1]["test_scores"],
        "train_loss_last_50": float(np.mean(losses[-50:])),
        "wall_seconds": round(time.time() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu_started, 2),
        "provenance": record["provenance"],
    }
    write_json(out_dir / METRICS_FILE, metrics)
    scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics["test_scores"].items())
    print(f"ViT on {train.ref} ({cfg.label}): {scores} on {test.ref}; {metrics['cpu_seconds']} CPU-s")
    return metrics
