"""The meta-SAE stack: planted structure recovery (decoder mode), codes routing, stop markers, lineage."""

import pandas as pd
import pytest
import torch
from depth_folders import write_cache, write_depth

from metasae.codes import load_codes
from metasae.errors import MetasaeError
from metasae.io import load_tensors, read_json, write_json
from metasae.layout import FIT_CODES_FILE, LINEAGE_FILE, META_CODES_FILE, MODES
from metasae.sae import SAEConfig, build_sae, load_sae
from metasae.sae.sparse_rows import as_dense
from metasae.stack import Depth
from metasae.stages import train_sae as meta

D_IN, N_ATOMS, N_LATENTS, N_IMAGES = 32, 8, 192, 60


def planted_parent(folder, seed=0):
    """A depth-1 folder whose decoder rows are each a positive mix of 2 of 8 planted 'meta' atoms."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(N_ATOMS, D_IN, generator=g), dim=1)
    pairs = torch.stack([torch.randperm(N_ATOMS, generator=g)[:2] for _ in range(N_LATENTS)])
    weights = 0.5 + torch.rand(N_LATENTS, 2, generator=g)
    rows = (weights[:, :, None] * atoms[pairs]).sum(1)
    sae = build_sae(SAEConfig("topk", D_IN, N_LATENTS, k=4), g)
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(rows, dim=1))
    codes = torch.rand(N_IMAGES, N_LATENTS, generator=g) * (
        torch.rand(N_IMAGES, N_LATENTS, generator=g) < 0.05
    )
    metrics = {"width": N_LATENTS, "fvu": 0.1, "alive_latents_images": N_LATENTS}
    write_cache(folder / "acts", sae.decode(codes).detach())  # decoder mode fits its frozen codes on these
    write_depth(folder, sae, codes, 1, "base", folder / "acts", metrics=metrics)
    return atoms, codes


DECODER_SPEC = {
    "architecture": "batchtopk",
    "k": 2,
    "width": {"factor": 2 * N_ATOMS / N_LATENTS, "min": 2},
    "lr": 0.003,
    "batch_size": 64,
    "steps": 800,
    "sampling": "replacement",
    "b_dec_init": "zeros",
    "log_every": 100,
}


def test_decoder_mode_recovers_planted_meta_atoms(tmp_path):
    atoms, parent_codes = planted_parent(tmp_path / "depth1")
    metrics = meta.train_meta(tmp_path / "depth1", "decoder", 2, DECODER_SPEC, tmp_path / "depth2", seed=0)
    assert metrics["status"] == "trained" and metrics["width"] == 2 * N_ATOMS
    learned = torch.nn.functional.normalize(load_sae(tmp_path / "depth2").W_dec.detach(), dim=1)
    best = (atoms @ learned.T).max(1).values
    assert (best > 0.9).float().mean() >= 0.75, best
    # an image's depth-2 code is its depth-1 code routed through the meta-codes of its latents
    meta_codes = load_codes(tmp_path / "depth2" / META_CODES_FILE).to_dense()
    routed = load_codes(tmp_path / "depth2" / "codes.safetensors").to_dense()
    torch.testing.assert_close(routed, parent_codes @ meta_codes)
    lineage = pd.read_parquet(tmp_path / "depth2" / LINEAGE_FILE)
    assert set(lineage.columns) == {"parent_latent", "meta_latent", "weight"}
    assert len(lineage) == int((meta_codes != 0).sum()) and (lineage["weight"] != 0).all()


def test_each_depth_has_its_own_seed():
    seeds = {meta.depth_seed(0, d, m) for d in range(1, 6) for m in MODES}
    assert len(seeds) == 9  # depth 1 is shared by the modes; every other (depth, mode) differs


def test_stop_rules_write_a_marker_and_train_nothing(tmp_path):
    planted_parent(tmp_path / "depth1")
    rules = meta.StopRules(min_alive=N_LATENTS + 1)
    metrics = meta.train_meta(tmp_path / "depth1", "decoder", 2, DECODER_SPEC, tmp_path / "depth2", 0, rules)
    assert metrics["status"] == "stopped" and "fewer than stop.min_alive" in metrics["stop_reason"]
    assert not (tmp_path / "depth2" / "sae.safetensors").exists()
    # a stopped parent stops its child, with the reason carried along
    child = meta.train_meta(tmp_path / "depth2", "decoder", 3, DECODER_SPEC, tmp_path / "depth3", 0)
    assert child["status"] == "stopped" and child["stop_reason"].startswith("parent depth stopped")


def test_a_depth_past_max_depth_stops_and_unknown_rules_are_refused(tmp_path):
    planted_parent(tmp_path / "depth1")
    rules = meta.StopRules.from_dict({"min_alive": 1, "max_depth": 1})
    metrics = meta.train_meta(tmp_path / "depth1", "decoder", 2, DECODER_SPEC, tmp_path / "depth2", 0, rules)
    assert metrics["status"] == "stopped" and "past stop.max_depth=1" in metrics["stop_reason"]
    with pytest.raises(MetasaeError, match=r"unknown key\(s\) \['depth'\]; allowed: \['max_depth'"):
        meta.StopRules.from_dict({"depth": 3})


def test_width_schedule_below_min_stops(tmp_path):
    planted_parent(tmp_path / "depth1")
    spec = {**DECODER_SPEC, "width": {"factor": 0.01, "min": 4}}
    metrics = meta.train_meta(tmp_path / "depth1", "decoder", 2, spec, tmp_path / "depth2", 0)
    assert metrics["status"] == "stopped" and "fewer than width.min=4" in metrics["stop_reason"]


@pytest.mark.parametrize("width", [None, 16, {"factor": 0.25}])
def test_an_incomplete_width_schedule_is_a_clear_error(tmp_path, width):
    planted_parent(tmp_path / "depth1")
    spec = {k: v for k, v in DECODER_SPEC.items() if k != "width"} | (
        {} if width is None else {"width": width}
    )
    with pytest.raises(MetasaeError, match="width must be a schedule"):
        meta.train_meta(tmp_path / "depth1", "decoder", 2, spec, tmp_path / "depth2", 0)


def test_activations_mode_trains_on_parent_codes(tmp_path):
    planted_parent(tmp_path / "depth1")
    spec = {
        "architecture": "topk",
        "k": 3,
        "width": {"factor": 0.25, "min": 2},
        "lr": 0.01,
        "batch_size": 16,
        "epochs": 2,
    }
    metrics = meta.train_meta(tmp_path / "depth1", "activations", 2, spec, tmp_path / "depth2", seed=1)
    assert metrics["status"] == "trained" and metrics["width"] == N_LATENTS // 4
    codes = load_codes(tmp_path / "depth2" / "codes.safetensors")
    assert codes.shape == (N_IMAGES, N_LATENTS // 4)
    assert (codes.to_dense() != 0).sum(1).max() <= 3
    assert read_json(tmp_path / "depth2" / "cfg.json")["parent"] == str(tmp_path / "depth1")


def test_mean_active_and_batched_encoding_read_sparse_codes():
    dense = torch.tensor([[0.0, 2.0, 0.0], [4.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert meta._mean_active(dense.to_sparse()).tolist() == [4.0, 1.5, 1.0]  # never fires: 1.0
    sae = build_sae(SAEConfig("topk", 3, 4, k=1), torch.Generator().manual_seed(0))
    codes = meta._encode(sae, dense.to_sparse(), batch_size=2).to_dense()
    torch.testing.assert_close(codes, meta._encode(sae, dense).to_dense())


def test_bad_mode_and_depth_are_clear_errors(tmp_path):
    with pytest.raises(MetasaeError, match="--mode 'weights'; allowed: decoder, activations"):
        meta.train_meta(tmp_path, "weights", 2, DECODER_SPEC, tmp_path / "x", 0)
    with pytest.raises(MetasaeError, match="meta-SAEs start at depth 2"):
        meta.train_meta(tmp_path, "decoder", 1, DECODER_SPEC, tmp_path / "x", 0)


BASE_SPEC = {"architecture": "topk", "width": 16, "k": 2, "lr": 0.01, "batch_size": 16, "epochs": 2}


def held_out_caches(tmp_path, n_fit=80, n_eval=30):
    """A fit cache of positive rows and an eval cache of negative ones: any eval row reaching the trainer
    shows as a negative value."""
    g = torch.Generator().manual_seed(0)
    fit = write_cache(tmp_path / "fit", torch.rand(n_fit, 8, generator=g) + 0.1)
    ev = write_cache(tmp_path / "eval", -torch.rand(n_eval, 8, generator=g) - 0.1)
    return fit, ev


def capture_training_rows(monkeypatch) -> list[torch.Tensor]:
    """Every tensor train_sae is handed (training rows and its held-out rows), dense."""
    seen, train = [], meta.train_sae

    def spy(data, *args, eval_data=None, **kwargs):
        seen.extend(None if rows is None else as_dense(rows) for rows in (data, eval_data))
        return train(data, *args, eval_data=eval_data, **kwargs)

    monkeypatch.setattr(meta, "train_sae", spy)
    return seen


def test_depth1_trains_on_the_fit_cache_and_codes_both_image_sets(tmp_path, monkeypatch):
    fit, ev = held_out_caches(tmp_path)
    seen = capture_training_rows(monkeypatch)
    metrics = meta.train_base(fit, BASE_SPEC, tmp_path / "depth1", 0, eval_acts_dir=ev)
    assert sum(len(t) for t in seen) == 80 and all((t > 0).all() for t in seen)  # the fit rows alone
    depth = Depth.load(tmp_path / "depth1")
    assert (depth.acts_dir, depth.fit_acts_dir) == (ev, fit)
    assert set(metrics["sha256"]) == {"codes.safetensors", FIT_CODES_FILE}
    sae = load_sae(tmp_path / "depth1")
    with torch.no_grad():
        for codes, cache in ((depth.codes, ev), (depth.fit_codes, fit)):
            acts = load_tensors(cache / "acts.safetensors")["acts"]
            assert torch.allclose(codes.to_dense(), sae.encode(acts), atol=1e-6)


def test_depth1_without_an_eval_cache_codes_its_own_images(tmp_path):
    fit, _ = held_out_caches(tmp_path)
    meta.train_base(fit, BASE_SPEC, tmp_path / "depth1", 0)
    depth = Depth.load(tmp_path / "depth1")
    assert not depth.has_fit_codes and depth.fit_codes is depth.codes and depth.codes.shape[0] == 80


def test_activations_mode_trains_on_the_parents_fit_codes(tmp_path, monkeypatch):
    fit, ev = held_out_caches(tmp_path)
    meta.train_base(fit, BASE_SPEC, tmp_path / "depth1", 0, eval_acts_dir=ev)
    parent = Depth.load(tmp_path / "depth1")
    seen = capture_training_rows(monkeypatch)
    spec = {**BASE_SPEC, "width": {"factor": 0.5, "min": 2}}
    meta.train_meta(tmp_path / "depth1", "activations", 2, spec, tmp_path / "depth2", seed=0)
    fit_rows = {tuple(r.tolist()) for r in parent.fit_codes.to_dense()}
    assert sum(len(t) for t in seen) == 80 and all(tuple(r.tolist()) in fit_rows for t in seen for r in t)
    depth2 = Depth.load(tmp_path / "depth2")
    assert depth2.codes.shape == (30, 8) and depth2.fit_codes.shape == (80, 8)
    assert depth2.fit_acts_dir == fit and depth2.acts_dir == ev


def test_a_depth_that_trained_elsewhere_without_fit_codes_is_an_error(tmp_path):
    fit, ev = held_out_caches(tmp_path)
    meta.train_base(fit, BASE_SPEC, tmp_path / "depth1", 0, eval_acts_dir=ev)
    metrics = read_json(tmp_path / "depth1" / "metrics.json")
    del metrics["sha256"][FIT_CODES_FILE]
    write_json(tmp_path / "depth1" / "metrics.json", metrics)
    with pytest.raises(MetasaeError, match="fit_codes.safetensors: no sha256 recorded"):  # checked at load
        Depth.load(tmp_path / "depth1")
    (tmp_path / "depth1" / FIT_CODES_FILE).unlink()
    with pytest.raises(MetasaeError, match="no fit_codes.safetensors, though it trained on"):
        _ = Depth.load(tmp_path / "depth1").fit_codes


def test_sae_seed_zero_is_the_run_seed_and_others_differ():
    assert meta.sae_run_seed(3, 0) == 3
    assert len({meta.sae_run_seed(3, s) for s in range(4)} | {meta.sae_run_seed(4, 1)}) == 5
