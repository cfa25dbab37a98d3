"""Reconstruction, sparsity, spliced-classifier and probing metrics, each named for what it computes.

Conventions: `x` [N, d] inputs, `x_hat` their reconstructions, `codes` [N, width] SAE latents. FVU is about
the per-dimension mean of x (SAELens 6.18 / SAEBench 0.6 computed it about zero; that one is kept as
`fvu_about_zero` so the two are never confused).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metasae.errors import MetasaeError
from metasae.sae.sparse_rows import SparseRows, as_dense, take_rows


# -- sparsity -------------------------------------------------------------------------------------
def l0(codes: Tensor) -> float:
    """Mean number of non-zero latents per example."""
    return float((codes != 0).sum(1).float().mean())


def feature_density(codes: Tensor) -> Tensor:
    """Fraction of examples on which each latent is non-zero, [width]."""
    return (codes != 0).float().mean(0)


def dead_fraction(density: Tensor) -> float:
    """Fraction of latents that never fire on the evaluated examples."""
    return float((density == 0).float().mean())


def dense_fraction(density: Tensor, threshold: float = 0.1) -> float:
    """Fraction of latents firing on more than `threshold` of examples."""
    return float((density > threshold).float().mean())


def log10_density_histogram(density: Tensor, bins: int = 20, low: float = -6.0) -> dict:
    """Histogram of log10(density) of the live latents over [low, 0]; dead latents are counted apart."""
    live = density[density > 0]
    counts, edges = np.histogram(
        np.log10(live.double().cpu().numpy()).clip(low, 0.0), bins=bins, range=(low, 0.0)
    )
    return {"counts": counts.tolist(), "edges": edges.tolist(), "dead": int((density == 0).sum())}


# -- reconstruction -------------------------------------------------------------------------------
class ReconstructionStats:
    """Streaming sums for the reconstruction metrics, so a large cache is evaluated batch by batch."""

    def __init__(self) -> None:
        self.n = 0
        self.sum_x: Tensor | None = None
        self.sums = dict.fromkeys(("sq_err", "sq_x", "sq_xhat", "dot", "cos", "l2_ratio"), 0.0)

    def update(self, x: Tensor, x_hat: Tensor) -> None:
        x, x_hat = x.detach().double(), x_hat.detach().double()  # statistics, never differentiated
        self.n += len(x)
        self.sum_x = x.sum(0) if self.sum_x is None else self.sum_x + x.sum(0)
        nx, nxh = x.norm(dim=1), x_hat.norm(dim=1)
        s = self.sums
        s["sq_err"] += float((x - x_hat).pow(2).sum())
        s["sq_x"] += float(nx.pow(2).sum())
        s["sq_xhat"] += float(nxh.pow(2).sum())
        s["dot"] += float((x * x_hat).sum())
        s["cos"] += float(F.cosine_similarity(x, x_hat, dim=1, eps=1e-12).sum())
        s["l2_ratio"] += float((nxh / nx.clamp_min(1e-12)).sum())

    def result(self) -> dict[str, float]:
        if self.n == 0 or self.sum_x is None:
            raise MetasaeError("reconstruction metrics need at least one example")
        s, n = self.sums, self.n
        total_var = s["sq_x"] - float(self.sum_x.pow(2).sum()) / n  # sum ||x - mean||^2
        fvu_mean = s["sq_err"] / total_var if total_var > 0 else float("nan")
        return {
            "fvu": fvu_mean,
            "explained_variance": 1.0 - fvu_mean,
            "fvu_about_zero": s["sq_err"] / s["sq_x"] if s["sq_x"] > 0 else float("nan"),
            "mse": s["sq_err"] / n,  # sum over dims, mean over examples
            "cosine": s["cos"] / n,
            "l2_ratio": s["l2_ratio"] / n,
            "relative_reconstruction_bias": s["sq_xhat"] / s["dot"] if s["dot"] != 0 else float("nan"),
        }


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """sum ||x - x_hat||^2 / sum ||x - mean(x)||^2."""
    return _one_shot(x, x_hat)["fvu"]


def explained_variance(x: Tensor, x_hat: Tensor) -> float:
    return 1.0 - fvu(x, x_hat)


def fvu_about_zero(x: Tensor, x_hat: Tensor) -> float:
    """Legacy: sum ||x - x_hat||^2 / sum ||x||^2 (variance about zero, as SAELens 6.18 / SAEBench 0.6)."""
    return _one_shot(x, x_hat)["fvu_about_zero"]


def cosine(x: Tensor, x_hat: Tensor) -> float:
    """Mean over examples of cos(x, x_hat)."""
    return _one_shot(x, x_hat)["cosine"]


def l2_ratio(x: Tensor, x_hat: Tensor) -> float:
    """Mean over examples of ||x_hat|| / ||x||."""
    return _one_shot(x, x_hat)["l2_ratio"]


def relative_reconstruction_bias(x: Tensor, x_hat: Tensor) -> float:
    """E||x_hat||^2 / E<x, x_hat>: 1 when unbiased, < 1 when the SAE shrinks its outputs."""
    return _one_shot(x, x_hat)["relative_reconstruction_bias"]


def _one_shot(x: Tensor, x_hat: Tensor) -> dict[str, float]:
    stats = ReconstructionStats()
    stats.update(x, x_hat)
    return stats.result()


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


@torch.no_grad()
def sae_metrics(
    sae: nn.Module,
    data: Tensor | SparseRows,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
    density_threshold: float = 0.1,
) -> dict:
    """All reconstruction and sparsity metrics of `sae` on `data` [N, d_in] (raw inputs; dense or sparse
    rows)."""
    was_training = sae.training
    sae.eval()
    stats = ReconstructionStats()
    fires = torch.zeros(sae.cfg.width, dtype=torch.float64)
    active = 0.0
    for sl in _batches(len(data), batch_size):
        batch = take_rows(data, sl).to(device)
        z = sae.encode(batch)
        stats.update(as_dense(batch), sae.decode(z))
        nz = z != 0
        fires += nz.sum(0).double().cpu()
        active += float(nz.sum())
    sae.train(was_training)
    density = (fires / len(data)).float()
    return {
        **stats.result(),
        "l0": active / len(data),
        "dead_fraction": dead_fraction(density),
        "dense_fraction": dense_fraction(density, density_threshold),
        "dense_threshold": density_threshold,
        "log10_density_histogram": log10_density_histogram(density),
        "n_examples": len(data),
    }


# -- spliced classifier ---------------------------------------------------------------------------
@contextlib.contextmanager
def replace_output(model: nn.Module, layer: str, fn: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Within the block, `model.<layer>` outputs fn(its output) (a forward hook; removed on exit)."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise MetasaeError(f"layer {layer!r} not in model; named layers: {', '.join(names)}") from None
    handle = module.register_forward_hook(lambda _m, _i, out: fn(out.flatten(1)).reshape(out.shape))
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def _ce_and_accuracy(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    labels: Tensor,
    batch_size: int,
    device: str | torch.device,
) -> tuple[float, float]:
    ce, correct = 0.0, 0
    for sl in _batches(len(inputs), batch_size):
        logits = model(inputs[sl].to(device))
        y = labels[sl].to(device)
        ce += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return ce / len(inputs), correct / len(inputs)


def _head(model: nn.Module, layer: str, acts: Tensor | None) -> Callable[[Tensor], Tensor] | None:
    """The model after `layer` (`Classifier.head_from`) when the layer's outputs `acts` are known."""
    head_from = getattr(model, "head_from", None)
    return head_from(layer) if acts is not None and head_from is not None else None


