import torch

from metasae.featviz import FeatureVizConfig, blur3x3, layer_objective, total_variation, visualise
from metasae.models import build_classifier, check_layer


def test_total_variation_by_hand():
    image = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])  # one step right, one step down, from the corner
    assert total_variation(image).tolist() == [2.0]


def test_blur_keeps_constant_images_and_smooths_a_spike():
    flat = torch.full((2, 3, 5, 5), 0.3)
    assert torch.allclose(blur3x3(flat), flat)
    spike = torch.zeros(1, 1, 5, 5)
    spike[0, 0, 2, 2] = 1.0
    out = blur3x3(spike)
    assert (
        out[0, 0, 2, 2].item() == 4 / 16
        and out[0, 0, 1, 2].item() == 2 / 16
        and out[0, 0, 1, 1].item() == 1 / 16
    )


def _neuron_objective():
    """Three fc1 units of a tiny fixed classifier that are on at mid-grey (off units get no gradient)."""
    torch.manual_seed(0)  # test-only: fixed weights for a tiny classifier
    model = build_classifier("mlp", 3, (1, 6, 6)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    grey = model.fc1(model.normalise(torch.full((1, 1, 6, 6), 0.5)).flatten(1))[0]
    targets = (grey > 0).nonzero().squeeze(1)[:3]
    return model, targets, layer_objective(model, check_layer(model, "fc1"), lambda a: a, targets)


def test_optimisation_raises_its_targets_stays_in_range_and_is_reproducible():
    _, _, objective = _neuron_objective()
    cfg = FeatureVizConfig(steps=40)
    start = objective(torch.full((3, 1, 6, 6), 0.5))
    a = visualise(objective, 3, (1, 6, 6), torch.Generator().manual_seed(1), cfg)
    b = visualise(objective, 3, (1, 6, 6), torch.Generator().manual_seed(1), cfg)
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert (objective(a) > start).all()


def test_objective_reads_one_column_per_image():
    model, targets, objective = _neuron_objective()
    images = torch.rand(3, 1, 6, 6)
    acts = model.fc1(model.normalise(images).flatten(1))
    assert torch.allclose(objective(images), acts[torch.arange(3), targets])
