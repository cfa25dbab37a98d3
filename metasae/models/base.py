"""What every classifier shares: a declared input spec, fixed input normalisation, named layers."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """A model that takes images in [0, 1] of exactly `input_spec` and returns logits.

    Normalisation (MNIST statistics, as the research log used) lives inside the model as buffers, so every
    consumer feeds the same [0, 1] pixels that the analysis later shows.
    """

    layer_names: tuple[str, ...] = ()

    def __init__(
        self,
        num_classes: int,
        channels: int,
        height: int,
        width: int,
        mean: float = 0.1307,
        std: float = 0.3081,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_shape = (channels, height, width)
        self.register_buffer("input_mean", torch.tensor(mean), persistent=False)
        self.register_buffer("input_std", torch.tensor(std), persistent=False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(
                f"expected images of shape [N, {', '.join(map(str, self.input_shape))}], "
                f"got {list(images.shape)}"
            )
        return (images - self.input_mean) / self.input_std
