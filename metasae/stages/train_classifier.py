"""Stage `train-classifier`: train a base classifier with a seed and write it atomically."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from metasae.data import InputSpec, load_dataset, to_input_spec
from metasae.devices import resolve_device
from metasae.io import provenance, stage_output, write_json
from metasae.layout import METRICS_FILE
from metasae.metrics import evaluate_classifier
from metasae.models import build_classifier, default_input_shape, save_classifier
from metasae.optim import Adam
from metasae.seeds import derive_seed, generator


@dataclasses.dataclass(frozen=True)
class ClassifierTrainConfig:
    model: str
    train: str
    test: str
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    input_shape: tuple[int, int, int] | None = None


@stage_output(METRICS_FILE)
def train_classifier(
    cfg: ClassifierTrainConfig, out_dir: str | Path, data_dir: str | Path | None = None, device: str = "cpu"
) -> dict:
    """Train `cfg.model` on `cfg.train`, report accuracy on `cfg.test`; returns the metrics it wrote."""
    started = time.time()
    dev = resolve_device(device)
    train, test = load_dataset(cfg.train, data_dir), load_dataset(cfg.test, data_dir)
    shape = cfg.input_shape or default_input_shape(cfg.model)
    spec = InputSpec(*shape)
    x_train, x_test = to_input_spec(train.images, spec), to_input_spec(test.images, spec)

    torch.manual_seed(derive_seed(cfg.seed, "classifier-init"))  # module init draws from the global RNG
    model = build_classifier(cfg.model, len(train.label_names), shape).to(dev)
    opt = Adam(model.parameters(), lr=cfg.lr)
    shuffle = generator(cfg.seed, "classifier-shuffle")
    epoch_losses = []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=shuffle)
        total = 0.0
        bar = tqdm(
            range(0, len(order), cfg.batch_size),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=None,
            leave=False,
        )
        for start in bar:
            idx = order[start : start + cfg.batch_size]
            loss = F.cross_entropy(model(x_train[idx].to(dev)), train.labels[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        epoch_losses.append(total / len(order))
    model.eval()
    metrics = {
        "test": evaluate_classifier(model, x_test, test.labels),
        "train": evaluate_classifier(model, x_train, train.labels),
        "train_loss_per_epoch": epoch_losses,
        "wall_seconds": round(time.time() - started, 2),
    }
    model_cfg = {
        "model": cfg.model,
        "num_classes": len(train.label_names),
        "input_shape": list(shape),
        "label_names": list(train.label_names),
        "train_dataset": train.ref,
        "test_dataset": test.ref,
        "train_config": dataclasses.asdict(cfg),
        "provenance": provenance(dataclasses.asdict(cfg), cfg.seed),
    }
    out_dir = Path(out_dir)
    save_classifier(model.cpu(), out_dir, model_cfg)
    write_json(out_dir / METRICS_FILE, {**metrics, "test_accuracy": metrics["test"]["accuracy"]})
    print(f"{cfg.model} on {train.ref}: test accuracy {metrics['test']['accuracy']:.4f} on {test.ref}")
    return metrics
