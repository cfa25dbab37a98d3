"""The small ViT: shapes, named blocks, seeded init, checkpoint round trip, log-spaced training
checkpoints."""

from __future__ import annotations

import pytest
import torch

from metasae.errors import MetasaeError
from metasae.models.vit import ViT, ViTConfig, load_vit, save_vit
from metasae.probes import layer_features
from metasae.seeds import generator
from metasae.stages.train_vit import ViTTrainConfig, checkpoint_steps, train_vit

TINY = ViTConfig(num_classes=3, input_shape=(1, 16, 16), patch=4, width=16, depth=2, heads=2, mlp=32)


def test_named_layers_and_token_shapes():
    model = ViT(TINY, generator("t"))
    assert model.layer_names == ("embed", "block0", "block1")
    x = torch.rand(5, 1, 16, 16)
    assert model(x).shape == (5, 3)
    grabbed = {}
    for name in model.layer_names:
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, n=name: grabbed.__setitem__(n, out)
        )
    model(x)
    assert all(t.shape == (5, 1 + 16, 16) for t in grabbed.values())  # CLS + (16/4)^2 patches


def test_features_pool_cls_and_mean_of_patches():
    model = ViT(TINY, generator("t"))
    x = torch.rand(4, 1, 16, 16)
    tokens = {}
    model.block1.register_forward_hook(lambda _m, _i, out: tokens.__setitem__("t", out))
    feats = layer_features(model, ("block1",), x, batch_size=3)  # two batches, concatenated in order
    model(x)  # one batch: the reference tokens
    assert torch.allclose(feats["block1.cls"], tokens["t"][:, 0], atol=1e-5)
    assert torch.allclose(feats["block1.mean"], tokens["t"][:, 1:].mean(1), atol=1e-5)


