"""The MNIST family in IDX files, torchvision folder layout: MNIST, Fashion-MNIST, KMNIST, QMNIST, EMNIST.

Each split is read only from its own files, so a local copy holding some splits serves those. Checksums:
torchvision's md5 of each .gz (and of EMNIST's gzip.zip); md5 of the decompressed MNIST and Fashion-MNIST
files as widely published (MNIST's match the project's ../shared/data/README.md), used when a copy was
recompressed.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from metasae.data.idx import parse_idx
from metasae.data.refs import DatasetRef, slice_bounds
from metasae.data.sources import OfficialFile, missing_dataset, missing_split, present, read_official
from metasae.data.types import ImageDataset, uint8_to_float
from metasae.errors import MetasaeError


@dataclass(frozen=True)
class IdxDataset:
    name: str
    title: str
    folder: str  # under data_dir: torchvision's `<Class>/raw`
    label_names: tuple[str, ...]
    files: dict[str, tuple[OfficialFile, OfficialFile]] = field(
        default_factory=dict
    )  # split -> images, labels
    transpose: bool = False  # EMNIST stores each image column-major
    label_column: int | None = None  # QMNIST labels are [N, 8] with the class in column 0

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)


def _mnist_files(
    checksums: dict[str, tuple[str, str | None]],
) -> dict[str, tuple[OfficialFile, OfficialFile]]:
    """{file: (gz md5, raw md5)} in torchvision's MNIST naming -> split -> (images, labels)."""
    spec = {name: OfficialFile(name, gz, raw) for name, (gz, raw) in checksums.items()}
    return {
        "train": (spec["train-images-idx3-ubyte"], spec["train-labels-idx1-ubyte"]),
        "test": (spec["t10k-images-idx3-ubyte"], spec["t10k-labels-idx1-ubyte"]),
    }


_EMNIST_ZIP_MD5 = "58c8d27c78d21e728a6bc7b3cc06412e"


def _emnist_files(split_name: str) -> dict[str, tuple[OfficialFile, OfficialFile]]:
    def f(part: str, kind: str) -> OfficialFile:
        name = f"emnist-{split_name}-{part}-{kind}"
        return OfficialFile(name, archive="gzip.zip", member=f"gzip/{name}.gz", archive_md5=_EMNIST_ZIP_MD5)

    return {part: (f(part, "images-idx3-ubyte"), f(part, "labels-idx1-ubyte")) for part in ("train", "test")}


