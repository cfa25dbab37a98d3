"""`dsprites_gen`: an approximate procedural replica of dSprites on the exact factor grid.

The official vertex geometry (especially the heart) is unpublished, so shapes are implicit functions
evaluated at pixel centres of a 64x64 canvas (pixels exactly 0 or 1), batched over images. Only the
requested grid indices are rendered: the full grid as float32 would be 12 GB.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from metasae.data import dsprites_grid as grid
from metasae.data.refs import DatasetRef
from metasae.data.types import ImageDataset

SIZE = 64
_HALF_EXTENT = 0.16  # sprite half-size at scale 1, as a fraction of the canvas (stays inside at any angle)
_CHUNK = 2048
DESCRIPTION = (
    "embedded stand-in: procedurally rendered dSprites replica (square, ellipse, heart; exact "
    "factor grid 3x6x40x32x32, approximate shapes), 64x64 binary"
)


def render(index: torch.Tensor) -> torch.Tensor:
    """Render grid indices [B] to float images [B, 1, 64, 64] with pixels in {0, 1}."""
    factors = grid.factors_of(index)
    out = torch.empty(len(index), 1, SIZE, SIZE, dtype=torch.float32)
    centres = torch.arange(SIZE, dtype=torch.float32) + 0.5
    for lo in tqdm(range(0, len(index), _CHUNK), desc="render dsprites_gen", disable=None, leave=False):
        sl = slice(lo, lo + _CHUNK)
        out[sl, 0] = _render_chunk(
            factors["shape"][sl],
            factors["scale_value"][sl].float(),
            factors["orientation_value"][sl].float(),
            factors["posX_value"][sl].float(),
            factors["posY_value"][sl].float(),
            centres,
        )
    return out


def _render_chunk(
    shape: torch.Tensor,
    scale: torch.Tensor,
    theta: torch.Tensor,
    pos_x: torch.Tensor,
    pos_y: torch.Tensor,
    centres: torch.Tensor,
) -> torch.Tensor:
    """Evaluate each sprite's implicit inside-test at every pixel centre (sprite-local, rotated
    coordinates)."""
    col = lambda t: t.view(-1, 1, 1)  # noqa: E731 - broadcast a per-image value over the canvas
    cx = SIZE * (0.25 + 0.5 * col(pos_x))  # centres span the middle half, as in the official renders
    cy = SIZE * (0.25 + 0.5 * col(pos_y))
    dx = centres.view(1, 1, -1) - cx
    dy = centres.view(1, -1, 1) - cy
    cos, sin = torch.cos(col(theta)), torch.sin(col(theta))
    r = SIZE * _HALF_EXTENT * col(scale)
    u = (cos * dx + sin * dy) / r
    v = (-sin * dx + cos * dy) / r
    square = torch.maximum(u.abs(), v.abs()) <= 1.0
    ellipse = u.square() + (v / 0.5).square() <= 1.0
    hx, hy = u * 1.15, -v * 1.15 + 0.12  # heart curve (x²+y²-1)³ - x²y³ <= 0, centred and fitted to the box
    heart = (hx.square() + hy.square() - 1.0).pow(3) - hx.square() * hy.pow(3) <= 0.0
    s = col(shape)
    inside = torch.where(s == 0, square, torch.where(s == 1, ellipse, heart))
    return inside.to(torch.float32)


def load(ref: DatasetRef) -> ImageDataset:
    index = grid.split_indices(ref)
    factors = grid.factors_of(index)
    return ImageDataset(
        ref=str(ref),
        images=render(index),
        labels=factors["shape"].clone(),
        label_names=list(grid.LABEL_NAMES),
        index=index,
        is_real=False,
        description=DESCRIPTION,
        factors=factors,
    )
