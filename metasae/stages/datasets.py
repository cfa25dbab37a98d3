"""Stage `datasets`: the dataset registry, one line per dataset (real ones say where their files go)."""

from __future__ import annotations

from metasae.data import list_datasets


def datasets() -> list[str]:
    return [f"{name:16s} {description}" for name, description in list_datasets().items()]
