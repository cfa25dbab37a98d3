"""Stage `check-data`: load every dataset a study config names, first, so a missing one fails one job."""

from __future__ import annotations

from pathlib import Path

from metasae.io import write_json
from metasae.study import check_data_available


def check_data(config: dict, out: str | Path) -> list[dict]:
    """Write what each dataset reference resolved to; raise naming every dataset that is missing."""
    found = check_data_available(config)
    write_json(out, {"datasets": found})
    return found
