"""Stage `train-vit`: train the small ViT on a labelled dataset, saving checkpoints at log-spaced steps.

The checkpoints (including step 0, the random initialisation) are what the probes read to see *when* in
training a factor becomes linearly decodable. `metrics.json` is written last and lists them.
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
from metasae.metrics import evaluate_classifier
from metasae.models.vit import ViT, ViTConfig, save_vit
from metasae.seeds import generator

DATASET_LABEL = "label"  # train on the dataset's own labels; any dSprites factor name trains on that factor


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
        if self.label not in (DATASET_LABEL, *FACTORS):
            raise MetasaeError(
                f"train-vit: label={self.label!r}; allowed: {DATASET_LABEL}, {', '.join(FACTORS)}"
            )


def checkpoint_steps(total: int, n: int) -> list[int]:
    """Step 0 plus up to n - 1 log-spaced steps ending at `total` (fewer where rounding merges them)."""
    if n < 2:
        return [total]
    spaced = (
        np.unique(np.round(np.geomspace(1, total, n - 1)).astype(int)) if total > 1 else np.array([total])
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
    started = time.time()
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    train, test = load_dataset(cfg.train, data_dir), load_dataset(cfg.test, data_dir)
    y_train, names = labels_of(train, cfg.label)
    y_test, _ = labels_of(test, cfg.label)
    try:
        arch = ViTConfig(num_classes=len(names), **vit)
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
        "train_dataset": train.ref,
        "test_dataset": test.ref,
        "train_config": dataclasses.asdict(cfg),
        "provenance": provenance({"train": dataclasses.asdict(cfg), "vit": vit}, cfg.seed),
    }
    checkpoints, order, pos, losses = [], torch.empty(0, dtype=torch.long), 0, []

    def save(step: int) -> None:
        model.eval()
        acc = evaluate_classifier(model, x_test, y_test)["accuracy"]
        save_vit(model, out_dir / f"step{step}", {**record, "step": step})
        checkpoints.append({"step": step, "dir": f"step{step}", "test_accuracy": acc})
        model.train()

    save(0)
    model.train()
    for step in tqdm(range(cfg.steps), desc="train ViT", disable=None, leave=False):
        if pos + cfg.batch_size > len(order):  # a fresh permutation per epoch; the ragged tail is dropped
            order, pos = torch.randperm(len(x_train), generator=shuffle), 0
        idx = order[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        loss = F.cross_entropy(model(x_train[idx].to(dev)), y_train[idx].to(dev))
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
        "train_loss_last_50": float(np.mean(losses[-50:])),
        "wall_seconds": round(time.time() - started, 2),
        "provenance": record["provenance"],
    }
    write_json(out_dir / METRICS_FILE, metrics)
    print(f"ViT on {train.ref} ({cfg.label}): test accuracy {metrics['test_accuracy']:.4f} on {test.ref}")
    return metrics
