"""Atomic file writes, safetensors + JSON checkpoints and provenance.

Every stage writes through these helpers so that a crash never leaves a half-written file under a
final name: a reader either sees the old file, the complete new one, or nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import inspect
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from metasae import __version__
from metasae.errors import MetasaeError
from metasae.layout import CFG_FILE, SHA256_KEY

T = TypeVar("T")
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


@contextlib.contextmanager
def staged_dir(
    out_dir: str | os.PathLike, marker: str, resumable: bool = False, shared: bool = False
) -> Iterator[Path]:
    """All-or-nothing outputs of a stage: it writes into `.<name>.partial` beside `out_dir`, and only when it
    succeeds do its entries move into `out_dir`, `marker` (the file readers require) last; the old marker goes
    first, so readers never see old and new outputs as one complete set. On failure `out_dir` is left as it
    was and the partial folder is removed, except for a `resumable` stage interrupted (Ctrl-C; SIGKILL runs
    nothing), whose checkpoint a rerun resumes. `out_dir` is the stage's own: what an earlier run left there
    goes, unless it is `shared` with another stage (then only the entries this stage writes are replaced)."""
    out_dir = Path(out_dir)
    partial = out_dir.parent / f".{out_dir.name}.partial"
    if partial.exists() and not resumable:
        shutil.rmtree(partial)  # left by a killed run
    partial.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
    except (KeyboardInterrupt, SystemExit):
        if not resumable:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    except OSError as exc:  # disk full, read-only, ...: name the output the user asked for, not our temp
        shutil.rmtree(partial, ignore_errors=True)
        where = str(exc.filename or out_dir).replace(str(partial), str(out_dir))
        raise OSError(exc.errno, exc.strerror, where) from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if not (partial / marker).is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise MetasaeError(f"{out_dir}: the stage finished without writing {marker}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / marker).unlink(missing_ok=True)
    written = {entry.name for entry in partial.iterdir()}
    for old in [] if shared else [e for e in out_dir.iterdir() if e.name not in written]:
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    for entry in sorted(partial.iterdir(), key=lambda e: e.name == marker):
        target = out_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    partial.rmdir()


def stage_output(
    marker: str, arg: str = "out_dir", resumable: bool = False, shared: bool = False
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a stage function so that its output folder argument `arg` is staged (see `staged_dir`)."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> T:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with staged_dir(bound.arguments[arg], marker, resumable, shared) as partial:
                bound.arguments[arg] = partial
                return fn(*bound.args, **bound.kwargs)

        return run

    return decorate


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
) -> str:
    """Write tensors as safetensors (atomically); returns the file's sha256, for the record beside it."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        digest = sha256_file(tmp)
    return digest


def verify_file(path: str | os.PathLike, checksums: dict | None, producer: str) -> None:
    """Refuse a file whose bytes differ from those recorded when it was written (`checksums`: the
    {file name: sha256} of its folder's cfg.json or metrics.json), so a corrupt input never gives exit 0."""
    path = Path(path)
    expected = (checksums or {}).get(path.name)
    if not path.is_file():
        raise MetasaeError(f"{path}: file not found; rerun `metasae {producer}`")
    if expected is None:
        raise MetasaeError(f"{path}: no sha256 recorded when it was written; rerun `metasae {producer}`")
    if sha256_file(path) != expected:
        raise MetasaeError(
            f"{path}: bytes differ from those written (corrupt or replaced); rerun `metasae {producer}`"
        )


def load_tensors(
    path: str | os.PathLike, device: str = "cpu", checksums: dict | None = None, producer: str | None = None
) -> dict[str, torch.Tensor]:
    """Read a safetensors file; with `producer` given, first check it against its recorded sha256."""
    path = Path(path)
    if producer is not None:
        verify_file(path, checksums, producer)
    if not path.is_file():
        raise MetasaeError(f"{path}: file not found")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise MetasaeError(f"{path}: corrupt or truncated safetensors file ({exc})") from None


def save_checkpoint(
    directory: str | os.PathLike,
    weights_name: str,
    tensors: dict[str, torch.Tensor],
    cfg: dict,
    record_sha256: bool = True,
) -> None:
    """Weights as safetensors plus `cfg.json` beside them (SAELens style), recording the weights' sha256;
    cfg is written last."""
    directory = Path(directory)
    digest = save_tensors(directory / weights_name, tensors)
    write_json(directory / CFG_FILE, {**cfg, SHA256_KEY: {weights_name: digest}} if record_sha256 else cfg)


def load_checkpoint(
    directory: str | os.PathLike, weights_name: str, producer: str, device: str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict]:
    """Weights and cfg.json of a folder written by save_checkpoint, the weights checked against the cfg."""
    directory = Path(directory)
    cfg = read_json(directory / CFG_FILE)
    return load_tensors(directory / weights_name, device, cfg.get(SHA256_KEY), producer), cfg


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
