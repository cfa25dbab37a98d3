"""CIFAR-10 / CIFAR-100 from the official *binary* version (never the pickled "python" version).

Read from the official archive (md5 from the CIFAR page) or from its extracted folder (record layout and
size checked; no per-file checksum is published). Records: [label byte(s)] + 3072 bytes (R, G, B planes).
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metasae.data.refs import DatasetRef, slice_bounds
from metasae.data.sources import file_md5, missing_dataset, missing_split
from metasae.data.types import ImageDataset, uint8_to_float
from metasae.errors import MetasaeError

PIXELS = 3 * 32 * 32
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_NAMES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel
can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard
lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark
shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone
television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class BinaryCifar:
    name: str
    title: str
    archive: str
    archive_md5: str
    folder: str  # the archive's top folder
    files: dict[str, tuple[str, ...]]  # split -> record files in canonical order
    label_bytes: int  # CIFAR-100 records start with coarse then fine label
    label_names: tuple[str, ...]
    url: str


DATASETS = {
    d.name: d
    for d in (
        BinaryCifar(
            "cifar10",
            "CIFAR-10",
            "cifar-10-binary.tar.gz",
            "c32a1d4ab5d03f1284b67883e8d87530",
            "cifar-10-batches-bin",
            {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
            1,
            CIFAR10_NAMES,
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        ),
        BinaryCifar(
            "cifar100",
            "CIFAR-100 (fine labels)",
            "cifar-100-binary.tar.gz",
            "03b5dce01913d631647c71ecec9e9cb8",
            "cifar-100-binary",
            {"train": ("train.bin",), "test": ("test.bin",)},
            2,
            CIFAR100_NAMES,
            "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        ),
    )
}


def parse_records(data: bytes, label_bytes: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Binary records -> (uint8 images [N, 3, 32, 32], labels [N]); the last label byte is the class."""
    record = label_bytes + PIXELS
    if len(data) == 0 or len(data) % record:
        raise MetasaeError(
            f"{source}: {len(data)} bytes is not a whole number of {record}-byte CIFAR records"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), rows[:, label_bytes - 1].astype(np.int64)


def _read_split(ds: BinaryCifar, split: str, data_dir: Path) -> tuple[list[bytes], bool]:
    archive, folder = data_dir / ds.archive, data_dir / ds.folder
    if archive.is_file():
        if file_md5(archive) != ds.archive_md5:
            raise MetasaeError(
                f"{archive}: checksum mismatch (md5 {file_md5(archive)}, expected "
                f"{ds.archive_md5}); the archive is corrupt or not the official one"
            )
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            wanted = [f"{ds.folder}/{f}" for f in ds.files[split]]
            if all(w in members for w in wanted):
                return [tar.extractfile(members[w]).read() for w in wanted], True  # type: ignore[union-attr]
    paths = [folder / f for f in ds.files[split]]
    if all(p.is_file() for p in paths):
        return [p.read_bytes() for p in paths], False
    looked = [archive, *paths]
    available = [s for s, fs in ds.files.items() if all((folder / f).is_file() for f in fs)]
    if not archive.is_file() and not available:
        raise missing_dataset(ds.name, data_dir, looked)
    raise missing_split(ds.name, split, data_dir, looked, available)


def load(ref: DatasetRef, data_dir: Path) -> ImageDataset:
    ds = DATASETS[ref.name]
    blobs, verified = _read_split(ds, ref.split, data_dir)
    parts = [
        parse_records(b, ds.label_bytes, f"{ds.name}/{f}")
        for b, f in zip(blobs, ds.files[ref.split], strict=True)
    ]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.max() >= len(ds.label_names):
        raise MetasaeError(f"{data_dir / ds.folder}: labels outside 0..{len(ds.label_names) - 1}")
    start, stop = slice_bounds(ref, len(labels))
    integrity = "md5-verified archive" if verified else "extracted files, format-checked only"
    return ImageDataset(
        ref=str(ref),
        images=uint8_to_float(images[start:stop]),
        labels=torch.as_tensor(labels[start:stop]),
        label_names=list(ds.label_names),
        index=torch.arange(start, stop),
        is_real=True,
        description=f"real {ds.title}, {ref.split} split ({integrity})",
    )
