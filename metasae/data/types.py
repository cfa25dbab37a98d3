"""The one in-memory form every dataset takes, so no stage ever has to know where images came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class InputSpec:
    """What a model consumes; images are converted to it explicitly (`to_input_spec`), never implicitly."""

    channels: int
    height: int
    width: int


@dataclass
class ImageDataset:
    """Float images in [0, 1] with exact source labels and a stable per-image index within the split."""

    ref: str
    images: torch.Tensor
    labels: torch.Tensor
    label_names: list[str]
    index: torch.Tensor
    is_real: bool
    description: str
    factors: dict[str, torch.Tensor] | None = None

    @property
    def spec(self) -> InputSpec:
        _, c, h, w = self.images.shape
        return InputSpec(int(c), int(h), int(w))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def uint8_to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Source pixels (uint8 0..255) to float32 in [0, 1]; the only scaling any real loader applies."""
    t = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    return t.to(torch.float32).div_(255.0)


def embedded_split(
    ref, images: torch.Tensor, labels: torch.Tensor, label_names: list[str], description: str
) -> ImageDataset:
    """The `[start:stop]` slice of one generated split, its rows indexed by their position in the split."""
    from metasae.data.refs import slice_bounds

    start, stop = slice_bounds(ref, len(labels))
    return ImageDataset(
        ref=str(ref),
        images=images[start:stop].clone(),
        labels=labels[start:stop].clone(),
        label_names=list(label_names),
        index=torch.arange(start, stop),
        is_real=False,
        description=description,
    )
