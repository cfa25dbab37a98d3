"""Trainer: ground-truth recovery, bit-identical resume, NaN naming the step, save/load/export, CLI."""

from __future__ import annotations

import csv
import functools
import json

import pytest
import torch

from metasae.cli import main
from metasae.errors import MetasaeError
from metasae.io import load_tensors, read_json
from metasae.sae import SAEConfig, export_saelens, load_sae, relu
from metasae.sae import trainer as trainer_mod
from metasae.sae.trainer import TrainConfig, geometric_median, train_sae


def _synthetic(n=4096, d=32, m=48, per_example=3, seed=1):
    """x = codes @ atoms with a known unit-norm dictionary and ~per_example active atoms per row."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(m, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    codes = (torch.rand(n, m, generator=g) < per_example / m).float() * (0.5 + torch.rand(n, m, generator=g))
    return codes @ atoms, atoms


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_recovers_ground_truth_atoms(arch, tmp_path):
    x, atoms = _synthetic()
    sae = train_sae(
        x,
        SAEConfig(arch, 32, 96, k=3),
        TrainConfig(lr=1e-2, batch_size=256, epochs=20, dead_after_examples=2048),
        tmp_path,
    )
    best_cos = (atoms @ sae.W_dec.detach().T).max(1).values
    assert (best_cos > 0.9).float().mean() >= 0.9
    metrics = read_json(tmp_path / "metrics.json")
    assert metrics["fvu"] < 0.2 and 2 <= metrics["l0"] <= 4


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu"])
def test_bf16_autocast_trains_as_well_and_is_recorded(arch, tmp_path):
    """bf16 matmuls (train.autocast) change the numbers, not what is learned: same data, seeds and steps."""
    x, _ = _synthetic()
    fvu = {}
    for autocast in (None, "bf16"):
        out = tmp_path / str(autocast)
        train_sae(
            x,
            SAEConfig(arch, 32, 96, k=3, l1_coeff=1e-3),
            TrainConfig(lr=1e-2, batch_size=256, epochs=5, autocast=autocast),
            out,
        )
        fvu[autocast] = read_json(out / "metrics.json")["fvu"]
        assert read_json(out / "cfg.json")["train_cfg"]["autocast"] == autocast
    assert fvu[None] != fvu["bf16"]  # bf16 did run
    assert abs(fvu["bf16"] - fvu[None]) < 0.02, fvu


def _small_run(out, sae_cfg=None, **kw):
    x, _ = _synthetic(n=300, d=8, m=12)
    cfg = dict(lr=3e-3, batch_size=32, steps=12, log_every=2, checkpoint_every=4, dead_after_examples=64)
    cfg.update(kw)
    return train_sae(x, sae_cfg or SAEConfig("topk", 8, 24, k=2, k_aux=4), TrainConfig(**cfg), out)


def _low_rank(n, seed, d=32):
    """ReLU'd points of one 4-dimensional subspace with unequal spreads (a layer of low effective rank)."""
    basis = torch.linalg.qr(torch.randn(d, 4, generator=torch.Generator().manual_seed(0)))[0].T
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, generator=g) * torch.tensor([4.0, 2.0, 1.0, 0.5])
    return (z @ basis + 0.02 * torch.randn(n, d, generator=g)).relu()


def test_balanced_firing_keeps_latents_of_a_low_rank_layer_alive(tmp_path):
    """The real study's failure in small: 512 latents on a rank-4 layer leave latents firing on a few training
    points and on no held-out one; balancing the first 2/3 of training halves them (measured: 29% -> 15%)."""
    train, held_out = _low_rank(4096, 1), _low_rank(2048, 2)
    dead = {}
    for balance in (0.0, 0.67):
        sae = train_sae(
            train,
            SAEConfig("topk", 32, 512, k=8),
            TrainConfig(lr=1e-3, batch_size=128, epochs=5, balance_fraction=balance, balance_rate=0.01),
            tmp_path / str(balance),
        )
        with torch.no_grad():
            dead[balance] = float(((sae.encode(held_out) > 0).sum(0) == 0).float().mean())
        assert sae.rank_bias is None  # the saved SAE is a plain TopK SAE
    assert dead[0.0] > 0.2 and dead[0.67] < 0.6 * dead[0.0], dead


def test_balance_is_checked():
    with pytest.raises(MetasaeError, match="balance_fraction=1.5 must be in"):
        TrainConfig(steps=1, balance_fraction=1.5)
    with pytest.raises(MetasaeError, match="only topk balances"):
        train_sae(
            torch.randn(64, 8),
            SAEConfig("batchtopk", 8, 16, k=2),
            TrainConfig(steps=2, balance_fraction=0.5),
            "/nonexistent",
        )


