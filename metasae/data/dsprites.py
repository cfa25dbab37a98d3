"""Real dSprites from the official `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`, without unpickling.

Arrays are read with `allow_pickle=False` (the pickled `metadata` entry is never touched; the factor
metadata is known, see `dsprites_grid`). Only the requested images are kept: `imgs` is streamed out of
the compressed archive in blocks, so memory is O(requested), not the 3 GB of the full array. Integrity:
the file's git blob id in the official repository. Pixels are 0/1 in the file and stay 0.0/1.0 (not /255:
log-facts §1.7 pitfall 10).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from metasae.data import dsprites_grid as grid
from metasae.data.refs import DatasetRef
from metasae.data.sources import missing_dataset
from metasae.data.types import ImageDataset
from metasae.errors import MetasaeError
from metasae.io import file_digest

FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
GIT_BLOB_SHA1 = "d98996d3f8ee1550e06b9d4ed78d0beb478910d5"
URL = f"https://github.com/deepmind/dsprites-dataset/raw/master/{FILENAME}"
_BLOCK = 4096  # images per read while streaming


def candidates(data_dir: Path) -> list[Path]:
    return [data_dir / "dsprites" / FILENAME, data_dir / FILENAME]


def git_blob_sha1(path: Path) -> str:
    """`git hash-object` of a file: sha1 over 'blob <size>\\0' + content."""
    return file_digest(path, "sha1", prefix=f"blob {path.stat().st_size}\0".encode())


def read_rows(path: Path, rows: torch.Tensor) -> np.ndarray:
    """`imgs[rows]` from the npz, streaming the compressed member and keeping only the wanted rows."""
    order = torch.argsort(rows)
    wanted = rows[order].numpy()
    try:
        with zipfile.ZipFile(path) as zf, zf.open("imgs.npy") as fh:
            version = np.lib.format.read_magic(fh)
            shape, fortran, dtype = (
                np.lib.format.read_array_header_1_0(fh)
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0(fh)
            )
            if fortran or dtype.hasobject or len(shape) != 3:
                raise MetasaeError(f"{path}: imgs.npy has an unexpected layout {shape} {dtype}")
            row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
            out = np.empty((len(wanted), *shape[1:]), dtype=dtype)
            pos, k = 0, 0  # next row in the stream, next wanted row
            while k < len(wanted):
                n = min(_BLOCK, shape[0] - pos)
                if n <= 0:
                    raise MetasaeError(f"{path}: requested image {wanted[k]} beyond {shape[0]} images")
                block = np.frombuffer(fh.read(n * row_bytes), dtype=dtype).reshape(-1, *shape[1:])
                if len(block) != n:
                    raise MetasaeError(f"{path}: imgs.npy is truncated")
                end = k + int(np.searchsorted(wanted[k:], pos + n))
                out[k:end] = block[wanted[k:end] - pos]
                pos, k = pos + n, end
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
        raise MetasaeError(f"{path}: not a readable dSprites npz ({exc})") from None
    result = np.empty_like(out)
    result[order.numpy()] = out
    return result


def load(ref: DatasetRef, data_dir: Path) -> ImageDataset:
    path = next((p for p in candidates(data_dir) if p.is_file()), None)
    if path is None:
        raise missing_dataset(ref.name, data_dir, candidates(data_dir))
    if (blob := git_blob_sha1(path)) != GIT_BLOB_SHA1:
        raise MetasaeError(
            f"{path}: checksum mismatch (git blob sha1 {blob}, expected {GIT_BLOB_SHA1}); "
            "the file is corrupt or not the official one — fetch it again"
        )
    index = grid.split_indices(ref)
    with np.load(path, allow_pickle=False) as npz:
        classes = npz["latents_classes"]
    if classes.shape != (grid.N_GRID, 6) or not np.array_equal(
        grid.classes_of(torch.arange(grid.N_GRID)).numpy(), classes[:, 1:]
    ):
        raise MetasaeError(f"{path}: latents_classes is not the canonical factor grid")
    factors = grid.factors_of(index)
    images = torch.from_numpy(read_rows(path, index)).to(torch.float32).unsqueeze(1)
    return ImageDataset(
        ref=str(ref),
        images=images,
        labels=factors["shape"].clone(),
        label_names=list(grid.LABEL_NAMES),
        index=index,
        is_real=True,
        description=f"real dSprites, {ref.split} split (git-blob-verified)",
        factors=factors,
    )
