"""Superclass purity (Fashion-MNIST's taxonomy) and purity's chance floor."""

import math

import torch

from metasae.data.mnist_like import DATASETS
from metasae.latent_stats import chance_purity, purity_entropy
from metasae.taxonomy import FASHION_MNIST, coarsen, superclasses

FASHION = list(DATASETS["fashion_mnist"].label_names)  # the real dataset's classes, in label order


def test_fashion_mnist_classes_map_to_their_superclasses_and_digits_have_none():
    names, index = superclasses(FASHION)
    assert names == list(FASHION_MNIST)
    assert [names[i] for i in index] == [
        "tops", "Trouser", "tops", "tops", "tops", "footwear", "tops", "footwear", "Bag", "footwear"
    ]  # fmt: skip
    assert superclasses([str(d) for d in range(10)]) is None
    assert superclasses(FASHION[:-1]) is None  # a partial match is no taxonomy


def test_a_latent_mixing_shirts_and_coats_is_impure_by_class_and_pure_by_superclass():
    _, index = superclasses(FASHION)
    hist = torch.zeros(2, 10, dtype=torch.int64)
    hist[0, FASHION.index("Shirt")], hist[0, FASHION.index("Coat")] = 5, 5  # two tops
    hist[1, FASHION.index("Shirt")], hist[1, FASHION.index("Sneaker")] = 5, 5  # a top and a shoe
    class_purity, _ = purity_entropy(hist)
    super_purity, _ = purity_entropy(coarsen(hist, index, 4))
    assert class_purity.tolist() == [0.5, 0.5]
    assert super_purity.tolist() == [1.0, 0.5]


def test_chance_purity_is_one_for_one_class_and_falls_with_more_images_and_classes():
    one = torch.zeros(1000, dtype=torch.int64)
    assert chance_purity(one, torch.tensor([10, 3]), 1) == 1.0
    balanced = torch.arange(1000) % 10
    ten = chance_purity(balanced, torch.tensor([10]), 10)
    assert 0.25 < ten < 0.35  # E[max share] of 10 draws over 10 equal classes is about 0.30
    assert chance_purity(balanced, torch.tensor([1]), 10) == 1.0  # one image is always pure
    assert chance_purity(balanced % 2, torch.tensor([10]), 2) > ten
    assert chance_purity(balanced, torch.tensor([10]), 10) == ten  # seeded
    assert math.isnan(chance_purity(balanced, torch.tensor([0]), 10))  # no latent with top images
