"""A small CNN for datasets where an MLP is too weak (e.g. CIFAR at native size)."""

from __future__ import annotations

import torch
from torch import nn

from metasae.models.base import Classifier


class CNN(Classifier):
    layer_names = ("conv1", "conv2", "fc1", "fc2")
    chain_layers = ("fc1", "fc2")  # the conv layers' outputs are [C, H, W], cached flat

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 1,
        height: int = 28,
        width: int = 28,
        widths: tuple[int, int, int] = (32, 64, 128),
    ) -> None:
        super().__init__(num_classes, channels, height, width)
        self.conv1 = nn.Sequential(nn.Conv2d(channels, widths[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(widths[0], widths[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        flat = widths[1] * (height // 4) * (width // 4)
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(flat, widths[2]), nn.ReLU())
        self.fc2 = nn.Linear(widths[2], num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(self.conv2(self.conv1(self.normalise(images)))))
