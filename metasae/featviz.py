"""Feature visualisation by optimisation: input images that maximise a classifier neuron or an SAE latent.

As in the research log (Adam 0.1, affine jitter, 3x3 blur, L2 1e-3, TV 1e-4, clamp to [0, 1]), but batched
(one image per target, optimised together) and seeded with an explicit generator so it is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from metasae.optim import Adam

# objective(images [B, C, H, W]) -> [B]: the activation of target b on image b, to be maximised.
Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FeatureVizConfig:
    steps: int = 256
    lr: float = 0.1
    jitter: int = 2  # max pixel shift per step, each direction
    blur_every: int = 4  # apply a 3x3 Gaussian blur to the image every this many steps (0: never)
    l2: float = 1e-3
    tv: float = 1e-4


DEFAULT_VIZ = FeatureVizConfig()


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Sum of absolute neighbour differences per image [B]: penalises high-frequency noise."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).sum(1)
    dw = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).sum(1)
    return dh + dw


def blur3x3(images: torch.Tensor) -> torch.Tensor:
    k1 = torch.tensor([1.0, 2.0, 1.0], device=images.device, dtype=images.dtype)
    kernel = (k1[:, None] * k1[None, :] / 16).expand(images.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=images.shape[1])


def visualise(
    objective: Objective,
    n_targets: int,
    input_shape: tuple[int, int, int],
    generator: torch.Generator,
    cfg: FeatureVizConfig = DEFAULT_VIZ,
    device: str | torch.device = "cpu",
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Images [n_targets, C, H, W] in [0, 1]; image b maximises objective(...)[b] under the regularisers.

    Optimisation starts from `start` [C, H, W] (default mid-grey) plus a little noise. A unit that is zero
    (post-ReLU) at the start gets no gradient, so callers pass an image the units respond to, e.g. the mean
    probe image.
    """
    base = torch.full(input_shape, 0.5) if start is None else start.detach().cpu().float()
    init = (base + 0.01 * torch.randn(n_targets, *input_shape, generator=generator)).clamp(0.0, 1.0)
    shifts = torch.randint(-cfg.jitter, cfg.jitter + 1, (cfg.steps, 2), generator=generator).tolist()
    x = init.to(device).requires_grad_(True)
    opt = Adam([x], lr=cfg.lr)
    for step in tqdm(range(cfg.steps), desc="feature viz", disable=None, leave=False):
        opt.zero_grad()
        dy, dx = shifts[step]
        jittered = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        loss = (
            -objective(jittered) + cfg.l2 * x.pow(2).flatten(1).sum(1) + cfg.tv * total_variation(x)
        ).sum()
        loss.backward()
        opt.step()
        with torch.no_grad():
            if cfg.blur_every and (step + 1) % cfg.blur_every == 0:
                x.copy_(blur3x3(x))
            x.clamp_(0.0, 1.0)
    return x.detach().cpu()


def layer_objective(
    model: torch.nn.Module,
    layer: torch.nn.Module,
    readout: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
) -> Objective:
    """Objective reading `layer`'s output (flattened per image) through `readout`, column targets[b] for
    image b.

    readout = identity gives classifier neurons; an SAE's pre-activations give its latents.
    """

    def objective(images: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            model(images)
        finally:
            handle.remove()
        values = readout(captured[0].flatten(1))
        return values.gather(1, targets.to(values.device).view(-1, 1)).squeeze(1).to(images.device)

    return objective
