"""Activation caching: one row per image in dataset order, verified on read, bad layers caught by name."""

from __future__ import annotations

import pytest
import torch

from metasae.activations import effective_rank, load_activations
from metasae.data import InputSpec, load_dataset, to_input_spec
from metasae.errors import MetasaeError
from metasae.layout import ACTS_FILE
from metasae.models import build_classifier, save_classifier
from metasae.stages.cache_acts import cache_activations

DATASET = "digits:test[:70]"


@pytest.fixture
def model_dir(tmp_path):
    model = build_classifier("mlp", 10)
    save_classifier(
        model, tmp_path / "model", {"model": "mlp", "num_classes": 10, "input_shape": list(model.input_shape)}
    )
    return tmp_path / "model"


def _layer_output(model_dir, layer: str) -> torch.Tensor:
    from metasae.models import load_classifier

    model, _ = load_classifier(model_dir)
    out = []
    getattr(model, layer).register_forward_hook(lambda _m, _i, o: out.append(o.flatten(1)))
    images = to_input_spec(load_dataset(DATASET).images, InputSpec(*model.input_shape))
    with torch.no_grad():
        model(images)
    return out[0]


def test_cache_holds_the_layer_output_of_every_image_in_order(model_dir, tmp_path):
    cache = cache_activations(
        model_dir, DATASET, "fc1", tmp_path / "acts", batch_size=16
    )  # 5 batches, last short
    data = load_dataset(DATASET)
    torch.testing.assert_close(cache.acts, _layer_output(model_dir, "fc1"))
    assert torch.equal(cache.labels, data.labels) and torch.equal(cache.index, data.index)
    again = load_activations(tmp_path / "acts")
    assert torch.equal(again.acts, cache.acts) and again.manifest["n"] == 70


def test_a_replaced_cache_file_fails_its_checksum(model_dir, tmp_path):
    cache_activations(model_dir, DATASET, "fc1", tmp_path / "acts")
    path = tmp_path / "acts" / ACTS_FILE
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(MetasaeError, match="sha256 does not match"):
        load_activations(tmp_path / "acts")


def test_a_layer_that_changes_the_row_count_is_refused(model_dir, tmp_path, monkeypatch):
    import metasae.stages.cache_acts as activations

    real_load = activations.load_classifier

    def load_doubling(*args, **kwargs):
        model, cfg = real_load(*args, **kwargs)
        model.fc1.register_forward_hook(lambda _m, _i, out: torch.cat([out, out]), prepend=True)
        return model, cfg

    monkeypatch.setattr(activations, "load_classifier", load_doubling)
    with pytest.raises(MetasaeError, match="32 rows for a batch of 16 images"):
        cache_activations(model_dir, DATASET, "fc1", tmp_path / "acts", batch_size=16)
    assert not (tmp_path / "acts" / ACTS_FILE).exists()


def test_nan_activation_names_the_image(model_dir, tmp_path, monkeypatch):
    import metasae.stages.cache_acts as activations

    real_load = activations.load_classifier

    def load_poisoned(*args, **kwargs):
        model, cfg = real_load(*args, **kwargs)
        calls = []

        def poison(_m, _i, out):
            calls.append(1)
            if len(calls) == 3:  # the layer-width probe is call 1; batch 2 (images 16..31) is call 3
                out = out.clone()
                out[5, 0] = float("nan")
            return out

        model.fc1.register_forward_hook(poison, prepend=True)
        return model, cfg

    monkeypatch.setattr(activations, "load_classifier", load_poisoned)
    with pytest.raises(MetasaeError, match="NaN/inf activation at image 21"):
        cache_activations(model_dir, DATASET, "fc1", tmp_path / "acts", batch_size=16)


def test_shuffled_labels_are_a_fixed_permutation_recorded_in_the_manifest(model_dir, tmp_path):
    plain = cache_activations(model_dir, DATASET, "fc1", tmp_path / "plain")
    shuffled = cache_activations(model_dir, DATASET, "fc1", tmp_path / "a", role="fit", shuffle_labels=True)
    cache_activations(model_dir, DATASET, "fc1", tmp_path / "b", shuffle_labels=True)
    again = load_activations(tmp_path / "b")
    assert torch.equal(shuffled.acts, plain.acts) and torch.equal(shuffled.index, plain.index)
    assert torch.equal(shuffled.labels.sort().values, plain.labels.sort().values)  # the same labels
    assert (shuffled.labels != plain.labels).float().mean() > 0.5  # most moved (chance keeps ~1/10)
    assert torch.equal(again.labels, shuffled.labels)  # a fixed seed
    assert shuffled.manifest["labels_shuffled"] and not plain.manifest["labels_shuffled"]
    assert (shuffled.manifest["role"], plain.manifest["role"]) == ("fit", "eval")
    with pytest.raises(MetasaeError, match="--role 'train'; allowed: eval, fit"):
        cache_activations(model_dir, DATASET, "fc1", tmp_path / "c", role="train")


def test_effective_rank_is_the_number_of_equal_directions():
    hadamard = torch.tensor([[1.0]])
    for _ in range(3):
        hadamard = torch.cat([torch.cat([hadamard, hadamard], 1), torch.cat([hadamard, -hadamard], 1)])
    spread = torch.zeros(8, 20)
    spread[:, [2, 5, 7, 11, 13]] = hadamard[:, 1:6]  # 5 uncorrelated zero-mean columns of equal variance
    assert effective_rank(spread) == pytest.approx(5.0)
    assert effective_rank(spread @ torch.linalg.qr(torch.randn(20, 20))[0]) == pytest.approx(5.0)  # rotated
    line = torch.arange(10.0)[:, None] * torch.randn(1, 20)
    assert effective_rank(line) == pytest.approx(1.0)
    assert effective_rank(torch.ones(6, 4)) == 0.0
    unequal = spread.clone()
    unequal[:, 2] *= 3  # variances 9, 1, 1, 1, 1: (13)^2 / (81 + 4) = 1.99
    assert effective_rank(unequal) == pytest.approx(169 / 85)
