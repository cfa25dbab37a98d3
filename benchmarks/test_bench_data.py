"""Embedded dataset generation against the floor: one bilinear resampling pass over as many 64x64 canvases
(both generators render on a 64x64 canvas; neither can cost less than touching each output pixel once)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metasae.data import glyphs as glyphs_module
from metasae.data import load_dataset
from metasae.seeds import generator


def _resample_floor(n: int):
    canvases = torch.rand(n, 1, 64, 64, generator=generator("bench", "data", n))
    grid = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), [n, 1, 64, 64], align_corners=False)
    return lambda: F.grid_sample(canvases, grid, mode="bilinear", align_corners=False)


def _fresh_glyphs(ref: str):
    """Clear the generator's memo caches so each round renders the fonts and distortions anew."""

    def run() -> None:
        glyphs_module._generate.cache_clear()
        glyphs_module._base.cache_clear()
        load_dataset(ref)

    return run


@pytest.mark.parametrize(("ref", "n"), [("glyphs:test", 940), ("dsprites_gen:sample[:2000]", 2000)])
def test_generate_dataset(compare, ref, n):
    ours = _fresh_glyphs(ref) if ref.startswith("glyphs") else (lambda: load_dataset(ref))
    assert len(load_dataset(ref)) == n
    compare(ours, _resample_floor(n), "grid_sample of n 64x64 canvases", rounds=3, items=n)
