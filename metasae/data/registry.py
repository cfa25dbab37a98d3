"""The one registry: dataset name -> loader, with splits and a description for `metasae datasets`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metasae.data import cifar, digits, dsprites, dsprites_gen, dsprites_grid, glyphs, mnist_like, patches
from metasae.data.refs import DatasetRef, parse_ref
from metasae.data.types import ImageDataset
from metasae.errors import MetasaeError

DATA_DIR_ENV = "METASAE_DATA_DIR"
DEFAULT_DATA_DIR = Path("data")


@dataclass(frozen=True)
class Entry:
    name: str
    is_real: bool
    splits: tuple[str, ...]
    description: str
    load: Callable[[DatasetRef, Path], ImageDataset]


def _embedded(module) -> Callable[[DatasetRef, Path], ImageDataset]:
    return lambda ref, _data_dir: module.load(ref)


_ENTRIES: list[Entry] = [
    *(
        Entry(
            d.name,
            True,
            d.splits,
            f"real {d.title} (torchvision layout <data_dir>/{d.folder})",
            mnist_like.load,
        )
        for d in mnist_like.DATASETS.values()
    ),
    *(
        Entry(
            d.name,
            True,
            tuple(d.files),
            f"real {d.title}, official binary version (<data_dir>/{d.archive} or <data_dir>/{d.folder}/)",
            cifar.load,
        )
        for d in cifar.DATASETS.values()
    ),
    Entry(
        "dsprites",
        True,
        dsprites_grid.SPLITS,
        "real dSprites, 737,280 images 64x64, label = shape; grid = "
        f"canonical order, sample = fixed seeded permutation (<data_dir>/dsprites/{dsprites.FILENAME})",
        dsprites.load,
    ),
    Entry("digits", False, digits.SPLITS, digits.DESCRIPTION, _embedded(digits)),
    Entry("glyphs", False, glyphs.SPLITS, glyphs.DESCRIPTION, _embedded(glyphs)),
    Entry("patches", False, patches.SPLITS, patches.DESCRIPTION, _embedded(patches)),
    Entry("dsprites_gen", False, dsprites_grid.SPLITS, dsprites_gen.DESCRIPTION, _embedded(dsprites_gen)),
]
REGISTRY: dict[str, Entry] = {e.name: e for e in _ENTRIES}


def list_datasets() -> dict[str, str]:
    """name -> description (real ones say where their files go)."""
    return {
        e.name: f"[{'real' if e.is_real else 'embedded'}] {e.description}; splits: {', '.join(e.splits)}"
        for e in _ENTRIES
    }


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """Explicit argument, else $METASAE_DATA_DIR, else ./data."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise MetasaeError(f"unknown dataset {name!r}: allowed {', '.join(REGISTRY)}")
    return REGISTRY[name]


def load_dataset(ref: str, data_dir: str | Path | None = None) -> ImageDataset:
    """Load a dataset reference (see `parse_ref`); real datasets are read from `data_dir`, never
    downloaded."""
    parsed = parse_ref(ref)
    e = entry(parsed.name)
    if parsed.split not in e.splits:
        raise MetasaeError(
            f"dataset reference {ref!r}: unknown split {parsed.split!r} for {e.name} "
            f"(allowed: {', '.join(e.splits)})"
        )
    return e.load(parsed, resolve_data_dir(data_dir))