def test_seeded_init_is_deterministic_and_seed_dependent():
    a, b, c = (ViT(TINY, generator(s)) for s in ("s", "s", "other"))
    assert all(
        torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert not torch.equal(a.embed.pos, c.embed.pos)


def test_save_load_round_trip(tmp_path):
    model = ViT(TINY, generator("s")).eval()
    save_vit(model, tmp_path, {"step": 3})
    loaded, cfg = load_vit(tmp_path)
    x = torch.rand(2, 1, 16, 16)
    assert cfg["step"] == 3 and torch.equal(model(x), loaded(x))


def test_bad_architecture_is_one_line_error():
    with pytest.raises(MetasaeError, match="patch"):
        ViTConfig(num_classes=2, input_shape=(1, 30, 30), patch=8)
    with pytest.raises(MetasaeError, match="heads"):
        ViTConfig(num_classes=2, width=10, heads=4)


def test_checkpoint_steps_are_log_spaced():
    steps = checkpoint_steps(1000, 5)
    assert steps[0] == 0 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert steps == [0, 1, 10, 100, 1000]
    assert checkpoint_steps(1000, 2) == [0, 1000]  # not [0, 1]: one log-spaced point is the last step


def test_train_vit_writes_checkpoints_deterministically(tmp_path):
    cfg = ViTTrainConfig(
        train="dsprites_gen:sample[:96]",
        test="dsprites_gen:sample[96:128]",
        label="shape",
        steps=4,
        batch_size=32,
        checkpoints=3,
        warmup_steps=1,
    )
    vit = {"input_shape": [1, 16, 16], "patch": 8, "width": 16, "depth": 1, "heads": 2, "mlp": 16}
    runs = [train_vit(cfg, vit, tmp_path / name) for name in ("a", "b")]
    assert [c["step"] for c in runs[0]["checkpoints"]] == [0, 1, 4]
    for ck in runs[0]["checkpoints"]:
        wa, wb = (load_vit(tmp_path / name / ck["dir"])[0].state_dict() for name in ("a", "b"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert load_vit(tmp_path / "a" / "step4")[1]["label_names"] == ["square", "ellipse", "heart"]


def test_unknown_label_is_refused():
    with pytest.raises(MetasaeError, match="label"):
        ViTTrainConfig(train="glyphs:train", test="glyphs:test", label="colour")


CONV = ViTConfig(
    num_classes=3, input_shape=(1, 16, 16), patch=4, width=16, depth=1, heads=2, mlp=16, stem="conv"
)


def test_conv_stem_halves_per_conv_and_gives_the_patch_grid():
    model = ViT(CONV, generator("c"))
    convs = [m for m in model.embed.stem if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 1)]  # log2(4) stride-2 convs, then 1x1
    assert [c.out_channels for c in convs] == [16, 32, 16]  # stem_channels, doubled, then the width
    tokens = {}
    model.embed.register_forward_hook(lambda _m, _i, out: tokens.__setitem__("t", out))
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 3)
    assert tokens["t"].shape == (2, 1 + 16, 16)  # CLS + (16/4)^2 tokens, as the patch stem


def test_conv_stem_init_keeps_the_signal_and_round_trips(tmp_path):
    model = ViT(CONV, generator("c")).eval()
    x = torch.rand(8, 1, 16, 16)
    stem_out = model.embed.stem(model.normalise(x))
    assert stem_out.std() > 0.1  # He-normal: a 0.02-scale conv stack would shrink it ~100x
    save_vit(model, tmp_path, {"step": 0})
    loaded, cfg = load_vit(tmp_path)
    assert cfg["vit"]["stem"] == "conv" and torch.equal(model(x), loaded(x))


def test_patch_stem_keeps_its_weight_names():
    """Checkpoints written before the conv stem (no `stem` in cfg.json) still load."""
    assert "embed.patchify.weight" in ViT(TINY).state_dict()
    assert ViTConfig(**{k: v for k, v in TINY.__dict__.items() if k != "stem"}).stem == "patch"


def test_conv_stem_needs_a_power_of_two_patch():
    with pytest.raises(MetasaeError, match="power of two"):
        ViTConfig(num_classes=2, input_shape=(1, 24, 24), patch=6, stem="conv")
    with pytest.raises(MetasaeError, match="stem"):
        ViTConfig(num_classes=2, stem="resnet")


def test_factor_heads_targets_respect_each_shapes_symmetry():
    from metasae.data import load_dataset
    from metasae.stages.train_vit import factor_targets

    ds = load_dataset("dsprites_gen:sample[:64]")
    heads, targets = factor_targets(ds)
    assert [(h.name, h.size) for h in heads] == [
        ("shape", 3),
        ("scale", 6),
        ("orientation", 2),
        ("posX", 1),
        ("posY", 1),
    ]
    fold = torch.tensor([4, 2, 1])[ds.factors["shape"]]
    turned = fold * (ds.factors["orientation_value"] + 2 * torch.pi / fold)  # one symmetry turn later
    assert torch.allclose(targets["orientation"][:, 0].double(), torch.cos(turned), atol=1e-5)
    assert torch.allclose(targets["orientation"][:, 1].double(), torch.sin(turned), atol=1e-5)
    assert targets["posX"].shape == (64, 1) and abs(float(targets["posX"].mean())) < 0.5


def test_head_loss_and_scores_by_hand():
    from metasae.probes import CLASSIFY, REGRESS
    from metasae.stages.train_vit import Head, evaluate_heads, head_loss

    heads = [Head("shape", CLASSIFY, 3), Head("posX", REGRESS, 1)]
    out = torch.tensor([[2.0, 0.0, 0.0, 0.5], [0.0, 0.0, 3.0, -1.0]])
    y = {"shape": torch.tensor([0, 1]), "posX": torch.tensor([[0.5], [0.0]])}
    expected = torch.nn.functional.cross_entropy(out[:, :3], y["shape"]) + 0.5  # MSE (0 + 1) / 2
    assert torch.allclose(head_loss(out, heads, y), expected)

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return out[: len(x)]

    scores = evaluate_heads(Fixed(), torch.zeros(2, 1), heads, y)
    assert scores["shape_accuracy"] == 0.5  # the second row predicts class 2, not 1
    assert scores["posX_r2"] == pytest.approx(1 - 1.0 / 0.125)  # SSE 1 over SST 0.125


def test_train_vit_multi_head_records_heads_and_scores(tmp_path):
    cfg = ViTTrainConfig(
        train="dsprites_gen:sample[:96]",
        test="dsprites_gen:sample[96:128]",
        label="factors",
        steps=2,
        batch_size=32,
        checkpoints=2,
        warmup_steps=1,
    )
    vit = {"input_shape": [1, 16, 16], "patch": 8, "width": 16, "depth": 1, "heads": 2, "mlp": 16}
    metrics = train_vit(cfg, {**vit, "stem": "conv", "stem_channels": 4}, tmp_path)
    assert set(metrics["test_scores"]) == {
        "shape_accuracy",
        "scale_accuracy",
        "orientation_r2_sincos_fold",
        "posX_r2",
        "posY_r2",
    }
    model, saved = load_vit(tmp_path / "step2")
    assert model.cfg.num_classes == 3 + 6 + 2 + 1 + 1 and saved["heads"][0]["name"] == "shape"
    assert metrics["test_accuracy"] == metrics["test_scores"]["shape_accuracy"]
