"""Peak RSS of caching 60,000 x 256 activations (the log's fc1 over MNIST train), in a fresh process.

Real MNIST train may be absent (and its loader checks md5), so the dataset loader is swapped for 60,000
MNIST-shaped images (1 x 28 x 28 float in [0, 1], 10 labels): the memory the cache path needs is the same.

    python benchmarks/rss_cache_60k.py [--n 60000] [--out /tmp/acts60k]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

import metasae.stages.cache_acts as activations
from metasae.data import ImageDataset
from metasae.models import build_classifier, save_classifier
from metasae.seeds import generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60_000)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    g = generator("bench", "rss", a.n)
    data = ImageDataset(
        ref=f"synthetic:train[:{a.n}]",
        images=torch.rand(a.n, 1, 28, 28, generator=g),
        labels=torch.randint(10, (a.n,), generator=g),
        label_names=[str(i) for i in range(10)],
        index=torch.arange(a.n),
        is_real=False,
        description="MNIST-shaped noise",
    )
    activations.load_dataset = lambda ref, data_dir=None: data
    with tempfile.TemporaryDirectory() as tmp:
        model = build_classifier("mlp", 10)
        save_classifier(
            model,
            Path(tmp) / "model",
            {"model": "mlp", "num_classes": 10, "input_shape": list(model.input_shape)},
        )
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        cache = activations.cache_activations(
            Path(tmp) / "model", data.ref, "fc1", a.out or Path(tmp) / "acts"
        )
        elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        f"cached {tuple(cache.acts.shape)} in {elapsed:.1f} s; peak RSS {peak / 2**20:.2f} GiB "
        f"(before caching, with the images in memory: {before / 2**20:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
