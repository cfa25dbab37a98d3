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
