"""Stage `cache-acts`: one named layer's activations over a whole dataset, with a verifiable manifest.

The cache holds exactly one row per dataset image, in dataset order, with each image's stable index, so the
pixels shown for a latent later are the pixels that produced its code (no augmentation, ever).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from tqdm.auto import tqdm

from metasae.activations import ROLES, ActivationCache, effective_rank
from metasae.data import InputSpec, load_dataset, to_input_spec
from metasae.devices import resolve_device
from metasae.errors import MetasaeError
from metasae.io import provenance, stage_output, write_json
from metasae.layout import ACTS_FILE, MANIFEST_FILE
from metasae.models import check_layer, load_classifier
from metasae.seeds import generator
from metasae.tensor_stream import stream_tensors


class _LayerReached(Exception):
    """Raised by the capture hook: the layers after the cached one would only waste the forward pass."""


class _Capture:
    """Forward hook that copies one layer's output into a preallocated [N, dim] buffer, then stops the
    pass."""

    def __init__(self, out: torch.Tensor) -> None:
        self.out, self.filled, self.expected_rows = out, 0, 0

    def __call__(self, _module, _inputs, output: torch.Tensor) -> None:
        rows = output.flatten(1)
        if rows.shape[0] != self.expected_rows:
            raise MetasaeError(
                f"layer produced {rows.shape[0]} rows for a batch of {self.expected_rows} images; "
                "a cache must hold exactly one row per image"
            )
        # a sum is NaN/inf if any element is (or if finite values overflow: then the exact check clears it)
        if not bool(torch.isfinite(rows.sum())) and not bool(torch.isfinite(rows).all()):
            bad = self.filled + int((~torch.isfinite(rows)).any(1).nonzero()[0])
            raise MetasaeError(f"NaN/inf activation at image {bad} (dataset order)")
        self.out[self.filled : self.filled + rows.shape[0]] = rows.detach().to("cpu", torch.float32)
        self.filled += rows.shape[0]
        raise _LayerReached


@stage_output(MANIFEST_FILE)
@torch.no_grad()
def cache_activations(
    model_dir: str | Path,
    dataset: str,
    layer: str,
    out_dir: str | Path,
    batch_size: int = 512,
    data_dir: str | Path | None = None,
    device: str = "cpu",
    role: str = "eval",
    shuffle_labels: bool = False,
) -> ActivationCache:
    """`role`: what the stack does with these images, recorded in the manifest (`fit`: trains on them;
    `eval`: every statistic is computed on them). `shuffle_labels`: permute the labels with a fixed seed (the
    negative control: a latent can be no purer than chance on them)."""
    if role not in ROLES:
        raise MetasaeError(f"--role {role!r}; allowed: {', '.join(ROLES)}")
    dev = resolve_device(device)
    model, model_cfg = load_classifier(model_dir, device=str(dev))
    module = check_layer(model, layer, where=str(model_dir))
    data = load_dataset(dataset, data_dir)
    images = to_input_spec(data.images, InputSpec(*model.input_shape))
    n = len(images)
    if n == 0:
        raise MetasaeError(f"dataset {dataset!r} is empty")
    labels = data.labels.to(torch.int64)
    if shuffle_labels:
        labels = labels[torch.randperm(n, generator=generator("shuffle-labels", data.ref))]
    dim = _layer_width(model, module, images[:1].to(dev))
    acts = torch.empty(n, dim, dtype=torch.float32)
    probe = _Capture(acts)
    out_dir = Path(out_dir)
    layout = {"labels": (torch.int64, (n,)), "index": (torch.int64, (n,)), "acts": (torch.float32, (n, dim))}
    handle = module.register_forward_hook(probe)
    try:
        # Each batch's rows go to disk and into the checksum on a background thread while the next batch runs.
        with stream_tensors(out_dir / ACTS_FILE, layout) as stream:
            stream.write("labels", labels)
            stream.write("index", data.index.to(torch.int64))
            for start in tqdm(
                range(0, n, batch_size), desc=f"cache {layer} on {dataset}", disable=None, leave=False
            ):
                batch = images[start : start + batch_size]
                probe.expected_rows = len(batch)
                with contextlib.suppress(_LayerReached):
                    model(batch.to(dev))
                stream.write("acts", acts[start : probe.filled])
    finally:
        handle.remove()

    manifest = {
        "n": n,
        "dim": dim,
        "dtype": "float32",
        "sha256": stream.sha256,
        "source_model": str(model_dir),
        "model": model_cfg["model"],
        "model_train_dataset": model_cfg.get("train_dataset"),
        "dataset": data.ref,
        "dataset_is_real": data.is_real,
        "dataset_description": data.description,
        "label_names": list(data.label_names),
        "layer": layer,
        "role": role,
        "labels_shuffled": shuffle_labels,
        "effective_rank": effective_rank(acts),
        "provenance": provenance(
            {
                "model_dir": str(model_dir),
                "dataset": dataset,
                "layer": layer,
                "batch_size": batch_size,
                "role": role,
                "shuffle_labels": shuffle_labels,
            },
            model_cfg.get("train_config", {}).get("seed"),
        ),
    }
    write_json(out_dir / MANIFEST_FILE, manifest)
    return ActivationCache(acts, labels, data.index, manifest)


def _layer_width(model: torch.nn.Module, module: torch.nn.Module, one_image: torch.Tensor) -> int:
    widths: list[int] = []
    handle = module.register_forward_hook(lambda _m, _i, out: widths.append(out.flatten(1).shape[1]))
    try:
        model(one_image)
    finally:
        handle.remove()
    return widths[0]