def _scored(
    model: nn.Module,
    layer: str,
    replace: Callable[[Tensor], Tensor] | None,
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    device: str | torch.device,
    acts: Tensor | None,
    rebuilt: Tensor | None = None,
) -> tuple[float, float]:
    """CE and accuracy with `model.<layer>`'s output replaced by replace(output) (None: clean): from the
    layer's outputs `acts` through the rest of the model where it has a head, else a hooked full pass.
    `rebuilt`: replace(acts), where the caller has it already (the head then runs on it)."""
    head = _head(model, layer, acts)
    if head is not None and rebuilt is not None:
        return _ce_and_accuracy(head, rebuilt, labels, batch_size, device)
    if head is not None:
        rest = head if replace is None else (lambda a: head(replace(a)))
        return _ce_and_accuracy(rest, acts, labels, batch_size, device)
    with contextlib.nullcontext() if replace is None else replace_output(model, layer, replace):
        return _ce_and_accuracy(model, images, labels, batch_size, device)


@torch.no_grad()
def layer_mean(
    model: nn.Module, layer: str, images: Tensor, batch_size: int = 512, device: str | torch.device = "cpu"
) -> Tensor:
    """Mean output of `model.<layer>` over `images` (the mean-ablation baseline's replacement)."""
    total: list[Tensor] = []

    def grab(out: Tensor) -> Tensor:
        total.append(out.sum(0))
        return out

    with replace_output(model, layer, grab):
        for sl in _batches(len(images), batch_size):
            model(images[sl].to(device))
    return torch.stack(total).sum(0) / len(images)