# a ReLU run whose codes turn sparse after a few steps, so its steps switch from dense to sparse ops
SPARSENING_RELU = (SAEConfig("relu", 8, 64, l1_coeff=1.0), 3e-2)


@pytest.mark.parametrize(
    ("sampling", "arch", "balance"),
    [("epoch", "topk", 0.0), ("replacement", "topk", 0.0), ("epoch", "relu", 0.0), ("epoch", "topk", 0.75)],
)
def test_resume_after_crash_is_bit_identical(sampling, arch, balance, tmp_path, monkeypatch):
    """balance 0.75: the crash comes in the balancing steps (9 of 12), so the rank bias must resume too."""
    sae_cfg, lr = SPARSENING_RELU if arch == "relu" else (None, 3e-3)
    run = functools.partial(
        _small_run, sae_cfg=sae_cfg, sampling=sampling, lr=lr, balance_fraction=balance, balance_rate=0.05
    )
    full = run(tmp_path / "full")
    real_save = trainer_mod._save_checkpoint
    calls = []

    def crash_after_second(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies right after writing the step-8 checkpoint

    monkeypatch.setattr(trainer_mod, "_save_checkpoint", crash_after_second)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed")
    assert (tmp_path / "resumed" / "checkpoint" / "state.json").is_file()
    monkeypatch.setattr(trainer_mod, "_save_checkpoint", real_save)
    resumed = run(tmp_path / "resumed")
    for name, t in full.state_dict().items():
        assert torch.equal(t, resumed.state_dict()[name]), name
    assert (tmp_path / "full" / "train_log.csv").read_text() == (
        tmp_path / "resumed" / "train_log.csv"
    ).read_text()
    assert not (tmp_path / "resumed" / "checkpoint").exists()
    if arch == "relu":  # dense steps first, sparse ones later (relu.SPARSE_MAX_DENSITY of 64 latents)
        with open(tmp_path / "full" / "train_log.csv") as f:
            l0 = [float(row["l0"]) for row in csv.DictReader(f)]
        assert l0[0] > relu.SPARSE_MAX_DENSITY * 64 > l0[-1]


def test_same_seed_same_sae_other_seed_differs(tmp_path):
    a, b = _small_run(tmp_path / "a"), _small_run(tmp_path / "b")
    c = _small_run(tmp_path / "c", seed=1)
    assert torch.equal(a.W_dec, b.W_dec) and not torch.equal(a.W_dec, c.W_dec)


def test_nan_loss_names_the_step(tmp_path):
    with pytest.raises(MetasaeError, match=r"^step \d+: loss is (nan|inf)"):
        _small_run(tmp_path, lr=1e30)


def test_nan_weights_name_the_step(tmp_path, monkeypatch):
    x, _ = _synthetic(n=300, d=8, m=12)
    real_build = trainer_mod.build_sae

    def nan_encoder(*args):
        sae = real_build(*args)
        with torch.no_grad():
            sae.W_enc[0, 0] = float("nan")
        return sae

    monkeypatch.setattr(trainer_mod, "build_sae", nan_encoder)
    with pytest.raises(MetasaeError, match=r"^step 0: BatchTopK: NaN pre-activations"):
        train_sae(x, SAEConfig("batchtopk", 8, 64, k=2), TrainConfig(steps=3, batch_size=32), tmp_path)


def test_nan_input_names_the_row(tmp_path):
    x = torch.ones(10, 4)
    x[7, 2] = float("nan")
    with pytest.raises(MetasaeError, match="row 7"):
        train_sae(x, SAEConfig("relu", 4, 8), TrainConfig(steps=1), tmp_path)
    x = torch.full((10, 4), 3e38)  # finite values whose row sums overflow: not bad rows
    x[4, 0] = float("inf")
    with pytest.raises(MetasaeError, match=r"row 4 contains NaN/inf \(1 bad rows\)"):
        train_sae(x, SAEConfig("relu", 4, 8), TrainConfig(steps=1), tmp_path)


def test_outputs_and_roundtrip(tmp_path):
    sae = _small_run(tmp_path)
    cfg = read_json(tmp_path / "cfg.json")
    assert (
        cfg["d_in"] == 8
        and cfg["d_sae"] == 24
        and cfg["sae_cfg"]["width"] == 24
        and cfg["architecture"] == "topk"
        and cfg["k"] == 2
    )
    assert cfg["provenance"]["seed"] == 0 and "git_commit" in cfg["provenance"]
    with open(tmp_path / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 6, 8, 10, 11]
    loaded = load_sae(tmp_path)
    x = torch.randn(5, 8)
    torch.testing.assert_close(loaded(x), sae(x))
    # the loaded SAE takes raw inputs: metrics.json was computed that way
    assert read_json(tmp_path / "metrics.json")["n_examples"] == 300


def test_export_saelens_names(tmp_path):
    _small_run(tmp_path / "sae")
    out = export_saelens(tmp_path / "sae", tmp_path / "export")
    tensors = load_tensors(out / "sae_weights.safetensors")
    assert tensors["W_enc"].shape == (8, 24) and tensors["W_dec"].shape == (24, 8)
    assert set(tensors) == {"W_enc", "W_dec", "b_enc", "b_dec"}
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["activation_fn_kwargs"] == {"k": 2}
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"


def test_geometric_median_hand_value():
    # three collinear points: the geometric median is the middle one, not the mean (4/3)
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    torch.testing.assert_close(geometric_median(pts, iters=500), torch.tensor([1.0, 0.0]), atol=1e-3, rtol=0)


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, steps=10, warmup_steps=2, decay_steps=4)
    assert [cfg.lr_at(s, 10) for s in range(10)] == [0.5, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]


