"""SAE on disk: `sae.safetensors` + `cfg.json` (SAELens-like keys, our config, provenance), and export to
SAELens's own folder layout so a SAELens user can load our SAEs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metasae.errors import MetasaeError
from metasae.io import load_tensors, read_json, save_checkpoint
from metasae.layout import CFG_FILE, SAE_WEIGHTS, SHA256_KEY
from metasae.sae.base import SAEConfig
from metasae.sae.registry import build_sae

SAELENS_WEIGHTS = "sae_weights.safetensors"


def _saelens_keys(sae: Any) -> dict[str, Any]:
    """The cfg.json keys SAELens reads (v5 and v6 names), for an SAE that takes raw inputs."""
    cfg = sae.cfg
    arch = sae.saelens_architecture
    keys: dict[str, Any] = {
        "architecture": arch,
        "d_in": cfg.d_in,
        "d_sae": cfg.width,  # SAELens names the number of latents d_sae
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": cfg.pre_encoder_bias,
        "normalize_activations": "none",  # input scaling is folded into the weights
        "activation_fn_str": "topk" if arch == "topk" else "relu",
        "activation_fn_kwargs": {"k": cfg.k} if arch == "topk" else {},
        "finetuning_scaling_factor": False,
        "hook_name": "",
        "hook_layer": 0,
        "hook_head_index": None,
        "model_name": "",
        "context_size": 1,
        "prepend_bos": False,
        "dataset_path": "",
        "metadata": {},
    }
    if arch == "topk":
        keys["k"] = cfg.k
    return keys


def save_sae(sae: Any, out_dir: str | Path, extra_cfg: dict | None = None) -> None:
    """Write weights (state_dict names: W_enc, W_dec, b_enc, b_dec, + threshold/log_threshold) and
    cfg.json."""
    cfg = {
        **_saelens_keys(sae),
        "metasae_architecture": sae.cfg.architecture,
        "sae_cfg": sae.cfg.to_dict(),
        **(extra_cfg or {}),
    }
    save_checkpoint(out_dir, SAE_WEIGHTS, dict(sae.state_dict()), cfg)


def load_sae(sae_dir: str | Path, device: str = "cpu", cfg: dict | None = None) -> Any:
    """Rebuild an SAE saved by save_sae; it takes raw inputs (any training-time scaling is folded in).

    `cfg`: the folder's cfg.json when the caller has read it already (a `stack.Depth` reads it once).
    """
    sae_dir = Path(sae_dir)
    cfg = read_json(sae_dir / CFG_FILE) if cfg is None else cfg
    tensors = load_tensors(sae_dir / SAE_WEIGHTS, device, cfg.get(SHA256_KEY), producer="train-sae")
    if "sae_cfg" not in cfg:
        raise MetasaeError(f"{sae_dir / CFG_FILE}: missing key 'sae_cfg' (not written by metasae save_sae)")
    sae = build_sae(SAEConfig.from_dict(cfg["sae_cfg"], where=str(sae_dir / CFG_FILE)))
    expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        raise MetasaeError(
            f"{sae_dir / SAE_WEIGHTS}: tensors {found} do not match cfg.json, which implies {expected}"
        )
    sae.load_state_dict(tensors)
    return sae.to(device)


def export_saelens(sae_dir: str | Path, out_dir: str | Path) -> Path:
    """Folder with SAELens's names: sae_weights.safetensors (W_enc [d_in, width], W_dec [width, d_in], b_enc,
    b_dec, and `threshold` [width] for JumpReLU-style inference) + its cfg.json (width as SAELens's d_sae)."""
    sae = load_sae(sae_dir)
    tensors = {name: getattr(sae, name).detach() for name in ("W_enc", "W_dec", "b_enc", "b_dec")}
    if sae.saelens_architecture == "jumprelu":
        tensors["threshold"] = sae.threshold.detach().expand(sae.cfg.width).clone()
    out_dir = Path(out_dir)
    save_checkpoint(
        out_dir,
        SAELENS_WEIGHTS,
        tensors,
        {**_saelens_keys(sae), "metadata": {"exported_from": str(sae_dir)}},
        record_sha256=False,  # SAELens's own cfg.json keys only
    )
    return out_dir
