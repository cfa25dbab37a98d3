"""The dSprites factor grid (log-facts §4), shared by the real file and the procedural replica.

Canonical (`grid`) order is row-major over (shape, scale, orientation, posX, posY), posY fastest, which is
the official file's order without its constant colour factor. The `sample` split is one fixed seeded
permutation of the grid, so `sample[:4000]` and `sample[4000:5000]` are disjoint random subsets.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from metasae.data.refs import DatasetRef, slice_bounds
from metasae.seeds import generator

FACTORS = ("shape", "scale", "orientation", "posX", "posY")
SIZES = (3, 6, 40, 32, 32)
STRIDES = (245760, 40960, 1024, 32, 1)
N_GRID = 737280
SPLITS = ("grid", "sample")
LABEL_NAMES = ["square", "ellipse", "heart"]


def factor_values() -> dict[str, torch.Tensor]:
    """Float value of each class id per factor, as in the official `latents_values` (shape is 1, 2, 3)."""
    return {
        "shape": torch.arange(1, 4, dtype=torch.float64),
        "scale": torch.linspace(0.5, 1.0, 6, dtype=torch.float64),
        "orientation": torch.linspace(0.0, 2 * math.pi, 40, dtype=torch.float64),
        "posX": torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
        "posY": torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
    }


def classes_of(index: torch.Tensor) -> torch.Tensor:
    """Grid indices [B] -> factor class ids [B, 5] (the inverse of `index_of`)."""
    rest = index.to(torch.int64)
    cols = []
    for stride, size in zip(STRIDES, SIZES, strict=True):
        cols.append((rest // stride) % size)
    return torch.stack(cols, dim=1)


def index_of(classes: torch.Tensor) -> torch.Tensor:
    """Factor class ids [B, 5] -> grid index: classes · [245760, 40960, 1024, 32, 1]."""
    return classes.to(torch.int64) @ torch.tensor(STRIDES, dtype=torch.int64)


@lru_cache(maxsize=1)
def sample_order() -> torch.Tensor:
    """The one fixed permutation defining the `sample` split (same for real and generated dSprites)."""
    return torch.randperm(N_GRID, generator=generator("dsprites", "sample-order"))


def split_indices(ref: DatasetRef) -> torch.Tensor:
    """Grid indices of the images a `grid`/`sample` reference asks for, in split order."""
    start, stop = slice_bounds(ref, N_GRID)
    if ref.split == "grid":
        return torch.arange(start, stop, dtype=torch.int64)
    return sample_order()[start:stop].clone()


def factors_of(index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image class ids for every factor plus float values under `<factor>_value`."""
    classes = classes_of(index)
    values = factor_values()
    out: dict[str, torch.Tensor] = {}
    for j, name in enumerate(FACTORS):
        out[name] = classes[:, j].contiguous()
        out[f"{name}_value"] = values[name][classes[:, j]]
    return out
