"""Dataset references `name[:split][[start]:[stop]]`: one grammar, one parser, one error message."""

from __future__ import annotations

import re
from dataclasses import dataclass

from metasae.errors import MetasaeError

GRAMMAR = "name[:split][[start]:[stop]], e.g. mnist:test[:8000], mnist:test[8000:], digits:train, glyphs"
DEFAULT_SPLIT = "train"
_REF = re.compile(r"^([a-z][a-z0-9_]*)(?::([a-z][a-z0-9_]*))?(?:\[(\d*):(\d*)\])?$")


@dataclass(frozen=True)
class DatasetRef:
    """A parsed reference; `str()` gives the canonical spelling recorded in artefacts."""

    name: str
    split: str
    start: int | None
    stop: int | None

    def __str__(self) -> str:
        base = f"{self.name}:{self.split}"
        if self.start is None and self.stop is None:
            return base
        return f"{base}[{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}]"


def parse_ref(ref: str) -> DatasetRef:
    """Parse a reference; the split defaults to `train` (datasets without one say so when loaded)."""
    m = _REF.match(ref.strip()) if isinstance(ref, str) else None
    if m is None:
        raise MetasaeError(f"bad dataset reference {ref!r}: expected {GRAMMAR}")
    name, split, start, stop = m.groups()
    return DatasetRef(
        name, split or DEFAULT_SPLIT, int(start) if start else None, int(stop) if stop else None
    )


def slice_bounds(ref: DatasetRef, n: int) -> tuple[int, int]:
    """Resolve the slice against a split of `n` images; out-of-range or empty slices are errors, not
    clamped."""
    start = 0 if ref.start is None else ref.start
    stop = n if ref.stop is None else ref.stop
    if stop > n or start >= stop:
        raise MetasaeError(
            f"dataset reference {str(ref)!r}: slice [{start}:{stop}] is empty or out of range "
            f"for split {ref.split!r} with {n} images (allowed 0 <= start < stop <= {n})"
        )
    return start, stop
