"""Stage `explore`: the study's offline latent explorer, a folder that opens from disk (metasae.explorer)."""

from __future__ import annotations

from pathlib import Path

from metasae.explorer import build_explorer


def explore(results: str | Path, out: str | Path, data_dir: str | Path | None = None) -> Path:
    """Write the explorer of a results folder's analysed depths beside `out` (its page); returns its path."""
    data_dir = Path(data_dir) if data_dir else None
    return build_explorer(Path(results), Path(out), data_dir)
