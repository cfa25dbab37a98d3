"""The research log's classifier: 3x28x28 -> fc1 256 -> fc2 128 -> 10, ReLU after fc1 and fc2.

Named layers are submodules whose *output* is the activation a study caches (post-ReLU), so caching and
splicing an SAE in are both a forward hook on `model.get_submodule(layer)`.
"""

from __future__ import annotations

import torch
from torch import nn

from metasae.models.base import Classifier


class MLP(Classifier):
    layer_names = ("fc1", "fc2", "fc3")
    chain_layers = layer_names

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 3,
        height: int = 28,
        width: int = 28,
        hidden: tuple[int, int] = (256, 128),
    ) -> None:
        super().__init__(num_classes, channels, height, width)
        d_in = channels * height * width
        self.fc1 = nn.Sequential(nn.Linear(d_in, hidden[0]), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(hidden[0], hidden[1]), nn.ReLU())
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalise(images).flatten(1)
        return self.fc3(self.fc2(self.fc1(x)))
