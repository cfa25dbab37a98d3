"""SAE architectures over one shared base (`base`), their registry, trainer and checkpoints."""

from metasae.sae.base import SAE, LossParts, SAEConfig
from metasae.sae.checkpoint import export_saelens, load_sae, save_sae
from metasae.sae.registry import ARCHITECTURES, build_sae

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "LossParts",
    "SAEConfig",
    "build_sae",
    "export_saelens",
    "load_sae",
    "save_sae",
]
