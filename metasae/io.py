"""Atomic file writes, safetensors + JSON checkpoints and provenance.

Every stage writes through these helpers so that a crash never leaves a half-written file under a
final name: a reader either sees the old file, the complete new one, or nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import hashlib
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from metasae import __version__
from metasae.errors import MetasaeError
from metasae.layout import CFG_FILE, SHA256_KEY

T = TypeVar("T")
PARTIAL_SUFFIX = ".partial"  # a stage's outputs are written into .<folder>.partial beside their folder
RESUME_KEY_FILE = ".resume-key"  # in a resumable stage's partial folder: which run's checkpoint it holds
_UMASK = os.umask(0)
os.umask(_UMASK)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's bytes, or a folder's entries, to the disk: a rename is durable only once both sides
    are, so a crash right after publishing never leaves a marker beside torn or missing data."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # a folder on a filesystem that cannot sync folders (some network mounts)
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _write_error(exc: BaseException, path: Path, temporary: Path | None = None) -> OSError | None:
    """The OSError naming `path` (the output asked for, never our hidden temp file) that a library's write
    error stands for, or None where `exc` is no I/O error or names another file (an input being read)."""
    if isinstance(exc, SafetensorError):  # safetensors' Rust I/O errors end in "(os error 28)"
        found = re.search(r"(?:os error |code: )(\d+)", str(exc))
        if found is None:
            return None
        code = int(found.group(1))
        return OSError(code, os.strerror(code), str(path))
    if not isinstance(exc, OSError):
        return None
    if exc.filename is not None and temporary is not None and Path(exc.filename) != temporary:
        return None
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds, synced to the
    disk before and after the rename. A write error (full disk, read-only folder; safetensors', pyarrow's or
    PIL's own) becomes an OSError naming `path`, the file the user knows of."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are meant to be shared
        yield tmp_path
        fsync(tmp_path)
        os.replace(tmp_path, path)
        if not _is_partial(path.parent):  # a stage's partial folder is synced once, when it is published
            fsync(path.parent)
    except Exception as exc:
        named = _write_error(exc, path, tmp_path)
        if named is None:
            raise
        raise named from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _is_partial(folder: Path) -> bool:
    return folder.name.startswith(".") and folder.name.endswith(PARTIAL_SUFFIX)


@contextlib.contextmanager
def staged_dir(
    out_dir: str | os.PathLike,
    marker: str,
    resumable: bool = False,
    shared: bool = False,
    resume_key: str = "",
) -> Iterator[Path]:
    """All-or-nothing outputs of a stage: it writes into `.<name>.partial` beside `out_dir`, and only when it
    succeeds do its entries move into `out_dir`, `marker` (the file readers require) last; the old marker goes
    first, so readers never see old and new outputs as one complete set. On any failure, the publishing
    included, `out_dir` holds no new marker and the partial folder is removed, except for a `resumable` stage
    interrupted (Ctrl-C; SIGKILL runs nothing), whose checkpoint a rerun with the same `resume_key` (the
    run's config digest) resumes; any other partial folder found on entry is cleared. `out_dir` is the
    stage's own: what an earlier run left there goes, unless it is `shared` with another stage (then only the
    entries this stage writes are replaced). An I/O error names `out_dir`'s path, never the partial's."""
    out_dir = Path(out_dir)
    partial = out_dir.parent / f".{out_dir.name}{PARTIAL_SUFFIX}"
    try:
        _prepare_partial(partial, resumable, resume_key)
    except OSError as exc:  # a read-only parent folder: name the output, not our hidden folder
        _fail_staged(exc, partial, out_dir)
    try:
        yield partial
    except (KeyboardInterrupt, SystemExit):
        if not resumable:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    except BaseException as exc:
        _fail_staged(exc, partial, out_dir)
    try:
        _publish(partial, out_dir, marker, shared)
    except BaseException as exc:  # a read-only or full output folder: nothing of the partial stays behind
        _fail_staged(exc, partial, out_dir)


def _fail_staged(exc: BaseException, partial: Path, out_dir: Path) -> NoReturn:
    """Remove the partial folder and raise `exc`, its paths naming the output folder (see `_outside`)."""
    shutil.rmtree(partial, ignore_errors=True)
    named = _outside(exc, partial, out_dir)
    if named is exc:
        raise exc
    raise named from None


def _prepare_partial(partial: Path, resumable: bool, resume_key: str) -> None:
    """An empty partial folder, or (resumable) the one a killed run of the same `resume_key` left."""
    key_file = partial / RESUME_KEY_FILE
    own = resumable and key_file.is_file() and key_file.read_text() == resume_key
    if partial.exists() and not own:
        shutil.rmtree(partial)  # left by a killed run, of other settings, or by a failed publish
    partial.mkdir(parents=True, exist_ok=True)
    if resumable and not own:
        key_file.write_text(resume_key)


def _outside(exc: BaseException, partial: Path, out_dir: Path) -> BaseException:
    """`exc` as the user should read it: where an OSError, SafetensorError or MetasaeError names the hidden
    partial folder, it names the output folder; any other exception is returned as it is."""
    if isinstance(exc, SafetensorError):
        exc = _write_error(exc, out_dir) or exc
    if isinstance(exc, MetasaeError) and str(partial) in str(exc):
        return MetasaeError(str(exc).replace(str(partial), str(out_dir)))
    if not isinstance(exc, OSError):
        return exc
    where = str(exc.filename or out_dir).replace(str(partial), str(out_dir))
    return OSError(exc.errno, (exc.strerror or str(exc)).replace(str(partial), str(out_dir)), where)


def _publish(partial: Path, out_dir: Path, marker: str, shared: bool) -> None:
    """Move a finished partial folder's entries into `out_dir`, durably: every file synced first, the folder
    synced before the marker's rename and after it (`fsync`)."""
    if not (partial / marker).is_file():
        raise MetasaeError(f"{out_dir}: the stage finished without writing {marker}")
    (partial / RESUME_KEY_FILE).unlink(missing_ok=True)
    _fsync_contents(partial)
    created = not out_dir.is_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / marker).exists():
        (out_dir / marker).unlink()
        fsync(out_dir)  # the old marker is gone from the disk before any new file arrives beside it
    written = {entry.name for entry in partial.iterdir()}
    for old in [] if shared else [e for e in out_dir.iterdir() if e.name not in written]:
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    for entry in sorted(partial.iterdir(), key=lambda e: e.name == marker):
        target = out_dir / entry.name
        if entry.name == marker:
            fsync(out_dir)  # the data's renames reach the disk before the marker's
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    fsync(out_dir)
    partial.rmdir()
    if created:
        fsync(out_dir.parent)


