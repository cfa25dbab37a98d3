"""Label taxonomies: superclasses of a dataset's classes, so purity can be measured one level up.

A taxonomy is found by the probe's label names, not its dataset name, so the real Fashion-MNIST and any copy
of it with the same classes share it. MNIST digits have none: purity there has one level only.
"""

from __future__ import annotations

import torch

# superclass -> its classes (every class of the dataset in exactly one superclass)
FASHION_MNIST = {
    "tops": ("T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"),
    "footwear": ("Sandal", "Sneaker", "Ankle boot"),
    "Trouser": ("Trouser",),
    "Bag": ("Bag",),
}
TAXONOMIES = (FASHION_MNIST,)


def superclasses(label_names: list[str]) -> tuple[list[str], torch.Tensor] | None:
    """(superclass names, superclass index of every class) for labels some taxonomy covers exactly, else
    None."""
    for taxonomy in TAXONOMIES:
        members = {c: s for s, classes in taxonomy.items() for c in classes}
        if set(members) == set(label_names) and len(members) == len(label_names):
            names = list(taxonomy)
            return names, torch.tensor([names.index(members[c]) for c in label_names])
    return None


def coarsen(hist: torch.Tensor, index: torch.Tensor, n_super: int) -> torch.Tensor:
    """A [M, n_classes] label histogram summed into [M, n_super] superclass counts."""
    out = torch.zeros(hist.shape[0], n_super, dtype=hist.dtype)
    return out.index_add_(1, index, hist)
