"""Each metric against a value computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from metasae import metrics as M
from metasae.errors import MetasaeError

X = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
XH = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
# errors: [0, -1], [1, 0] -> SSE 2. mean(x) = [2, 1]; sum ||x - mean||^2 = (1 + 1) + (1 + 1) = 4.
# sum ||x||^2 = 1 + 13 = 14. <x, xh> = 1 + 10 = 11; sum ||xh||^2 = 2 + 8 = 10.


def test_fvu_is_about_the_mean():
    assert M.fvu(X, XH) == pytest.approx(2 / 4)
    assert M.explained_variance(X, XH) == pytest.approx(0.5)
    assert M.fvu_about_zero(X, XH) == pytest.approx(2 / 14)


def test_cosine_l2_ratio_and_bias():
    cos1 = 1 / math.sqrt(2)  # [1,0] vs [1,1]
    cos2 = 10 / (math.sqrt(13) * math.sqrt(8))
    assert M.cosine(X, XH) == pytest.approx((cos1 + cos2) / 2)
    assert M.l2_ratio(X, XH) == pytest.approx((math.sqrt(2) / 1 + math.sqrt(8) / math.sqrt(13)) / 2)
    assert M.relative_reconstruction_bias(X, XH) == pytest.approx(10 / 11)


def test_streaming_equals_one_shot():
    stats = M.ReconstructionStats()
    stats.update(X[:1], XH[:1])
    stats.update(X[1:], XH[1:])
    assert stats.result()["fvu"] == pytest.approx(0.5)


CODES = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 2.0, 3.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0]])


def test_sparsity_metrics():
    assert M.l0(CODES) == pytest.approx(5 / 4)
    density = M.feature_density(CODES)
    assert density.tolist() == [0.0, 1.0, 0.25, 0.0]
    assert M.dead_fraction(density) == 0.5
    assert M.dense_fraction(density, threshold=0.5) == 0.25
    hist = M.log10_density_histogram(density, bins=3, low=-3.0)
    # live densities 1.0 (log 0) and 0.25 (log -0.602): bins [-3,-2), [-2,-1), [-1,0]
    assert hist["counts"] == [0, 0, 2] and hist["dead"] == 2


class _Identity(nn.Module):
    cfg = type("C", (), {"width": 2})()

    def encode(self, x):
        return x

    def decode(self, z):
        return z

    def forward(self, x):
        return x


def test_sae_metrics_of_a_perfect_sae():
    data = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    out = M.sae_metrics(_Identity(), data, batch_size=2)
    assert out["fvu"] == 0 and out["l0"] == pytest.approx(4 / 3) and out["dead_fraction"] == 0
    assert out["relative_reconstruction_bias"] == pytest.approx(1.0)


def _tiny_classifier():
    """logits = fc2(relu(fc1(x))); fc1 = Sequential(Linear, ReLU) so its output is the cached activation."""
    model = nn.Sequential()
    model.fc1 = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    model.fc2 = nn.Linear(2, 2)
    with torch.no_grad():
        model.fc1[0].weight.copy_(torch.eye(2))
        model.fc1[0].bias.zero_()
        model.fc2.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model.fc2.bias.zero_()
    return model


def test_spliced_metrics_hand_values():
    model = _tiny_classifier()
    images = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])

    class Halve(nn.Module):
        def forward(self, a):
            return a / 2

    out = M.spliced_metrics(model, "fc1", Halve(), images, labels)
    ce = lambda margin: math.log(1 + math.exp(-margin))  # noqa: E731 - two-class CE with logit gap
    assert out["ce_clean"] == pytest.approx(ce(2.0))
    assert out["ce_sae"] == pytest.approx(ce(1.0))
    assert out["ce_zero_ablation"] == pytest.approx(math.log(2))
    # mean activation = [1, 1]: equal logits, CE = log 2
    assert out["ce_mean_ablation"] == pytest.approx(math.log(2))
    # zero ablation ties the logits; argmax picks class 0, right for the first image only
    assert out["accuracy_clean"] == 1.0 and out["accuracy_zero_ablation"] == 0.5
    expected = (math.log(2) - ce(1.0)) / (math.log(2) - ce(2.0))
    assert out["loss_recovered"] == pytest.approx(expected)
    # hooks are removed afterwards
    assert not model.fc1._forward_hooks
    # the SAE-free baselines, computed once, give the same figures for any SAE spliced in
    baselines = M.splice_baselines(model, "fc1", images, labels)
    assert M.spliced_metrics(model, "fc1", Halve(), images, labels, baselines=baselines) == out


@pytest.mark.parametrize(("model_name", "layer"), [("mlp", "fc1"), ("mlp", "fc2"), ("cnn", "fc1")])
def test_splice_from_cached_acts_equals_the_hooked_full_pass(model_name, layer):
    """A chain classifier's splice runs from the layer's outputs through its head: the same figures as the
    full forward pass with the output replaced by a hook."""
    from metasae.models import build_classifier

    torch.manual_seed(0)
    model = build_classifier(model_name, 10, (1, 12, 12)).eval()
    images, labels = torch.rand(64, 1, 12, 12), torch.randint(10, (64,))
    captured: list[torch.Tensor] = []
    with torch.no_grad(), M.replace_output(model, layer, lambda a: captured.append(a) or a):
        logits = model(images)
    acts = captured[0]
    assert torch.allclose(model.head_from(layer)(acts), logits, atol=1e-6)

    class Noisy(nn.Module):
        def forward(self, a):
            return a * 0.7 + 0.1

    hooked = M.spliced_metrics(model, layer, Noisy(), images, labels, batch_size=16)
    headed = M.spliced_metrics(model, layer, Noisy(), images, labels, batch_size=16, acts=acts)
    assert headed == pytest.approx(hooked, rel=1e-5, abs=1e-6)
    given = M.spliced_metrics(model, layer, Noisy(), images, labels, 16, acts=acts, rebuilt=Noisy()(acts))
    assert given == pytest.approx(hooked, rel=1e-5, abs=1e-6)  # the rebuild handed in, not recomputed
    assert build_classifier("cnn", 10, (1, 12, 12)).head_from("conv2") is None  # [C, H, W] output: no head


def test_splice_unknown_layer_lists_layers():
    with pytest.raises(MetasaeError, match="layer 'fc9' not in model; named layers: fc1"):
        M.spliced_metrics(_tiny_classifier(), "fc9", nn.Identity(), torch.zeros(1, 2), torch.zeros(1).long())


def test_select_latents_and_k_sparse_probing():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 3
    codes = torch.rand(200, 6, generator=g) * 0.1
    codes[:, 4] += labels.float() * 2.0  # latent 4 alone determines the label
    assert M.select_latents(codes, labels, 1).tolist() == [4]
    out = M.k_sparse_probing(codes, labels, ks=(1, 2))
    assert out["k1_accuracy"] == 1.0 and out["k2_accuracy"] == 1.0


def test_select_latents_eta_squared_hand_value():
    # latent 0: class means 0 and 2 (total var 4 = between 4 -> eta2 1); latent 1: within-class only (eta2 0)
    codes = torch.tensor([[0.0, 1.0], [0.0, 0.0], [2.0, 1.0], [2.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert M.select_latents(codes, labels, 2).tolist() == [0, 1]