def _fsync_contents(folder: Path) -> None:
    """Sync every file and folder under `folder`, the deepest first (`folder`'s own entries move out, so
    they need no sync: a folder sync costs a journal commit, milliseconds even when nothing changed)."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                fsync(os.path.join(root, name))
        if root != str(folder):
            fsync(root)


def stage_output(
    marker: str, arg: str = "out_dir", resumable: bool = False, shared: bool = False
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a stage function so that its output folder argument `arg` is staged (see `staged_dir`); a
    `resumable` stage's resume key is the digest of its other arguments, so a partial folder left by a run of
    other settings is cleared instead of resumed."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> T:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            others = {k: v for k, v in bound.arguments.items() if k != arg}
            key = _arguments_digest(others) if resumable else ""
            with staged_dir(bound.arguments[arg], marker, resumable, shared, key) as partial:
                bound.arguments[arg] = partial
                return fn(*bound.args, **bound.kwargs)

        return run

    return decorate


def _arguments_digest(arguments: dict[str, Any]) -> str:
    """sha256 of a call's arguments (JSON, sorted keys; what JSON cannot hold, as its repr)."""
    text = json.dumps(arguments, sort_keys=True, default=lambda obj: repr(obj))
    return hashlib.sha256(text.encode()).hexdigest()


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
    if remembered_digest(path) != expected:
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


RACY_S = 2.0  # a file modified less than this long ago may change again within one mtime tick


def remembered_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """A file's digest, remembered within the process per (path, inode, size, mtime): the depths of a stack
    are checked once per stage, each loading its parents and caches again, and re-hashing them read up to
    60 MB a time (a third of the real study's explorer job). A file rewritten in place changes its mtime,
    unless within the clock's granularity (milliseconds): a file younger than RACY_S is hashed afresh, as
    git treats its "racily clean" index entries."""
    st = os.stat(path)
    if time.time_ns() - st.st_mtime_ns < RACY_S * 1e9:
        return file_digest(path, algorithm)
    return _digest(os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, algorithm)


@functools.lru_cache(maxsize=1024)
def _digest(path: str, inode: int, size: int, mtime_ns: int, algorithm: str) -> str:
    return file_digest(path, algorithm)


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
