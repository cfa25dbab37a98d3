"""scikit-learn's bundled dataset files, read straight from its package folder: `import sklearn` costs about
1.8 CPU-s (it pulls in scipy.stats), which every job loading an embedded dataset paid for 100 kB of data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from metasae.errors import MetasaeError


def sklearn_file(relative: str) -> Path:
    """A file inside the installed scikit-learn package (e.g. `datasets/data/digits.csv.gz`), found without
    importing it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise MetasaeError("the embedded datasets need scikit-learn installed (its bundled files)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise MetasaeError(f"scikit-learn has no bundled file {relative} (looked at {path})")
    return path


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The optdigits images [1797, 8, 8] (float64, 0..16) and labels, as `sklearn.datasets.load_digits`."""
    data = np.loadtxt(sklearn_file("datasets/data/digits.csv.gz"), delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def sample_image(name: str) -> np.ndarray:
    """One of `sklearn.datasets.load_sample_images` (china, flower) as uint8 [H, W, 3]."""
    from PIL import Image

    with Image.open(sklearn_file(f"datasets/images/{name}.jpg")) as image:
        return np.asarray(image)
