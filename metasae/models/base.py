"""What every classifier shares: a declared input spec, fixed input normalisation, named layers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Classifier(nn.Module):
    """A model that takes images in [0, 1] of exactly `input_spec` and returns logits.

    Normalisation (MNIST statistics, as the research log used) lives inside the model as buffers, so every
    consumer feeds the same [0, 1] pixels that the analysis later shows.
    """

    layer_names: tuple[str, ...] = ()
    # named layers with flat outputs after which forward is exactly the later `layer_names` applied in turn
    chain_layers: tuple[str, ...] = ()

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

    def head_from(self, layer: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The network after `layer` as a function of that layer's flat output, where it is a chain of the
        later named layers (`chain_layers`), else None. A splice then runs from the cached activations, not
        the whole model from the pixels: on the research log's MLP the layers after fc1 are 5% of its work."""
        if layer not in self.chain_layers:
            return None
        rest = [self.get_submodule(name) for name in self.layer_names[self.layer_names.index(layer) + 1 :]]

        def head(acts: torch.Tensor) -> torch.Tensor:
            for module in rest:
                acts = module(acts)
            return acts

        return head
