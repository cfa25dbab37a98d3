"""Explicit conversion of images to a model's declared input spec (channels, size); nothing else converts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metasae.data.types import InputSpec
from metasae.errors import MetasaeError

# ITU-R BT.601 luma weights: the usual RGB -> grey conversion (also PIL's "L" mode).
_LUMA = (0.299, 0.587, 0.114)


def to_input_spec(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Convert [N, C, H, W] images: 1->3 channels by repeat, 3->1 by luma, resize bilinear with antialias.

    1->3 channels returns a broadcast view (no copy: a 60k-image dataset would take 560 MB), so write to a
    `.clone()` of the result, never to it."""
    if images.dim() != 4:
        raise MetasaeError(f"images: expected shape [N, C, H, W], got {list(images.shape)}")
    c = images.shape[1]
    if c != spec.channels:
        if (c, spec.channels) == (1, 3):
            images = images.expand(-1, 3, -1, -1)
        elif (c, spec.channels) == (3, 1):
            w = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
            images = (images * w).sum(dim=1, keepdim=True)
        else:
            raise MetasaeError(
                f"images: cannot convert {c} channels to {spec.channels} "
                "(allowed: equal, 1->3 by repeat, 3->1 by luma)"
            )
    if tuple(images.shape[2:]) != (spec.height, spec.width):
        if spec.height < 1 or spec.width < 1:
            raise MetasaeError(f"input spec: size must be positive, got {spec.height}x{spec.width}")
        images = F.interpolate(
            images, size=(spec.height, spec.width), mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
    return images
