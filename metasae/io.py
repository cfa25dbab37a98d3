"""Atomic file writes, safetensors + JSON checkpoints and provenance.

Every stage writes through these helpers so that a crash never leaves a half-written file under a
final name: a reader either sees the old file, the complete new one, or nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from metasae import __version__
from metasae.errors import MetasaeError
from metasae.layout import CFG_FILE

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are meant to be shared
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise MetasaeError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetasaeError(f"{path}: corrupt JSON ({exc})") from None


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_tensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MetasaeError(f"{path}: file not found")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise MetasaeError(f"{path}: corrupt or truncated safetensors file ({exc})") from None


def save_checkpoint(
    directory: str | os.PathLike, weights_name: str, tensors: dict[str, torch.Tensor], cfg: dict
) -> None:
    """Weights as safetensors plus `cfg.json` beside them (SAELens style); cfg is written last."""
    directory = Path(directory)
    save_tensors(directory / weights_name, tensors)
    write_json(directory / CFG_FILE, cfg)


def load_checkpoint(
    directory: str | os.PathLike, weights_name: str, device: str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict]:
    directory = Path(directory)
    cfg = read_json(directory / CFG_FILE)
    return load_tensors(directory / weights_name, device=device), cfg


def file_digest(
    path: str | os.PathLike, algorithm: str = "sha256", prefix: bytes = b"", chunk: int = 1 << 22
) -> str:
    """Hex digest of `prefix` + a file's bytes, read in chunks (files may be gigabytes)."""
    digest = hashlib.new(algorithm, prefix)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return file_digest(path)


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The commit of the code that made an artefact ('unknown' outside a git checkout; '+dirty' if
    modified)."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def provenance(config: dict | None = None, seed: int | None = None) -> dict:
    """What every artefact records about how it was made."""
    return {
        "config": config or {},
        "seed": seed,
        "metasae_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
