"""`digits`: scikit-learn's real handwritten digits (UCI optdigits test set, 1,797 images, 8x8, 0..16).

Upsampled bilinearly to 20x20 and centred on a 28x28 canvas, the framing MNIST uses (digit in a 20x20
box), so an MNIST-shaped classifier sees digits at the scale it expects. Splits: one fixed seeded
stratified 80/20 split; each split keeps scikit-learn's order.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from metasae.data.refs import DatasetRef, slice_bounds
from metasae.data.sklearn_files import digits_arrays
from metasae.data.types import ImageDataset
from metasae.seeds import generator

SPLITS = ("train", "test")
SPLIT_SIZES = {"train": 1438, "test": 359}  # what `_stratified_split` gives; tests/test_config_door.py checks
TEST_FRACTION = 0.2
DESCRIPTION = (
    "embedded: scikit-learn's real handwritten digits (8x8, 0..16) upsampled to 20x20 and centred "
    "in 28x28 like MNIST; seeded stratified 80/20 train/test split"
)


@lru_cache(maxsize=1)
def _all() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    raw, target = digits_arrays()
    x = torch.as_tensor(raw, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    images = F.pad(x, (4, 4, 4, 4))
    labels = torch.as_tensor(target, dtype=torch.int64)
    return images, labels, _stratified_split(labels)


def _stratified_split(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per class, a seeded shuffle sends round(20%) to test; both splits are then sorted to source order."""
    g = generator("digits", "split")
    test = []
    for c in range(int(labels.max()) + 1):
        members = torch.nonzero(labels == c).flatten()
        perm = members[torch.randperm(len(members), generator=g)]
        test.append(perm[: round(TEST_FRACTION * len(members))])
    test_idx = torch.sort(torch.cat(test)).values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[test_idx] = False
    return {"train": torch.nonzero(mask).flatten(), "test": test_idx}


def load(ref: DatasetRef) -> ImageDataset:
    images, labels, splits = _all()
    rows = splits[ref.split]
    start, stop = slice_bounds(ref, len(rows))
    take = rows[start:stop]
    return ImageDataset(
        ref=str(ref),
        images=images[take].clone(),
        labels=labels[take].clone(),
        label_names=[str(d) for d in range(10)],
        index=torch.arange(start, stop),
        is_real=False,
        description=DESCRIPTION,
    )
