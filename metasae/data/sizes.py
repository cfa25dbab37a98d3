"""Images in each split of the real datasets, as their publishers release them: the config door checks a
slice against these at parse time, before any file is read (the files may live only on the compute nodes).

Sources: the MNIST, Fashion-MNIST, KMNIST and QMNIST papers and READMEs (QMNIST's `test` is its full 60,000:
the 10,000 of MNIST's test set, then 50,000 reconstructed), EMNIST (Cohen et al. 2017, Table II) and the
CIFAR page. tests/test_config_door.py checks every real dataset of the registry has all its splits here.
"""

from __future__ import annotations

_MNIST_LIKE = {"train": 60_000, "test": 10_000}

REAL_SPLIT_SIZES: dict[str, dict[str, int]] = {
    "mnist": _MNIST_LIKE,
    "fashion_mnist": _MNIST_LIKE,
    "kmnist": _MNIST_LIKE,
    "qmnist": {"train": 60_000, "test": 60_000},
    "emnist_balanced": {"train": 112_800, "test": 18_800},
    "emnist_letters": {"train": 124_800, "test": 20_800},
    "emnist_digits": {"train": 240_000, "test": 40_000},
    "cifar10": {"train": 50_000, "test": 10_000},
    "cifar100": {"train": 50_000, "test": 10_000},
}