DATASETS: dict[str, IdxDataset] = {
    d.name: d
    for d in (
        IdxDataset(
            "mnist",
            "MNIST",
            "MNIST/raw",
            tuple(string.digits),
            _mnist_files(
                {
                    "train-images-idx3-ubyte": (
                        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                        "6bbc9ace898e44ae57da46a324031adb",
                    ),
                    "train-labels-idx1-ubyte": (
                        "d53e105ee54ea40749a09fcbcd1e9432",
                        "a25bea736e30d166cdddb491f175f624",
                    ),
                    "t10k-images-idx3-ubyte": (
                        "9fb629c4189551a2d022fa330f9573f3",
                        "2646ac647ad5339dbf082846283269ea",
                    ),
                    "t10k-labels-idx1-ubyte": (
                        "ec29112dd5afa0611ce80d1b7f02629c",
                        "27ae3e4e09519cfbb04c329615203637",
                    ),
                }
            ),
        ),
        IdxDataset(
            "fashion_mnist",
            "Fashion-MNIST",
            "FashionMNIST/raw",
            (
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            _mnist_files(
                {
                    "train-images-idx3-ubyte": (
                        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                    ),
                    "train-labels-idx1-ubyte": (
                        "25c81989df183df01b3e8a0aad5dffbe",
                        "9018921c3c673c538a1fc5bad174d6f9",
                    ),
                    "t10k-images-idx3-ubyte": (
                        "bef4ecab320f06d8554ea6380940ec79",
                        "8181f5470baa50b63fa0f6fddb340f0a",
                    ),
                    "t10k-labels-idx1-ubyte": (
                        "bb300cfdad3c16e7a12a480ee83cd310",
                        "15d484375f8d13e6eb1aabb0c3f46965",
                    ),
                }
            ),
        ),
        IdxDataset(
            "kmnist",
            "Kuzushiji-MNIST",
            "KMNIST/raw",
            ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
            _mnist_files(
                {
                    "train-images-idx3-ubyte": ("bdb82020997e1d708af4cf47b453dcf7", None),
                    "train-labels-idx1-ubyte": ("e144d726b3acfaa3e44228e80efcd344", None),
                    "t10k-images-idx3-ubyte": ("5c965bf0a639b31b8f53240b1b52f4d7", None),
                    "t10k-labels-idx1-ubyte": ("7320c461ea6c1c855c0b718fb2a4b134", None),
                }
            ),
        ),
        IdxDataset(
            "qmnist",
            "QMNIST (test split: 60,000 images, the first 10,000 are MNIST's test set)",
            "QMNIST/raw",
            tuple(string.digits),
            {
                "train": (
                    OfficialFile("qmnist-train-images-idx3-ubyte", "ed72d4157d28c017586c42bc6afe6370"),
                    OfficialFile("qmnist-train-labels-idx2-int", "0058f8dd561b90ffdd0f734c6a30e5e4"),
                ),
                "test": (
                    OfficialFile("qmnist-test-images-idx3-ubyte", "1394631089c404de565df7b7aeaf9412"),
                    OfficialFile("qmnist-test-labels-idx2-int", "5b5b05890a5e13444e108efe57b788aa"),
                ),
            },
            label_column=0,
        ),
        IdxDataset(
            "emnist_balanced",
            "EMNIST balanced (47 classes)",
            "EMNIST/raw",
            tuple(string.digits + string.ascii_uppercase + "abdefghnqrt"),
            _emnist_files("balanced"),
            transpose=True,
        ),
        IdxDataset(
            "emnist_letters",
            "EMNIST letters (labels 1..26 = a..z, case merged; 0 unused)",
            "EMNIST/raw",
            ("N/A", *string.ascii_lowercase),
            _emnist_files("letters"),
            transpose=True,
        ),
        IdxDataset(
            "emnist_digits",
            "EMNIST digits",
            "EMNIST/raw",
            tuple(string.digits),
            _emnist_files("digits"),
            transpose=True,
        ),
    )
}


def load(ref: DatasetRef, data_dir: Path) -> ImageDataset:
    ds = DATASETS[ref.name]
    folder = data_dir / ds.folder
    image_spec, label_spec = ds.files[ref.split]
    if not (present(image_spec, folder) and present(label_spec, folder)):
        available = [s for s, pair in ds.files.items() if all(present(f, folder) for f in pair)]
        looked = image_spec.candidates(folder) + label_spec.candidates(folder)
        if not any(present(f, folder) for pair in ds.files.values() for f in pair):
            raise missing_dataset(ref.name, data_dir, looked)
        raise missing_split(ref.name, ref.split, data_dir, looked, available)
    image_bytes, images_ok = read_official(image_spec, folder)
    label_bytes, labels_ok = read_official(label_spec, folder)
    images = parse_idx(image_bytes, str(folder / image_spec.name))
    labels = parse_idx(label_bytes, str(folder / label_spec.name))
    if ds.label_column is not None:
        labels = labels[:, ds.label_column]
    _check(ds, images, labels, folder / image_spec.name)
    start, stop = slice_bounds(ref, len(labels))
    chosen = images[start:stop]
    if ds.transpose:
        chosen = chosen.transpose(0, 2, 1)
    integrity = "md5-verified" if images_ok and labels_ok else "format-checked only (no published checksum)"
    return ImageDataset(
        ref=str(ref),
        images=uint8_to_float(chosen).unsqueeze(1),
        labels=torch.as_tensor(labels[start:stop].astype(np.int64)),
        label_names=list(ds.label_names),
        index=torch.arange(start, stop),
        is_real=True,
        description=f"real {ds.title}, {ref.split} split ({integrity})",
    )


def _check(ds: IdxDataset, images: np.ndarray, labels: np.ndarray, path: Path) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise MetasaeError(
            f"{path}: expected uint8 images [N, 28, 28], got {images.dtype} {list(images.shape)}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise MetasaeError(f"{path}: {len(images)} images but labels of shape {list(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(ds.label_names)):
        raise MetasaeError(f"{path}: labels outside 0..{len(ds.label_names) - 1}")
