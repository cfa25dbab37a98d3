"""`glyphs`: digits and letters rendered from the fonts matplotlib ships, randomly distorted.

An out-of-distribution probe for a digit classifier, labelled like EMNIST-balanced (47 classes). For the
15 letters EMNIST merges (c, i, j, k, l, m, o, p, s, u, v, w, x, y, z) a sample of the upper-case class is
drawn as either case, as EMNIST does. Each image: a font, a stroke width (erode/dilate), a random affine
map and a smooth elastic field, rendered at 64x64 and area-downsampled to 28x28, white on black, glyph
fitted to a 20x20 box like MNIST. Classes are interleaved (image i has label i mod 47), so every split and
every prefix slice is class-balanced.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metasae.data.refs import DatasetRef
from metasae.data.types import ImageDataset, embedded_split
from metasae.seeds import generator

PER_CLASS = {"train": 60, "test": 20}
SPLITS = tuple(PER_CLASS)
MERGED = set("cijklmopsuvwxyz")
LABEL_NAMES = list(string.digits + string.ascii_uppercase) + list("abdefghnqrt")
SPLIT_SIZES = {split: n * len(LABEL_NAMES) for split, n in PER_CLASS.items()}  # classes are interleaved
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-Bold.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
    "cmb10.ttf",
)
CANVAS, BOX, OUT = 64, 44, 28  # render size, glyph box (20/28 of the canvas, as MNIST), output size
DESCRIPTION = (
    "embedded stand-in: letters and digits rendered from matplotlib's fonts with random affine, "
    "stroke and elastic distortion, 28x28, EMNIST-balanced 47 labels, "
    f"{PER_CLASS['train']}/{PER_CLASS['test']} per class train/test"
)


def _chars(label: str) -> str:
    """Characters drawn for a class: both cases for the letters EMNIST merges."""
    return label + label.lower() if label.lower() in MERGED else label


@lru_cache(maxsize=1)
def _font_paths() -> tuple[Path, ...]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return tuple(folder / f for f in FONTS if (folder / f).is_file())


@lru_cache(maxsize=4096)
def _base(font: int, char: str) -> torch.Tensor:
    """One clean glyph, its bounding box fitted to BOX px (aspect kept) and centred on the canvas."""
    from PIL import Image, ImageDraw, ImageFont

    pil_font = ImageFont.truetype(str(_font_paths()[font]), 96)
    im = Image.new("L", (192, 192))
    ImageDraw.Draw(im).text((48, 24), char, fill=255, font=pil_font)
    im = im.crop(im.getbbox())
    k = BOX / max(im.size)
    im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.Resampling.LANCZOS)
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    top, left = (CANVAS - im.height) // 2, (CANVAS - im.width) // 2
    canvas[top : top + im.height, left : left + im.width] = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(canvas)


def _stroke(x: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Per-image stroke change in px: -1 erodes, +1/+2 dilate (max-pool), 0 keeps."""
    out = x.clone()
    for w in (-1, 1, 2):
        sel = width == w
        if sel.any():
            xs = x[sel]
            k = 2 * abs(w) + 1
            out[sel] = -F.max_pool2d(-xs, k, 1, abs(w)) if w < 0 else F.max_pool2d(xs, k, 1, w)
    return out


def _warp(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random affine (rotation, scale, shear, shift) plus a smooth elastic field, one grid_sample."""
    n = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)  # noqa: E731
    rot, scale, shear = u(-0.25, 0.25), u(0.85, 1.12), u(-0.3, 0.3)
    tx, ty = u(-0.08, 0.08), u(-0.08, 0.08)
    cos, sin = torch.cos(rot), torch.sin(rot)
    a = torch.stack([torch.stack([cos, -sin + shear * cos], 1), torch.stack([sin, cos + shear * sin], 1)], 1)
    theta = torch.cat([a / scale.view(n, 1, 1), torch.stack([tx, ty], 1).unsqueeze(2)], dim=2)
    grid = F.affine_grid(theta, [n, 1, CANVAS, CANVAS], align_corners=False)
    coarse = torch.randn(n, 2, 5, 5, generator=g) * u(0.0, 0.05).view(n, 1, 1, 1)
    field = F.interpolate(coarse, size=(CANVAS, CANVAS), mode="bicubic", align_corners=False)
    return F.grid_sample(
        x, grid + field.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros", align_corners=False
    )


@lru_cache(maxsize=len(SPLITS))
def _generate(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = generator("glyphs", split)
    n_cls = len(LABEL_NAMES)
    labels = torch.arange(PER_CLASS[split] * n_cls) % n_cls
    n = len(labels)
    fonts = torch.randint(len(_font_paths()), (n,), generator=g)
    case = torch.rand(n, generator=g)
    options = [_chars(LABEL_NAMES[c]) for c in labels.tolist()]
    chars = [opts[int(r * len(opts))] for opts, r in zip(options, case.tolist(), strict=True)]  # r in [0, 1)
    base = torch.stack([_base(f, ch) for f, ch in zip(fonts.tolist(), chars, strict=True)]).unsqueeze(1)
    widths = torch.randint(-1, 3, (n,), generator=g)
    warped = _warp(_stroke(base, widths), g)
    images = F.interpolate(warped, size=(OUT, OUT), mode="bilinear", antialias=True, align_corners=False)
    return images.clamp_(0.0, 1.0), labels


def load(ref: DatasetRef) -> ImageDataset:
    images, labels = _generate(ref.split)
    return embedded_split(ref, images, labels, LABEL_NAMES, DESCRIPTION)
