"""Device selection with a clear error instead of a CUDA traceback."""

from __future__ import annotations

import torch

from metasae.errors import MetasaeError


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MetasaeError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MetasaeError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def stage_on(device: torch.device, data: torch.Tensor, max_free_fraction: float = 0.5) -> torch.Tensor:
    """`data` moved to a GPU `device` once, when it takes at most `max_free_fraction` of its free memory, so
    training batches are gathered there instead of copied from the host every step; otherwise left as it
    is."""
    if device.type != "cuda":
        return data
    free, _total = torch.cuda.mem_get_info(device)
    return data.to(device) if data.numel() * data.element_size() <= max_free_fraction * free else data