@torch.no_grad()
def splice_baselines(
    model: nn.Module,
    layer: str,
    images: Tensor,
    labels: Tensor,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    ablation_mean: Tensor | None = None,
    acts: Tensor | None = None,
) -> dict[str, float]:
    """Classifier CE / accuracy clean and with the layer zero- or mean-ablated: what `spliced_metrics`
    compares an SAE's splice with, the same for every SAE spliced into one classifier layer. `acts`: the
    layer's (flat) outputs on `images`, which a model with a head (`Classifier.head_from`) runs from."""
    model.eval()
    if ablation_mean is not None:
        mean = ablation_mean.to(device)
    elif _head(model, layer, acts) is not None:
        mean = acts.to(device).mean(0)
    else:
        mean = layer_mean(model, layer, images, batch_size, device)
    variants: dict[str, Callable[[Tensor], Tensor] | None] = {
        "clean": None,
        "zero_ablation": torch.zeros_like,
        "mean_ablation": lambda a: mean.expand_as(a),
    }
    out: dict[str, float] = {}
    for name, fn in variants.items():
        out[f"ce_{name}"], out[f"accuracy_{name}"] = _scored(
            model, layer, fn, images, labels, batch_size, device, acts
        )
    return out


@torch.no_grad()
def spliced_metrics(
    model: nn.Module,
    layer: str,
    sae: nn.Module,
    images: Tensor,
    labels: Tensor,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    ablation_mean: Tensor | None = None,
    baselines: dict[str, float] | None = None,
    acts: Tensor | None = None,
    rebuilt: Tensor | None = None,
) -> dict[str, float]:
    """Classifier CE / accuracy clean, with the SAE's reconstruction spliced into `layer`, and with the
    layer zero- or mean-ablated; loss_recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean). `baselines`:
    `splice_baselines` of the same model, layer, images and labels, computed once for many SAEs. `acts`: the
    layer's outputs on `images` (see splice_baselines); `rebuilt`: the SAE's reconstruction of them, if
    known."""
    out = dict(
        baselines or splice_baselines(model, layer, images, labels, batch_size, device, ablation_mean, acts)
    )
    model.eval()
    sae.eval()
    out["ce_sae"], out["accuracy_sae"] = _scored(
        model, layer, sae, images, labels, batch_size, device, acts, rebuilt
    )
    gap = out["ce_zero_ablation"] - out["ce_clean"]
    out["loss_recovered"] = (out["ce_zero_ablation"] - out["ce_sae"]) / gap if gap != 0 else float("nan")
    gap_mean = out["ce_mean_ablation"] - out["ce_clean"]
    out["loss_recovered_vs_mean"] = (
        (out["ce_mean_ablation"] - out["ce_sae"]) / gap_mean if gap_mean != 0 else float("nan")
    )
    return out


# -- k-sparse probing -----------------------------------------------------------------------------
def select_latents(codes: Tensor, labels: Tensor, k: int) -> Tensor:
    """The k latents whose class means differ most, by between-class / total variance (eta squared)."""
    z = codes.double()
    classes, inverse = labels.unique(return_inverse=True)
    counts = torch.bincount(inverse, minlength=len(classes)).double()
    class_means = (
        torch.zeros(len(classes), z.shape[1], dtype=z.dtype).index_add_(0, inverse, z) / counts[:, None]
    )
    between = (counts[:, None] * (class_means - z.mean(0)).pow(2)).sum(0)
    total = (z - z.mean(0)).pow(2).sum(0)
    eta2 = torch.where(total > 0, between / total.clamp_min(1e-300), torch.zeros_like(total))
    return eta2.topk(k).indices


def k_sparse_probing(
    codes: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 2, 5), test_fraction: float = 0.2, seed: int = 0
) -> dict[str, float]:
    """Test accuracy of a multinomial logistic regression on the k best latents (chosen on the train
    split)."""
    from sklearn.linear_model import LogisticRegression

    n = len(codes)
    if n < 5 or len(labels.unique()) < 2:
        raise MetasaeError(
            f"k-sparse probing needs >= 5 examples and >= 2 classes (got {n}, {len(labels.unique())})"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, int(round(test_fraction * n)))
    test, train = perm[:n_test], perm[n_test:]
    out: dict[str, float] = {}
    for k in ks:
        chosen = select_latents(codes[train], labels[train], min(k, codes.shape[1]))
        clf = LogisticRegression(max_iter=1000)
        clf.fit(codes[train][:, chosen].double().numpy(), labels[train].numpy())
        out[f"k{k}_accuracy"] = float(
            clf.score(codes[test][:, chosen].double().numpy(), labels[test].numpy())
        )
    return out


@torch.no_grad()
def evaluate_classifier(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> dict:
    """Accuracy and mean cross-entropy of `model` on an already converted image tensor."""
    device = next(model.parameters()).device
    correct, loss = 0, 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return {"accuracy": correct / len(images), "cross_entropy": loss / len(images), "n": len(images)}
