"""A small pre-norm Vision Transformer with a CLS token whose stages (`embed`, `block0` ... `blockN`) are
named modules, so hooks read every layer's token activations [N, 1 + patches, width].

It subclasses `Classifier` (images in [0, 1], normalisation inside) but keeps its own loader: its
architecture has more hyperparameters than `build_classifier(name, num_classes, input_shape)` carries, and
its layer outputs are token sequences (probed by CLS token and by mean over patches), not flat vectors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from metasae.errors import MetasaeError
from metasae.io import load_checkpoint, save_checkpoint
from metasae.models.base import Classifier

WEIGHTS = "model.safetensors"
STEMS = ("patch", "conv")


@dataclass(frozen=True)
class ViTConfig:
    num_classes: int
    input_shape: tuple[int, int, int] = (1, 32, 32)
    patch: int = 8
    width: int = 64
    depth: int = 3
    heads: int = 4
    mlp: int = 128
    stem: str = "patch"  # "patch": one strided conv (the ViT paper); "conv": 3x3 stride-2 convs (Xiao et al.)
    stem_channels: int = 16  # the conv stem's first conv; each further stride-2 conv doubles it

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(self.input_shape))  # JSON round-trips give lists
        c, h, w = self.input_shape
        for key in ("num_classes", "patch", "width", "depth", "heads", "mlp", "stem_channels"):
            if getattr(self, key) < 1:
                raise MetasaeError(f"vit.{key}={getattr(self, key)}: must be >= 1")
        if self.stem not in STEMS:
            raise MetasaeError(f"vit.stem={self.stem!r}; allowed: {', '.join(STEMS)}")
        if self.stem == "conv" and (self.patch < 2 or self.patch & (self.patch - 1)):
            raise MetasaeError(
                f"vit.patch={self.patch}: the conv stem halves the image per conv, so the patch must be a "
                "power of two >= 2"
            )
        if min(c, h, w) < 1 or h % self.patch or w % self.patch:
            raise MetasaeError(
                f"vit.input_shape={list(self.input_shape)}: height and width must be positive "
                f"multiples of vit.patch={self.patch}"
            )
        if self.width % self.heads:
            raise MetasaeError(f"vit.width={self.width} must be divisible by vit.heads={self.heads}")

    @property
    def n_patches(self) -> int:
        return (self.input_shape[1] // self.patch) * (self.input_shape[2] // self.patch)


def conv_stem(cfg: ViTConfig) -> nn.Sequential:
    """log2(patch) 3x3 stride-2 convs (channels stem_channels, 2x, 4x, ...) with GELUs, then a 1x1 conv to
    the width: one token per patch x patch cell, as the patchify conv, but built from local edges first."""
    layers: list[nn.Module] = []
    channels = cfg.input_shape[0]
    for i in range(cfg.patch.bit_length() - 1):
        out = cfg.stem_channels * 2**i
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GELU()]
        channels = out
    layers.append(nn.Conv2d(channels, cfg.width, 1))
    return nn.Sequential(*layers)


class Embed(nn.Module):
    """Patchify (one strided conv, or the conv stem), prepend the CLS token, add learned position
    embeddings."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if cfg.stem == "conv":
            self.stem = conv_stem(cfg)
        else:
            self.patchify = nn.Conv2d(cfg.input_shape[0], cfg.width, cfg.patch, stride=cfg.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos = nn.Parameter(torch.zeros(1, 1 + cfg.n_patches, cfg.width))

    def forward(self, x: Tensor) -> Tensor:
        tokens = (self.stem(x) if hasattr(self, "stem") else self.patchify(x)).flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width)
        self.attn = nn.MultiheadAttention(cfg.width, cfg.heads, batch_first=True)
        self.norm2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, cfg.mlp), nn.GELU(), nn.Linear(cfg.mlp, cfg.width))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(Classifier):
    """Images [N, C, H, W] in [0, 1] -> logits; normalised as (x - 0.5) / 0.5, so binary sprites become ±1."""

    def __init__(self, cfg: ViTConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(cfg.num_classes, *cfg.input_shape, mean=0.5, std=0.5)
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.blocks = [f"block{i}" for i in range(cfg.depth)]
        for name in self.blocks:
            self.add_module(name, Block(cfg))
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.num_classes)
        self.layer_names = ("embed", *self.blocks)
        self._init(generator)

    @torch.no_grad()
    def _init(self, generator: torch.Generator | None) -> None:
        """Truncated-normal(0.02) matrices and tokens, He-normal conv-stem kernels (a stack of 0.02-scale
        convs would shrink the signal to nothing), zero biases, unit LayerNorm gains, from `generator`."""
        for name, p in self.named_parameters():
            if name.startswith("embed.stem.") and p.dim() == 4:
                nn.init.kaiming_normal_(p, nonlinearity="relu", generator=generator)
            elif p.dim() >= 2:
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04, generator=generator)
            elif name.split(".")[-2].startswith("norm"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.zero_()

    def forward(self, images: Tensor) -> Tensor:
        x = self.embed(self.normalise(images))
        for name in self.blocks:
            x = self.get_submodule(name)(x)
        return self.head(self.norm(x[:, 0]))


def save_vit(model: ViT, out_dir: str | Path, cfg: dict) -> None:
    """Weights + cfg.json; the architecture goes under cfg['vit'] so `load_vit` can rebuild it."""
    save_checkpoint(out_dir, WEIGHTS, model.state_dict(), {**cfg, "vit": dataclasses.asdict(model.cfg)})


def load_vit(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[ViT, dict]:
    """Rebuild a ViT from its cfg.json and load its weights; corrupt files raise MetasaeError."""
    tensors, cfg = load_checkpoint(model_dir, WEIGHTS, producer="train-vit")
    if not isinstance(cfg.get("vit"), dict):
        raise MetasaeError(f"{Path(model_dir) / 'cfg.json'}: missing key 'vit' (not a ViT checkpoint)")
    try:
        model = ViT(ViTConfig(**cfg["vit"]))
    except TypeError as exc:
        raise MetasaeError(f"{Path(model_dir) / 'cfg.json'}: bad 'vit' block ({exc})") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise MetasaeError(
            f"{Path(model_dir) / WEIGHTS}: weights do not match cfg.json ({str(exc).splitlines()[0]})"
        ) from None
    return model.to(device).eval(), cfg
