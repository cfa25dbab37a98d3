"""SAEBench's meta_structure eval, in its own output shape, for every decoder-mode meta-SAE of the study.

Depth d (d >= 2) is the meta-SAE of depth d-1; its decoder FVE is 1 - the FVU in its metrics.json, measured
on depth d-1's unit-normed decoder rows about their mean, as SAEBench measures. `SAEBENCH_REFERENCE` is
the published number to compare with.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metasae.layout import parse_summary_path
from metasae.stack import Depth

SAEBENCH_EVAL_TYPE = "meta_structure_decoder_variance"  # sae_bench/evals/meta_structure/eval_output.py
SAEBENCH_REFERENCE = {  # the number the issue cites for SAEBench's meta_structure eval
    "decoder_fraction_variance_explained": 0.2434,
    "model": "Pythia-70M",
    "settings": "BatchTopK meta-SAE, k=4, width 0.25 x d_sae, "  # SAEBench's words, SAELens's d_sae
    "1500 steps of 1024 rows, lr 5e-4",
}


def meta_structure(summary_paths: list[str | Path], config: dict) -> dict:
    """SAEBench's meta_structure eval for every decoder-mode meta-SAE, one entry per (run, depth d >= 2) in
    the shape of SAEBench's MetaStructureEvalOutput: depth d is the meta-SAE of depth d-1, and its decoder
    FVE is 1 - the FVU in its metrics.json (measured on depth d-1's unit-normed decoder rows, about their
    mean, as SAEBench measures). SAEBench's MSE is per element, ours per row: it is divided by d_in here.
    Fields SAEBench fills from its own environment (uuid, versions, train time) are null."""
    spec = config["meta"]["modes"].get("decoder", {})
    entries = []
    for path in sorted(map(str, summary_paths)):
        where = parse_summary_path(path)
        if where["mode"] != "decoder" or where["depth"] < 2:
            continue
        folder = Depth.load(Path(path.replace("/analysis/", "/sae/")).parent)
        if folder.stopped or folder.metrics.get("fvu") is None:
            continue
        run = f"{where['model']}/seed{where['seed']}/{where['dataset']}/{where['layer']}/{where['sae']}"
        parent = f"{'' if where['depth'] == 2 else 'decoder/'}depth{where['depth'] - 1}"
        d_in = int(folder.cfg.get("d_in") or folder.cfg.get("sae_cfg", {}).get("d_in") or 0)
        created = folder.cfg.get("provenance", {}).get("created_utc")
        entries.append(
            {
                "eval_type_id": SAEBENCH_EVAL_TYPE,
                "eval_config": {
                    "random_seed": where["seed"],
                    "width_ratio": (spec.get("width") or {}).get("factor"),
                    "k": spec.get("k"),
                    "train_steps": folder.cfg.get("steps"),
                    "train_batch_size": spec.get("batch_size"),
                    "learning_rate": spec.get("lr"),
                    "weight_decay": 0.0,
                    "autocast": bool(spec.get("autocast")),
                    "dtype": "float32",
                    "architecture": spec.get("architecture"),
                },
                "eval_id": f"{run}/decoder/depth{where['depth']}",
                "datetime_epoch_millis": (int(pd.Timestamp(created).timestamp() * 1000) if created else None),
                "eval_result_metrics": {
                    "meta_structure": {
                        "decoder_fraction_variance_explained": 1 - float(folder.metrics["fvu"]),
                        "train_time_seconds": None,
                        "final_reconstruction_mse": (
                            float(folder.metrics["mse"]) / d_in if d_in and "mse" in folder.metrics else None
                        ),
                    }
                },
                "eval_result_details": [],
                "sae_bench_commit_hash": None,
                "sae_lens_id": f"{run}/{parent}",
                "sae_lens_release_id": "metasae",
                "sae_lens_version": None,
                "sae_cfg_dict": {
                    "d_in": d_in,
                    "d_sae": folder.metrics.get("parent_width"),  # SAEBench keeps SAELens's names
                    "meta_d_sae": folder.metrics.get("width"),  # (SAELens naming)
                    "depth": where["depth"] - 1,
                    "dataset": where["dataset"],
                },
            }
        )
    return {"reference": SAEBENCH_REFERENCE, "results": entries}