def test_bad_train_config():
    with pytest.raises(MetasaeError, match="exactly one of epochs / steps"):
        TrainConfig()
    with pytest.raises(MetasaeError, match="sampling='bootstrap'; allowed"):
        TrainConfig(steps=1, sampling="bootstrap")
    with pytest.raises(MetasaeError, match="autocast='fp16'; allowed: bf16 or null"):
        TrainConfig(steps=1, autocast="fp16")
    with pytest.raises(MetasaeError, match="decoder_init='pca'; allowed: random, data"):
        TrainConfig(steps=1, decoder_init="pca")
    with pytest.raises(MetasaeError, match="train.encoder_init_scale=0: each must be > 0"):
        TrainConfig(steps=1, encoder_init_scale=0)


@pytest.mark.parametrize("decoder_init", ["random", "data"])
def test_encoder_init_scale_shrinks_the_tied_encoder_only(decoder_init):
    """The encoder starts as scale x its usual start (the decoder's transpose, over k for data); the decoder
    rows and b_dec are the unscaled start's."""
    cfg = SAEConfig(architecture="topk", d_in=4, width=6, k=2)
    sample = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    saes = {}
    for scale in (1.0, 0.3):
        sae = trainer_mod.build_sae(cfg, torch.Generator().manual_seed(0))
        trainer_mod.initialise_(
            sae, TrainConfig(steps=1, decoder_init=decoder_init, encoder_init_scale=scale), sample
        )
        saes[scale] = sae
    assert torch.equal(saes[0.3].W_dec, saes[1.0].W_dec) and torch.equal(saes[0.3].b_dec, saes[1.0].b_dec)
    assert torch.allclose(saes[0.3].W_enc, 0.3 * saes[1.0].W_enc)
    tied = saes[1.0].W_dec.t() / (cfg.k if decoder_init == "data" else 1)
    assert torch.allclose(saes[1.0].W_enc, tied)


def test_data_init_puts_each_latent_on_a_distinct_training_row():
    """Rows minus b_dec, unit norm, encoder tied (divided by k); a zero row and the latents past the rows keep
    their init."""
    cfg = SAEConfig(architecture="topk", d_in=4, width=5, k=2)
    sae = trainer_mod.build_sae(cfg, torch.Generator().manual_seed(0))
    before = sae.W_dec.detach().clone()
    with torch.no_grad():
        sae.b_dec.fill_(1.0)
    rows = torch.tensor([[3.0, 1, 1, 1], [1.0, 1, 1, 1], [1.0, 1, 1, 5]])  # the second is b_dec itself
    trainer_mod.data_init_decoder_(sae, rows)
    assert torch.allclose(sae.W_dec[0], torch.tensor([1.0, 0, 0, 0]))
    assert torch.allclose(sae.W_dec[2], torch.tensor([0.0, 0, 0, 1]))
    assert torch.equal(sae.W_dec[1], before[1]) and torch.equal(sae.W_dec[3:], before[3:])
    assert torch.equal(sae.W_enc[:, [0, 2]], sae.W_dec[[0, 2]].t() / 2)


def test_cli_export(tmp_path):
    _small_run(tmp_path / "base")
    assert (
        main(["export", "--sae", str(tmp_path / "base"), "--format", "saelens", "--out", str(tmp_path / "x")])
        == 0
    )
    assert load_tensors(tmp_path / "x" / "sae_weights.safetensors")["W_dec"].shape == (24, 8)
    assert (
        main(["export", "--sae", str(tmp_path / "base"), "--format", "hf", "--out", str(tmp_path / "y")]) == 2
    )
