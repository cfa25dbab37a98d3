"""Linear and MLP probes for the dSprites factors, with bootstrap CIs and the orientation symmetry ceiling.

Tasks: shape, scale and orientation as classes (accuracy); orientation as (cos θ, sin θ) and posX, posY
as regression (R² = 1 - Σ‖y - ŷ‖² / Σ‖y - ȳ‖², pooled over outputs). A square looks the same after a
quarter turn and an ellipse after a half turn, so no probe can recover their orientation beyond what
`orientation_ceilings` computes; a heart has no symmetry (but orientation 0 and 2π are the same image).
Orientation is also probed within each shape (`orientation_<shape>`): 40-way accuracy against that shape's
own ceiling (about 1/4 for squares, 1/2 for ellipses, 1 for hearts), and `r2_sincos_fold`, the R² of
(cos fθ, sin fθ) with f the shape's symmetry order: what the image shows of its orientation, ceiling 1.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from metasae.data import InputSpec, load_dataset, to_input_spec
from metasae.errors import MetasaeError
from metasae.io import read_json
from metasae.layout import METRICS_FILE, PROBE_COLUMNS
from metasae.probe_fits import (
    CLASSIFY,
    REGRESS,
    RIDGE_ALPHAS,
    FeatureStack,
    MLPFit,
    Task,
    torch_predict_stack,
)

PROBES = ("linear", "mlp")
POOLINGS = ("cls", "mean")
BACKENDS = (
    "torch",
    "sklearn",
)  # torch: every layer's probes of a task fitted at once; sklearn: the reference
SYMMETRY_FOLD = {0: 4, 1: 2, 2: 1}  # dSprites shape id -> rotational symmetry order (square, ellipse, heart)
SHAPE_NAMES = ("square", "ellipse", "heart")  # dSprites shape ids 0, 1, 2
N_ORIENTATIONS = 40  # linspace(0, 2π, 40): 39 steps per turn, classes 0 and 39 are the same angle


def dsprites_tasks(factors: dict[str, Tensor]) -> list[Task]:
    """The probing tasks of a dSprites dataset's `factors` (class ids and `<factor>_value` floats)."""
    missing = [
        k
        for k in ("shape", "scale", "orientation", "orientation_value", "posX_value", "posY_value")
        if k not in factors
    ]
    if missing:
        raise MetasaeError(
            f"probe dataset: factors {missing} missing (a dsprites or dsprites_gen reference is needed)"
        )
    theta = factors["orientation_value"].double().numpy()
    return [
        Task("shape", "accuracy", CLASSIFY, factors["shape"].numpy()),
        Task("scale", "accuracy", CLASSIFY, factors["scale"].numpy()),
        Task("orientation", "accuracy", CLASSIFY, factors["orientation"].numpy()),
        Task("orientation", "r2_sincos", REGRESS, np.stack([np.cos(theta), np.sin(theta)], 1)),
        Task("posX", "r2", REGRESS, factors["posX_value"].double().numpy()[:, None]),
        Task("posY", "r2", REGRESS, factors["posY_value"].double().numpy()[:, None]),
    ]


