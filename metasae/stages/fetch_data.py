"""`metasae fetch-data`: a real download of a real dataset's official files into a local folder.

Run on a machine with a network, then copy the folder to an offline one. Uses torchvision's downloaders
(which check their md5s) for the MNIST family and plain checked downloads for the archives torchvision
would otherwise fetch in pickled form (CIFAR) or does not know (dSprites). No test calls this.
"""

from __future__ import annotations

from pathlib import Path

from metasae.data import cifar, dsprites, mnist_like
from metasae.data.registry import entry
from metasae.errors import MetasaeError


def fetch_data(name: str, data_dir: str | Path) -> Path:
    """Download `name` into `data_dir` in the layout `load_dataset` reads; returns the data folder."""
    e = entry(name)
    if not e.is_real:
        raise MetasaeError(f"dataset {name!r} is embedded (generated offline); there is nothing to fetch")
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        _download(name, root)
    except (OSError, RuntimeError) as exc:  # urllib errors are OSErrors; torchvision raises RuntimeError
        raise MetasaeError(
            f"fetch-data {name}: download into {root} failed ({exc}); this needs a network connection"
        ) from None
    return root


def _download(name: str, root: Path) -> None:
    from torchvision import datasets
    from torchvision.datasets.utils import download_url

    if name in ("mnist", "fashion_mnist", "kmnist"):
        cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "kmnist": datasets.KMNIST}[
            name
        ]
        cls(str(root), train=True, download=True)  # downloads both splits' .gz files and keeps them
    elif name == "qmnist":
        for what in ("train", "test"):
            datasets.QMNIST(str(root), what=what, download=True)
    elif name in mnist_like.DATASETS:  # EMNIST: one official zip (kept, and md5-checked) holds every split
        datasets.EMNIST(str(root), split=name.removeprefix("emnist_"), download=True)
    elif name in cifar.DATASETS:
        ds = cifar.DATASETS[name]
        download_url(ds.url, str(root), filename=ds.archive, md5=ds.archive_md5)
    elif name == "dsprites":
        download_url(dsprites.URL, str(root / "dsprites"), filename=dsprites.FILENAME)
        found = dsprites.git_blob_sha1(root / "dsprites" / dsprites.FILENAME)
        if found != dsprites.GIT_BLOB_SHA1:
            raise MetasaeError(
                f"{root / 'dsprites' / dsprites.FILENAME}: downloaded file has git blob sha1 "
                f"{found}, expected {dsprites.GIT_BLOB_SHA1}"
            )
