"""The torch probe backend (every feature set's linear and MLP probes fitted as stacked tensors) against the
scikit-learn path it replaces, on the same probes: the floor here is the reference, so the ratio is the
share of scikit-learn's time the torch fits take, and a rise means the batched fits lost their lead. The
shapes are a small dSprites probe job's: six feature sets (checkpoints x layers) of one width, 3,000 images,
a 3-class factor, the workflow's MLP settings (32 hidden units, 60 epochs)."""

from __future__ import annotations

import numpy as np
import torch

from metasae.probe_fits import CLASSIFY, FeatureStack, MLPFit, Task, torch_predict_stack
from metasae.probes import fit_predict, stratified_split
from metasae.seeds import generator

N_SETS, N_IMAGES, WIDTH, N_CLASSES = 6, 3000, 32, 3
PROBES, HIDDEN, EPOCHS, SEED = ("linear", "mlp"), 32, 60, 0


def _feature_sets() -> tuple[list[np.ndarray], Task]:
    """Sets that see the same 3-class factor through different random mixings plus noise: each probe has
    something to learn, and the sets differ in how well (as layers do)."""
    g = generator("bench", "probes")
    labels = torch.randint(N_CLASSES, (N_IMAGES,), generator=g)
    centres = torch.randn(N_CLASSES, WIDTH, generator=g)
    sets = [
        (centres[labels] @ torch.randn(WIDTH, WIDTH, generator=g) / WIDTH**0.5)
        + (1 + i) * torch.randn(N_IMAGES, WIDTH, generator=g)
        for i in range(N_SETS)
    ]
    target = labels.numpy()
    return [x.double().numpy() for x in sets], Task("class", "accuracy", CLASSIFY, target)


def test_probe_fits(compare):
    xs, task = _feature_sets()
    train, test = stratified_split(task.target, 0.3, SEED)
    fit = MLPFit(hidden=HIDDEN, epochs=EPOCHS)

    def torch_fits() -> None:
        stack = FeatureStack(xs, train, standardise=True)
        for probe in PROBES:
            torch_predict_stack(task, probe, stack, test, fit, SEED)

    def sklearn_fits() -> None:
        for probe in PROBES:
            for x in xs:
                fit_predict(task, probe, x, train, test, SEED, HIDDEN, EPOCHS)

    compare(torch_fits, sklearn_fits, "scikit-learn's fits of the same probes", rounds=3, items=N_SETS)
