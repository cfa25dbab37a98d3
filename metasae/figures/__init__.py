"""Every figure of the study: per depth (`depth`), study level (`summary`) and dSprites probes (`probe`).

All of them are written by `save` (matplotlib's Agg backend, no display; atomic, so a killed job never leaves
half a PNG). Importing this package loads matplotlib, so stages import it only where they draw.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from metasae.io import atomic_path  # noqa: E402

DPI = 110


def save(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Write `fig` as a PNG at `path` (atomically) and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
