"""Stage `probe-sae`: an SAE on the ViT layer whose probes scored best, and how many of its latents each
dSprites factor needs (k-sparse probing).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from metasae.data import InputSpec
from metasae.data.dsprites_grid import FACTORS
from metasae.errors import MetasaeError
from metasae.io import atomic_path, provenance, stage_output, write_json
from metasae.metrics import k_sparse_probing
from metasae.models.vit import load_vit
from metasae.probes import COLUMNS, best_layer, layer_features, probe_images, vit_checkpoints
from metasae.seeds import derive_seed

KSPARSE_COLUMNS = ["layer", "factor", "k", "accuracy", "all_latents_accuracy"]


@stage_output("ksparse.json", shared=True)
def run_ksparse(
    vit_dir: str | Path,
    probes_csv: str | Path,
    dataset: str,
    out_dir: str | Path,
    spec: dict,
    ks: tuple[int, ...] = (1, 2, 4, 8, 16),
    seed: int = 0,
    data_dir: str | Path | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """SAE on the best layer's activations of the probe images; k-sparse probe accuracy per factor and k.

    Writes out_dir/ksparse.csv, out_dir/ksparse.json (k_needed: the smallest k reaching 95% of the
    all-latents accuracy) and the SAE under out_dir/sae/.
    """
    from metasae.sae.trainer import spec_to_configs, train_sae

    vit_dir, out_dir = Path(vit_dir), Path(out_dir)
    table = pd.read_csv(probes_csv)
    missing = set(COLUMNS) - set(table.columns)
    if missing:
        raise MetasaeError(f"{probes_csv}: missing columns {sorted(missing)}")
    layer = best_layer(table)
    model, _ = load_vit(vit_dir / vit_checkpoints(vit_dir)[-1]["dir"], device)
    ds, images, _ = probe_images(dataset, InputSpec(*model.cfg.input_shape), data_dir)
    acts = layer_features(model, (layer.split(".")[0],), images, device=device)[layer]
    if not isinstance(spec.get("width"), int):
        raise MetasaeError(f"dsprites.sae.width: a number of latents is required, got {spec.get('width')!r}")
    sae_cfg, train_cfg = spec_to_configs(
        spec, d_in=acts.shape[1], width=spec["width"], seed=seed, where="dsprites.sae"
    )
    sae = train_sae(
        acts,
        sae_cfg,
        train_cfg,
        out_dir / "sae",
        device=device,
        resume=False,
        extra_cfg={
            "source": {"kind": "vit_layer", "vit_dir": str(vit_dir), "layer": layer, "dataset": ds.ref}
        },
    )
    with torch.no_grad():
        codes = sae.encode(acts.to(device)).cpu()
    rows, needed = [], {}
    all_k = sae_cfg.width
    for factor in FACTORS:  # positions as their 32 grid classes here: k-sparse probing classifies
        acc = k_sparse_probing(
            codes,
            ds.factors[factor],
            ks=tuple(k for k in ks if k < all_k) + (all_k,),
            seed=derive_seed(seed, "ksparse") % 2**31,
        )
        full = acc[f"k{all_k}_accuracy"]
        for key, value in acc.items():
            rows.append(
                {
                    "layer": layer,
                    "factor": factor,
                    "k": int(key[1:].split("_")[0]),
                    "accuracy": value,
                    "all_latents_accuracy": full,
                }
            )
        needed[factor] = min(
            (r["k"] for r in rows if r["factor"] == factor and r["accuracy"] >= 0.95 * full), default=None
        )
    out = pd.DataFrame(rows, columns=KSPARSE_COLUMNS)
    with atomic_path(out_dir / "ksparse.csv") as tmp:
        out.to_csv(tmp, index=False)
    write_json(
        out_dir / "ksparse.json",
        {
            "layer": layer,
            "k_needed_95pct": needed,
            "width": all_k,
            "provenance": provenance({"sae": spec, "ks": list(ks)}, seed),
        },
    )
    return out