def fold_angle_target(shape: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """(cos fθ, sin fθ) per image, f = SYMMETRY_FOLD[shape]: orientation up to the shape's symmetry."""
    angle = np.array([SYMMETRY_FOLD[int(s)] for s in shape]) * np.asarray(theta, dtype=np.float64)
    return np.stack([np.cos(angle), np.sin(angle)], 1)


def shape_orientation_tasks(factors: dict[str, Tensor]) -> list[tuple[int, list[Task]]]:
    """Per shape id: orientation within that shape (`orientation_<shape>`: 40-way accuracy and
    r2_sincos_fold). The targets span every image; a caller probes only that shape's rows."""
    shape = factors["shape"].numpy()
    fold = fold_angle_target(shape, factors["orientation_value"].double().numpy())
    return [
        (
            s,
            [
                Task(f"orientation_{name}", "accuracy", CLASSIFY, factors["orientation"].numpy()),
                Task(f"orientation_{name}", "r2_sincos_fold", REGRESS, fold),
            ],
        )
        for s, name in enumerate(SHAPE_NAMES)
    ]


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Pooled R² over all outputs (sklearn's variance_weighted); ȳ is the mean of the evaluated targets."""
    y, pred = y.reshape(len(y), -1), pred.reshape(len(pred), -1)
    total = float(((y - y.mean(0)) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if total > 0 else float("nan")


def score(kind: str, y: np.ndarray, pred: np.ndarray) -> float:
    return float((y == pred).mean()) if kind == CLASSIFY else r2(y, pred)


def bootstrap_ci(
    kind: str, y: np.ndarray, pred: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the score over test examples resampled with replacement (NaN when n_boot = 0).
    All resamples are scored at once (`score` per resample, vectorised: a probe job draws ~700 CIs)."""
    if n_boot < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    if kind == CLASSIFY:
        scores = (y == pred).reshape(len(y), -1).all(1)[idx].mean(1)
    else:
        y2, pred2 = y.reshape(len(y), -1), pred.reshape(len(pred), -1)
        resampled = y2[idx]  # [n_boot, n, k]
        total = ((resampled - resampled.mean(1, keepdims=True)) ** 2).sum((1, 2))
        resid = ((y2 - pred2) ** 2).sum(1)[idx].sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(total > 0, 1.0 - resid / total, np.nan)
    tail = 100 * (1 - level) / 2
    return float(np.nanpercentile(scores, tail)), float(np.nanpercentile(scores, 100 - tail))


def stratified_split(strata: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / test indices, each stratum split alone (its test share rounded, at least one example on each
    side), seeded. numpy only: scikit-learn's import alone is ~2 s of a torch probe job."""
    if not 0 < test_fraction < 1:
        raise MetasaeError(f"probes.test_fraction={test_fraction}: must be in (0, 1)")
    values, codes, counts = np.unique(strata, return_inverse=True, return_counts=True)
    if (counts < 2).any():
        worst = values[counts.argmin()].item()
        raise MetasaeError(
            f"probe split: cannot stratify {len(strata)} examples (stratum {worst!r} has {counts.min()});"
            " use more images"
        )
    rng = np.random.default_rng(seed)
    test = []
    for code, count in enumerate(counts):
        members = rng.permutation(np.flatnonzero(codes.ravel() == code))
        test.append(members[: int(np.clip(round(test_fraction * count), 1, count - 1))])
    is_test = np.zeros(len(strata), dtype=bool)
    is_test[np.concatenate(test)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _estimator(kind: str, probe: str, seed: int, mlp_hidden: int, mlp_iter: int, standardise: bool):
    """(Standardised) features, then multinomial logistic / ridge regression, or a one-hidden-layer MLP.

    Raw pixels are not standardised: it would blow rarely-lit border pixels up to huge values."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if probe == "linear":
        # ridge strength by efficient leave-one-out CV: raw pixels (mostly-zero columns) overfit at alpha=1
        head = LogisticRegression(max_iter=300) if kind == CLASSIFY else RidgeCV(alphas=RIDGE_ALPHAS)
    elif probe == "mlp":
        mlp = MLPClassifier if kind == CLASSIFY else MLPRegressor
        head = mlp(hidden_layer_sizes=(mlp_hidden,), max_iter=mlp_iter, alpha=1e-3, random_state=seed % 2**32)
    else:
        raise MetasaeError(f"probe {probe!r}: allowed {', '.join(PROBES)}")
    return make_pipeline(StandardScaler(), head) if standardise else head


def fit_predict(
    task: Task,
    probe: str,
    x: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int = 0,
    mlp_hidden: int = 64,
    mlp_iter: int = 200,
    standardise: bool = True,
) -> np.ndarray:
    """Fit a scikit-learn probe on the train rows and predict the test rows (iteration limits are budgets,
    not errors): the reference for the torch backend.

    BLAS and OpenMP get torch's thread count (`--threads`): left at one per core, OpenBLAS threads spin
    against each other on a shared machine and a 6-class logistic fit took 24 CPU-s instead of 0.3."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    est = _estimator(task.kind, probe, seed, mlp_hidden, mlp_iter, standardise)
    y = task.target
    with warnings.catch_warnings(), threadpool_limits(limits=torch.get_num_threads()):
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(x[train], y[train] if task.kind == CLASSIFY or y.shape[1] > 1 else y[train, 0])
    return est.predict(x[test]).reshape(len(test), *y.shape[1:])


# -- the torch backend: one task's probes on many feature sets of one width, fitted as stacked tensors -----


@dataclass(frozen=True)
class FeatureSet:
    """One probed representation: features x [N, d], the probes it gets, whether they standardise it."""

    x: np.ndarray
    probes: tuple[str, ...] = PROBES
    standardise: bool = True


def _stackable(sets: list[FeatureSet], members: list[int]) -> list[list[int]]:
    """The members grouped by (width, standardise): the torch backend stacks each group into one tensor."""
    groups: dict[tuple[int, bool], list[int]] = {}
    for i in members:
        groups.setdefault((sets[i].x.shape[1], sets[i].standardise), []).append(i)
    return list(groups.values())


def _predictions(
    backend: str,
    task: Task,
    probe: str,
    group: list[FeatureSet],
    stack: FeatureStack | None,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
    mlp_hidden: int,
    mlp_iter: int,
) -> list[np.ndarray]:
    """Test predictions of one task's probe on each set of a stackable group (torch: its prepared stack)."""
    if backend == "sklearn":
        return [
            fit_predict(task, probe, s.x, train, test, seed, mlp_hidden, mlp_iter, s.standardise)
            for s in group
        ]
    fit = MLPFit(hidden=mlp_hidden, epochs=mlp_iter)
    return torch_predict_stack(task, probe, stack, test, fit, seed)


def _row(task: Task, probe: str, y: np.ndarray, pred: np.ndarray, n_boot: int, seed: int) -> dict:
    lo, hi = bootstrap_ci(task.kind, y, pred, n_boot, seed)
    value = score(task.kind, y, pred)
    return {
        "factor": task.factor,
        "probe": probe,
        "metric": task.metric,
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
    }


def probe_sets(
    sets: list[FeatureSet],
    tasks: list[Task],
    train: np.ndarray,
    test: np.ndarray,
    seed: int = 0,
    n_boot: int = 200,
    mlp_hidden: int = 64,
    mlp_iter: int = 200,
    backend: str = "torch",
) -> list[list[dict]]:
    """Per feature set, one row (factor, probe, metric, value, ci_low, ci_high) per task and probe, in the
    order task x probe. The torch backend fits a task's probe on every set of one width in one go (the
    layers and checkpoints of a ViT), where sklearn fits them one by one (~40 s of MLPs per probe job)."""
    if bad := {p for s in sets for p in s.probes} - set(PROBES):
        raise MetasaeError(f"probe {sorted(bad)}: allowed {', '.join(PROBES)}")
    if backend not in BACKENDS:
        raise MetasaeError(f"probe backend {backend!r}: allowed {', '.join(BACKENDS)}")
    stacks: dict[tuple[int, ...], FeatureStack] = {}  # torch: each group stacked once, for all its tasks
    preds: dict[tuple[int, int, str], np.ndarray] = {}
    for t, task in enumerate(tasks):
        for probe in PROBES:
            members = [i for i, s in enumerate(sets) if probe in s.probes]
            for group in _stackable(sets, members):
                key, stack = tuple(group), None
                if backend == "torch":
                    if key not in stacks:
                        stacks[key] = FeatureStack(
                            [sets[i].x for i in group], train, sets[group[0]].standardise
                        )
                    stack = stacks[key]
                out = _predictions(
                    backend,
                    task,
                    probe,
                    [sets[i] for i in group],
                    stack,
                    train,
                    test,
                    seed,
                    mlp_hidden,
                    mlp_iter,
                )
                preds.update(((i, t, probe), p) for i, p in zip(group, out, strict=True))
    return [
        [
            _row(task, p, task.target[test], preds[i, t, p], n_boot, seed)
            for t, task in enumerate(tasks)
            for p in s.probes
        ]
        for i, s in enumerate(sets)
    ]


def probe_features(
    x: np.ndarray,
    tasks: list[Task],
    train: np.ndarray,
    test: np.ndarray,
    probes: tuple[str, ...] = PROBES,
    seed: int = 0,
    n_boot: int = 200,
    mlp_hidden: int = 64,
    mlp_iter: int = 200,
    standardise: bool = True,
    backend: str = "torch",
) -> list[dict]:
    """One row per task and probe on one feature set x [N, d] (`probe_sets` of a single set)."""
    sets = [FeatureSet(x, tuple(probes), standardise)]
    return probe_sets(sets, tasks, train, test, seed, n_boot, mlp_hidden, mlp_iter, backend)[0]


def confusable_orientations(k: int, fold: int, n: int = N_ORIENTATIONS) -> set[int]:
    """Orientation classes whose images equal class k's up to the shape's symmetry: k's angle turned by
    multiples of 2π/fold, each rounded to the nearest grid step (ties up), with 0 ≡ 2π (classes 0, n-1)."""
    steps = n - 1
    out: set[int] = set()
    for j in range(fold):
        s = math.floor(k % steps + steps * j / fold + 0.5) % steps
        out |= {s, steps} if s == 0 else {s}
    return out


def orientation_ceilings(shape: np.ndarray, orientation: np.ndarray, theta: np.ndarray) -> dict[str, float]:
    """Best orientation scores of an observer that cannot tell a sprite from its symmetric partner (uniform
    orientation prior).

    It is a ceiling at the grid's resolution, not a strict bound: a quarter turn is 9.75 grid steps, so a
    square's partner classes are the quarter turn rounded to the grid, and their renders differ from it by a
    quarter or half step (2.3° or 4.6°; an ellipse's by half a step). A probe that resolves that can pass the
    accuracy ceiling; `r2_sincos_fold` (per shape) has the exact ceiling 1.

    accuracy: mean over examples of 1 / |confusable classes|. r2_sincos: the Bayes prediction of
    (cos θ, sin θ) given the image averages over the symmetry orbit, i.e. 0 for a square or ellipse and
    the truth for a heart; the ceiling is that predictor's R².
    """
    folds = np.array([SYMMETRY_FOLD[int(s)] for s in shape])
    acc = np.mean(
        [1.0 / len(confusable_orientations(int(k), int(f))) for k, f in zip(orientation, folds, strict=True)]
    )
    y = np.stack([np.cos(theta), np.sin(theta)], 1)
    bayes = np.where((folds == 1)[:, None], y, 0.0)
    return {"accuracy": float(acc), "r2_sincos": r2(y, bayes)}


def shape_orientation_ceilings(
    shape: np.ndarray, orientation: np.ndarray, theta: np.ndarray
) -> dict[tuple[str, str], float]:
    """Per shape: the 40-way accuracy ceiling of its images, and the r2_sincos_fold ceiling (the image
    determines fθ, so the Bayes predictor is the target itself: 1 unless the target is constant)."""
    out = {}
    for s, name in enumerate(SHAPE_NAMES):
        rows = shape == s
        if not rows.any():
            continue
        acc = orientation_ceilings(shape[rows], orientation[rows], theta[rows])["accuracy"]
        fold = fold_angle_target(shape[rows], theta[rows])
        out[f"orientation_{name}", "accuracy"] = acc
        out[f"orientation_{name}", "r2_sincos_fold"] = r2(fold, fold)
    return out


@torch.no_grad()
def layer_features(
    model: nn.Module,
    layers: tuple[str, ...],
    images: Tensor,
    batch_size: int = 200,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """Token activations of each named layer, pooled two ways: `<layer>.cls` (token 0) and `<layer>.mean`
    (mean over the patch tokens), each [N, width]."""
    grabbed: dict[str, list[Tensor]] = {name: [] for name in layers}
    hooks = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: grabbed[name].append(out.detach().float().cpu())
        )
        for name in layers
    ]
    try:
        model.eval()
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size].to(device))
    finally:
        for h in hooks:
            h.remove()
    feats: dict[str, Tensor] = {}
    for name in layers:
        tokens = torch.cat(grabbed[name])
        feats[f"{name}.cls"] = tokens[:, 0]
        feats[f"{name}.mean"] = tokens[:, 1:].mean(1)
    return feats


def input_stats(images: Tensor) -> dict[str, float]:
    """Range and mean per-image pixel variance of probed inputs (the log's pipeline made them ≈ constant)."""
    return {
        "min": float(images.min()),
        "max": float(images.max()),
        "mean_image_variance": float(images.flatten(1).var(1).mean()),
    }


def check_inputs(images: Tensor, where: str, min_variance: float = 1e-3) -> dict[str, float]:
    """Refuse inputs outside [0, 1] or near-constant images, naming the dataset."""
    stats = input_stats(images)
    if stats["min"] < 0 or stats["max"] > 1:
        raise MetasaeError(f"{where}: pixels span [{stats['min']:.3g}, {stats['max']:.3g}]; expected [0, 1]")
    if stats["mean_image_variance"] < min_variance:
        raise MetasaeError(
            f"{where}: images are near-constant (mean per-image variance "
            f"{stats['mean_image_variance']:.2e} < {min_variance}); check the input conversion"
        )
    return stats


# -- probe tables and ViT checkpoints, shared by the `probe` and `probe-sae` stages --------------------------

CONTROLS = ("random_init", "pixels", "symmetry_ceiling")
COLUMNS = PROBE_COLUMNS


def vit_checkpoints(vit_dir: Path) -> list[dict]:
    meta = read_json(vit_dir / METRICS_FILE)
    if not meta.get("checkpoints"):
        raise MetasaeError(f"{vit_dir / METRICS_FILE}: missing key 'checkpoints' (not a train-vit output)")
    return meta["checkpoints"]


def probe_images(dataset: str, spec: InputSpec, data_dir) -> tuple[object, torch.Tensor, dict]:
    ds = load_dataset(dataset, data_dir)
    check_inputs(ds.images, dataset)
    images = to_input_spec(
        ds.images, spec
    )  # explicit: the sprites resized to the ViT's input, still in [0, 1]
    return ds, images, check_inputs(images, f"{dataset} at the ViT input {dataclasses.astuple(spec)}")


def best_layer(table: pd.DataFrame) -> str:
    """The layer whose linear probes score highest on average over tasks at the last trained checkpoint."""
    trained = table[~table["train_set"].isin(CONTROLS) & (table["probe"] == "linear")]
    if trained.empty:
        raise MetasaeError("probes.csv: no linear-probe rows of a trained checkpoint")
    final = trained[trained["step"] == trained["step"].max()]
    return str(final.groupby("layer")["value"].mean().idxmax())
