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
