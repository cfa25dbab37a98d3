"""Every figure of the study: per depth (`depth`), study level (`summary`) and dSprites probes (`probe`).

All of them are written by `save` (matplotlib's Agg backend, no display; atomic, so a killed job never leaves
half a PNG), except the per-depth image grids, which Pillow draws. Importing this package does not load
matplotlib: it selects the Agg backend for when the modules that plot import pyplot.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from metasae.io import atomic_path

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

if "matplotlib" in sys.modules:  # loaded already (e.g. for a dataset's fonts): switch it
    sys.modules["matplotlib"].use("Agg")
else:  # read when matplotlib loads; importing it here would cost every stage that draws no plot
    os.environ["MPLBACKEND"] = "Agg"

DPI = 110


def save(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Write `fig` as a PNG at `path` (atomically) and free it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def figure_legend(fig: plt.Figure, ax: plt.Axes, y: float, ncol: int | None = None) -> None:
    """One legend for the whole figure from `ax`'s lines, centred above (y > 1) or below (y <= 0) the panels;
    `ncol` columns (default: one per entry, at most 4)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper center",
            ncol=ncol or min(4, len(labels)),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, y),
        )
