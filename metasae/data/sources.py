"""Finding official dataset files in a local folder and checking them against known checksums.

A file may sit uncompressed, gzipped (torchvision keeps both) or inside an official zip archive. A gzip
is accepted if either its own md5 or its decompressed md5 is the known one (copies are sometimes
recompressed); a file with no known checksum is read, with `verified` False, so callers can say so.
"""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from metasae.errors import MetasaeError
from metasae.io import remembered_digest


@dataclass(frozen=True)
class OfficialFile:
    """One official file, by its uncompressed name, with whatever checksums are published for it."""

    name: str
    gz_md5: str | None = None
    raw_md5: str | None = None
    archive: str | None = None  # an official zip holding `member` (a .gz), e.g. EMNIST's gzip.zip
    member: str | None = None
    archive_md5: str | None = None

    def candidates(self, folder: Path) -> list[Path]:
        paths = [folder / self.name, folder / f"{self.name}.gz"]
        return paths + ([folder / self.archive] if self.archive else [])


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def file_md5(path: Path) -> str:
    """md5 of a (possibly large) file, remembered within the process (`remembered_digest`)."""
    return remembered_digest(path, "md5")


def present(spec: OfficialFile, folder: Path) -> bool:
    return any(p.is_file() for p in spec.candidates(folder))


def read_official(spec: OfficialFile, folder: Path) -> tuple[bytes, bool]:
    """The file's decompressed bytes and whether a known checksum vouched for them; mismatch is an error.

    Candidates are tried in order; the first verified copy wins, else the first readable one.
    """
    unverified: bytes | None = None
    for path in spec.candidates(folder):
        if not path.is_file():
            continue
        found = _read_archive_member(spec, path) if path.suffix == ".zip" else _read_file(spec, path)
        if found is None:
            continue
        raw, verified = found
        if verified:
            return raw, True
        unverified = raw if unverified is None else unverified
    if unverified is None:
        raise MetasaeError(
            f"{spec.name}: not found (looked for {', '.join(map(str, spec.candidates(folder)))})"
        )
    return unverified, False


def _read_archive_member(spec: OfficialFile, path: Path) -> tuple[bytes, bool] | None:
    if spec.archive_md5 and file_md5(path) != spec.archive_md5:
        raise MetasaeError(
            f"{path}: checksum mismatch (md5 {file_md5(path)}, expected {spec.archive_md5}); "
            "the archive is corrupt or not the official one — fetch it again"
        )
    with zipfile.ZipFile(path) as zf:
        if spec.member not in zf.namelist():
            return None
        packed = zf.read(spec.member)  # zip and gzip CRCs guard the member once the archive is verified
    return _gunzip(packed, path), spec.archive_md5 is not None


def _read_file(spec: OfficialFile, path: Path) -> tuple[bytes, bool]:
    packed = path.read_bytes()
    is_gz = path.suffix == ".gz"
    if is_gz and spec.gz_md5 and md5(packed) == spec.gz_md5:
        return _gunzip(packed, path), True
    raw = _gunzip(packed, path) if is_gz else packed
    if spec.raw_md5:
        if md5(raw) != spec.raw_md5:
            raise MetasaeError(
                f"{path}: checksum mismatch (md5 of decompressed bytes {md5(raw)}, expected "
                f"{spec.raw_md5}); the file is corrupt or not the official one — fetch it again"
            )
        return raw, True
    if is_gz and spec.gz_md5:
        raise MetasaeError(
            f"{path}: checksum mismatch (md5 {md5(packed)}, expected {spec.gz_md5}); "
            "the file is corrupt or not the official one — fetch it again"
        )
    return raw, False


def _gunzip(packed: bytes, path: Path) -> bytes:
    try:
        return gzip.decompress(packed)
    except (OSError, EOFError) as exc:
        raise MetasaeError(f"{path}: corrupt gzip data ({exc}); fetch the file again") from None


def fetch_hint(name: str, data_dir: Path) -> str:
    return (
        f"on a machine with a network run `metasae fetch-data --dataset {name} --data-dir {data_dir}` and "
        "copy that folder here, then pass --data-dir (or set METASAE_DATA_DIR)"
    )


def missing_dataset(name: str, data_dir: Path, looked: list[Path]) -> MetasaeError:
    return MetasaeError(
        f"dataset {name!r} not found under {data_dir} (looked for "
        f"{', '.join(map(str, looked))}); {fetch_hint(name, data_dir)}"
    )


def missing_split(
    name: str, split: str, data_dir: Path, looked: list[Path], available: list[str]
) -> MetasaeError:
    return MetasaeError(
        f"dataset {name!r}: split {split!r} is missing from the local copy under {data_dir} "
        f"(looked for {', '.join(map(str, looked))}); splits present: "
        f"{', '.join(available) or 'none'}; {fetch_hint(name, data_dir)}"
    )
