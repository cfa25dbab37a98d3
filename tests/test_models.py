import pytest
import torch

from metasae.errors import MetasaeError
from metasae.models import build_classifier, check_layer, load_classifier, save_classifier


def test_mlp_matches_the_research_log_shapes():
    model = build_classifier("mlp", 10)
    assert model.input_shape == (3, 28, 28)
    assert model.fc1[0].weight.shape == (256, 2352)
    assert model.fc2[0].weight.shape == (128, 256)
    assert model.fc3.weight.shape == (10, 128)
    assert model(torch.rand(4, 3, 28, 28)).shape == (4, 10)


@pytest.mark.parametrize("name,shape", [("mlp", (1, 28, 28)), ("cnn", (1, 28, 28)), ("cnn", (3, 32, 32))])
def test_named_layers_output_activations(name, shape):
    model = build_classifier(name, 7, shape)
    seen = {}
    for layer in model.layer_names:
        check_layer(model, layer).register_forward_hook(
            lambda m, i, o, layer=layer: seen.setdefault(layer, o)
        )
    logits = model(torch.rand(2, *shape))
    assert logits.shape == (2, 7)
    assert set(seen) == set(model.layer_names)
    assert torch.equal(seen[model.layer_names[-1]], logits)


def test_wrong_image_shape_is_rejected():
    with pytest.raises(ValueError, match=r"expected images of shape \[N, 3, 28, 28\]"):
        build_classifier("mlp", 10)(torch.rand(2, 1, 28, 28))


def test_unknown_names_are_clear_errors():
    with pytest.raises(MetasaeError, match="unknown model 'vgg'"):
        build_classifier("vgg", 10)
    with pytest.raises(MetasaeError, match="unknown layer 'fc9'"):
        check_layer(build_classifier("mlp", 10), "fc9")


def test_classifier_roundtrip_and_mismatch(tmp_path):
    model = build_classifier("cnn", 5, (1, 28, 28))
    save_classifier(model, tmp_path, {"model": "cnn", "num_classes": 5, "input_shape": [1, 28, 28]})
    loaded, _ = load_classifier(tmp_path)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))
    save_classifier(model, tmp_path, {"model": "cnn", "num_classes": 6, "input_shape": [1, 28, 28]})
    with pytest.raises(MetasaeError, match="weights do not match cfg.json"):
        load_classifier(tmp_path)
