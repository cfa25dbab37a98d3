"""Many probes fitted at once in torch: every feature set of the same width (each checkpoint x layer) is one
slice of a stacked weight, so a task's probes share one optimiser and one batched matmul per step (the
scikit-learn path in `metasae.probes` fits them one by one and stays as the reference).

- linear regression: RidgeCV's closed form (leave-one-out choice of alpha, unpenalised intercept), exactly;
- logistic regression: one full-batch L-BFGS over the stack;
- MLP: stacked one-hidden-layer MLPs, Adam, early stopping on a seeded tenth of the train rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

CLASSIFY, REGRESS = "classification", "regression"
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass(frozen=True)
class Task:
    factor: str
    metric: str
    kind: str
    target: np.ndarray  # class ids [N] or regression targets [N, k]


@dataclass(frozen=True)
class MLPFit:
    """How the torch MLP probes train: Adam on minibatches, stopped when the held-out rows' loss has not
    improved for `patience` epochs (best weights kept). sklearn's MLP defaults: lr, alpha, patience."""

    hidden: int = 64
    epochs: int = 200
    batch_size: int = 512
    lr: float = 3e-3
    alpha: float = 1e-3
    patience: int = 10
    val_fraction: float = 0.1


def standardise_stack(x: Tensor, train: np.ndarray) -> Tensor:
    """StandardScaler per feature set of x [P, N, d] (float64): train-row mean and std, scale 1 for columns
    sklearn's rule calls constant (an input-independent CLS token would otherwise blow rounding up)."""
    xtr = x[:, train]
    mean, var = xtr.mean(1, keepdim=True), xtr.var(1, unbiased=False, keepdim=True)
    n, eps = len(train), torch.finfo(torch.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    return (x - mean) / torch.where(constant, 1.0, var.sqrt())


def centred_svd(xc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD (U [P, n, r], s [P, r], V [P, d, r]) of centred train rows [P, n, d]. With more rows than
    columns, from the eigenvectors of the d x d Gram matrix (raw pixels: 2100 x 1024, ~5x faster than the
    SVD); directions with s^2 under 1e-12 of the largest get U = 0, which ridge shrinks to nothing anyway."""
    if xc.shape[1] < xc.shape[2]:
        u, s, vh = torch.linalg.svd(xc, full_matrices=False)
        return u, s, vh.transpose(1, 2)
    evals, v = torch.linalg.eigh(xc.transpose(1, 2) @ xc)
    keep = evals > 1e-12 * evals.amax(1, keepdim=True).clamp_min(1e-300)
    s = torch.where(keep, evals.clamp_min(0).sqrt(), 0.0)
    return (xc @ v) / torch.where(keep, s, 1.0)[:, None] * keep[:, None], s, v


def ridge_cv_stack(x: Tensor, y: Tensor, train: np.ndarray, test: np.ndarray) -> Tensor:
    """RidgeCV(RIDGE_ALPHAS) per feature set: the alpha of least leave-one-out squared error (pooled over
    outputs), then its test predictions [P, n_test, k]. Closed form from one SVD of the centred train rows,
    e_i = r_i / (1 - h_ii) with an unpenalised intercept (h += 1/n): the same choice as sklearn's GCV."""
    xtr, ytr = x[:, train], y[train]
    x_mean, y_mean = xtr.mean(1, keepdim=True), ytr.mean(0)
    u, s, v = centred_svd(xtr - x_mean)
    uy = u.transpose(1, 2) @ (ytr - y_mean)  # [P, r, k]
    alphas = torch.tensor(RIDGE_ALPHAS, dtype=x.dtype)
    shrink = s[:, None] ** 2 / (s[:, None] ** 2 + alphas[None, :, None])  # [P, A, r]
    fitted = u[:, None] @ (shrink[..., None] * uy[:, None])  # [P, A, n, k]
    hat = (u**2 @ shrink.transpose(1, 2)).transpose(1, 2) + 1.0 / len(train)  # [P, A, n]
    loo = (((ytr - y_mean) - fitted) / (1 - hat)[..., None]) ** 2
    best = alphas[loo.mean((2, 3)).argmin(1)]  # [P]
    coef = v @ ((s / (s**2 + best[:, None]))[..., None] * uy)  # [P, d, k]
    return (x[:, test] - x_mean) @ coef + y_mean


def logistic_stack(
    x: Tensor, codes: Tensor, n_classes: int, train: np.ndarray, test: np.ndarray, max_iter: int = 100
) -> Tensor:
    """Multinomial logistic regression per feature set (sklearn's: L2 with C = 1, intercept unpenalised):
    one full-batch L-BFGS over the summed objectives. They share no parameter, so the sum's minimum is each
    one's, and its max-abs gradient test (sklearn's tol) holds for every set at once; `max_iter` is a budget
    (100: test accuracy moves by under 0.01 after it on the dSprites probes). The gradient is by hand, with
    the weights stored [P, K, d]: autograd's x^T @ g for a few classes ran at a quarter of the speed.
    Test logits [P, n_test, K]."""
    xtr, n = x[:, train], len(train)
    xtr_t = xtr.transpose(1, 2).contiguous()  # [P, d, n]
    onehot = nn.functional.one_hot(codes[train], n_classes).T.to(x.dtype)  # [K, n]
    wt = torch.zeros(len(x), n_classes, x.shape[2], dtype=x.dtype, requires_grad=True)
    b = torch.zeros(len(x), n_classes, 1, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS(
        [wt, b], max_iter=max_iter, tolerance_grad=1e-4, history_size=10, line_search_fn="strong_wolfe"
    )

    @torch.no_grad()
    def closure() -> Tensor:
        z = torch.baddbmm(b, wt, xtr_t)  # [P, K, n]
        lse = z.logsumexp(1, keepdim=True)
        g = (z - lse).exp_() - onehot
        wt.grad = (torch.bmm(g, xtr) + wt) / n
        b.grad = g.sum(2, keepdim=True) / n
        return (lse.sum() - (z * onehot).sum() + 0.5 * (wt**2).sum()) / n

    opt.step(closure)
    with torch.no_grad():
        return torch.baddbmm(b, wt, x[:, test].transpose(1, 2)).transpose(1, 2)


class StackedMLP(nn.Module):
    """P independent one-hidden-layer ReLU MLPs (sklearn's Glorot-uniform init), each on its own features."""

    def __init__(self, n_sets: int, d_in: int, hidden: int, d_out: int, gen: torch.Generator) -> None:
        super().__init__()

        def glorot(*shape: int, fan_in: int, fan_out: int) -> nn.Parameter:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            return nn.Parameter((torch.rand(n_sets, *shape, generator=gen) * 2 - 1) * bound)

        self.w1 = glorot(d_in, hidden, fan_in=d_in, fan_out=hidden)
        self.b1 = glorot(1, hidden, fan_in=d_in, fan_out=hidden)
        self.w2 = glorot(hidden, d_out, fan_in=hidden, fan_out=d_out)
        self.b2 = glorot(1, d_out, fan_in=hidden, fan_out=d_out)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.b2, torch.relu(torch.baddbmm(self.b1, x, self.w1)), self.w2)

    def weight_norm(self) -> Tensor:
        return (self.w1**2).sum() + (self.w2**2).sum()


def _per_set_loss(kind: str, out: Tensor, y: Tensor) -> Tensor:
    """Mean loss per feature set [P]: cross-entropy on class codes, or sklearn's half squared error."""
    if kind == CLASSIFY:
        ce = nn.functional.cross_entropy(out.transpose(1, 2), y.expand(len(out), -1), reduction="none")
        return ce.mean(1)
    return 0.5 * ((out - y) ** 2).mean((1, 2))


def mlp_stack(
    kind: str, x: Tensor, y: Tensor, d_out: int, train: np.ndarray, test: np.ndarray, fit: MLPFit, seed: int
) -> Tensor:
    """MLP probes of every feature set of x [P, N, d] (float32) trained together: Adam on the summed losses
    (per-parameter steps, so each set trains as if alone), early-stopped per set on a held-out tenth of
    the train rows. Test outputs [P, n_test, d_out] of each set's best epoch."""
    gen = torch.Generator().manual_seed(seed % 2**63)
    shuffled = train[torch.randperm(len(train), generator=gen).numpy()]
    n_val = max(1, round(fit.val_fraction * len(train)))
    fit_rows, val_rows = shuffled[n_val:], shuffled[:n_val]
    model = StackedMLP(len(x), x.shape[2], fit.hidden, d_out, gen)
    opt = torch.optim.Adam(model.parameters(), lr=fit.lr)
    best_loss = torch.full((len(x),), math.inf)
    best = [p.detach().clone() for p in model.parameters()]
    stale = torch.zeros(len(x), dtype=torch.long)
    for _ in range(fit.epochs):
        for rows in torch.randperm(len(fit_rows), generator=gen).split(fit.batch_size):
            idx = fit_rows[rows.numpy()]
            loss = _per_set_loss(kind, model(x[:, idx]), y[idx]).sum()
            loss = loss + 0.5 * fit.alpha * model.weight_norm() / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = _per_set_loss(kind, model(x[:, val_rows]), y[val_rows])
            better = val < best_loss
            best_loss = torch.where(better, val, best_loss)
            stale = torch.where(better, 0, stale + 1)
            for kept, p in zip(best, model.parameters(), strict=True):
                kept[better] = p[better]
        if bool((stale >= fit.patience).all()):
            break
    with torch.no_grad():
        for kept, p in zip(best, model.parameters(), strict=True):
            p.copy_(kept)
        return model(x[:, test])


def torch_predict_stack(
    task: Task,
    probe: str,
    xs: list[np.ndarray],
    train: np.ndarray,
    test: np.ndarray,
    standardise: bool,
    fit: MLPFit,
    seed: int,
) -> list[np.ndarray]:
    """One task's probe on feature sets of one width, fitted together; test predictions per set, shaped
    as the sklearn path's (class ids, or regression targets [n_test, k])."""
    x = torch.from_numpy(np.stack(xs)).double()
    if standardise:
        x = standardise_stack(x, train)
    if task.kind == CLASSIFY:
        classes, codes = np.unique(task.target[train], return_inverse=True)
        all_codes = torch.from_numpy(np.searchsorted(classes, task.target).clip(0, len(classes) - 1))
        if probe == "linear":
            out = logistic_stack(x.float(), all_codes, len(classes), train, test)
        else:
            out = mlp_stack(CLASSIFY, x.float(), all_codes, len(classes), train, test, fit, seed)
        return list(classes[out.argmax(2).numpy()])
    y = torch.from_numpy(np.asarray(task.target, dtype=np.float64).reshape(len(task.target), -1))
    if probe == "linear":
        out = ridge_cv_stack(x, y, train, test)
    else:
        out = mlp_stack(REGRESS, x.float(), y.float(), y.shape[1], train, test, fit, seed)
    return [o.reshape(len(test), *task.target.shape[1:]) for o in out.double().numpy()]


# -- probing feature sets: rows per set, either backend ----------------------------------------------------
