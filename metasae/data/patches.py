"""`patches`: 32x32 RGB patches of scikit-learn's two sample photographs (the CIFAR stand-in).

Labels are where a patch comes from: photo (china, flower) x quadrant (top-left, top-right, bottom-left,
bottom-right) = 8 classes. The photos are halved (antialiased) so a patch holds object-scale structure.
Within each quadrant the left three quarters of the columns feed `train` and the right quarter `test`,
so the two splits share no pixel. Patch positions are drawn without replacement from a seeded generator;
classes are interleaved (image i has label i mod 8).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from metasae.data.refs import DatasetRef
from metasae.data.sklearn_files import sample_image
from metasae.data.types import ImageDataset, embedded_split
from metasae.seeds import generator

PHOTOS = ("china", "flower")
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
LABEL_NAMES = [f"{p}/{q}" for p in PHOTOS for q in QUADRANTS]
PER_CLASS = {"train": 250, "test": 60}
SPLITS = tuple(PER_CLASS)
SPLIT_SIZES = {split: n * len(LABEL_NAMES) for split, n in PER_CLASS.items()}
PATCH = 32
TRAIN_FRACTION = 0.75
DESCRIPTION = (
    "embedded stand-in: 32x32 RGB patches of scikit-learn's sample photos (china.jpg, flower.jpg, "
    "halved); label = photo x quadrant (8 classes); train/test from disjoint column bands"
)


@lru_cache(maxsize=1)
def _photos() -> torch.Tensor:
    """Both photos as float [2, 3, H/2, W/2] in [0, 1]."""
    x = torch.stack([torch.tensor(sample_image(p)).permute(2, 0, 1) for p in PHOTOS]).float() / 255.0
    h, w = x.shape[2] // 2, x.shape[3] // 2
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def _region(label: int, split: str, h: int, w: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the split's band inside the label's quadrant."""
    q = label % len(QUADRANTS)
    qh, qw = h // 2, w // 2
    top, left = (q // 2) * qh, (q % 2) * qw
    cut = round(qw * TRAIN_FRACTION)
    return (top, left, qh, cut) if split == "train" else (top, left + cut, qh, qw - cut)


@lru_cache(maxsize=len(SPLITS))
def _generate(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    photos = _photos()
    g = generator("patches", split)
    n_cls, k = len(LABEL_NAMES), PER_CLASS[split]
    per_class = []
    for label in range(n_cls):
        top, left, rh, rw = _region(label, split, photos.shape[2], photos.shape[3])
        ny, nx = rh - PATCH + 1, rw - PATCH + 1
        pos = torch.randperm(ny * nx, generator=g)[:k]
        photo = photos[label // len(QUADRANTS)]
        per_class.append(
            torch.stack(
                [
                    photo[:, top + y : top + y + PATCH, left + x : left + x + PATCH]
                    for y, x in zip((pos // nx).tolist(), (pos % nx).tolist(), strict=True)
                ]
            )
        )
    images = torch.stack(per_class, dim=1).reshape(k * n_cls, 3, PATCH, PATCH)  # interleave classes
    labels = torch.arange(k * n_cls) % n_cls
    return images.contiguous(), labels


def load(ref: DatasetRef) -> ImageDataset:
    images, labels = _generate(ref.split)
    return embedded_split(ref, images, labels, LABEL_NAMES, DESCRIPTION)
