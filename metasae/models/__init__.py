"""Classifier registry, checkpoints (safetensors + cfg.json) and layer access by name."""

from __future__ import annotations

from pathlib import Path

import torch

from metasae.errors import MetasaeError
from metasae.io import load_checkpoint, save_checkpoint
from metasae.models.base import Classifier
from metasae.models.cnn import CNN
from metasae.models.mlp import MLP

CLASSIFIERS: dict[str, type[Classifier]] = {"mlp": MLP, "cnn": CNN}
WEIGHTS = "model.safetensors"


def build_classifier(
    name: str, num_classes: int, input_shape: tuple[int, int, int] | None = None
) -> Classifier:
    if name not in CLASSIFIERS:
        raise MetasaeError(f"unknown model {name!r}; choose one of {sorted(CLASSIFIERS)}")
    cls = CLASSIFIERS[name]
    if input_shape is None:
        return cls(num_classes=num_classes)
    c, h, w = input_shape
    return cls(num_classes=num_classes, channels=c, height=h, width=w)


def default_input_shape(name: str) -> tuple[int, int, int]:
    """The input spec a model declares when the config gives none (the log's MLP takes 3x28x28)."""
    return build_classifier(name, 2).input_shape


def check_layer(model: Classifier, layer: str, where: str = "model") -> torch.nn.Module:
    if layer not in model.layer_names:
        raise MetasaeError(f"{where}: unknown layer {layer!r}; choose one of {list(model.layer_names)}")
    return model.get_submodule(layer)


def save_classifier(model: Classifier, out_dir: str | Path, cfg: dict) -> None:
    save_checkpoint(out_dir, WEIGHTS, model.state_dict(), cfg)


def load_classifier(model_dir: str | Path, device: str = "cpu") -> tuple[Classifier, dict]:
    """Rebuild a classifier from its cfg.json and load its weights; corrupt files raise MetasaeError."""
    tensors, cfg = load_checkpoint(model_dir, WEIGHTS, producer="train-classifier")
    try:
        model = build_classifier(cfg["model"], cfg["num_classes"], tuple(cfg["input_shape"]))
    except KeyError as exc:
        raise MetasaeError(f"{Path(model_dir) / 'cfg.json'}: missing key {exc}") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise MetasaeError(
            f"{Path(model_dir) / WEIGHTS}: weights do not match cfg.json ({str(exc).splitlines()[0]})"
        ) from None
    return model.to(device).eval(), cfg
