"""Stage `export`: a trained SAE in another library's folder layout (SAELens today)."""

from __future__ import annotations

from pathlib import Path

from metasae.errors import MetasaeError
from metasae.sae import export_saelens

EXPORT_FORMATS = ("saelens",)


def export(sae_dir: str | Path, out_dir: str | Path, fmt: str) -> Path:
    if fmt not in EXPORT_FORMATS:
        raise MetasaeError(f"--format {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}")
    return export_saelens(sae_dir, out_dir)
