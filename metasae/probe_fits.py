"""Many probes fitted at once in torch: every feature set of the same width (each checkpoint x layer) is one
slice of a stacked weight, so a task's probes share one optimiser and one batched matmul per step (the
scikit-learn path in `metasae.probes` fits them one by one and stays as the reference).

- linear regression: RidgeCV's closed form (leave-one-out choice of alpha, unpenalised intercept), exactly;
- logistic regression: batched L-BFGS (each set its own curvature and line search) in the SVD basis;
- MLP: stacked one-hidden-layer MLPs, Adam, early stopping on a seeded tenth of the train rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

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
    improved by `tol` for `patience` epochs (best weights kept). sklearn's MLP defaults: alpha, patience,
    tol; lr and batch larger (sklearn's 1e-3 and 200 took 2x the time and agreed with it no better)."""

    hidden: int = 64
    epochs: int = 200
    batch_size: int = 512
    lr: float = 3e-3
    alpha: float = 1e-3
    patience: int = 10
    tol: float = 1e-4
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


class FeatureStack:
    """Feature sets of one width as one tensor x [P, N, d] (float64, standardised on the train rows when
    asked), with what every task's probe on them shares: the float32 copy the iterative fits use and the
    train rows' SVD that the linear probes solve every target in. Built once per group, not per task."""

    def __init__(self, xs: list[np.ndarray], train: np.ndarray, standardise: bool) -> None:
        x = torch.from_numpy(np.stack(xs)).double()
        self.x = standardise_stack(x, train) if standardise else x
        self.train = train

    @cached_property
    def x32(self) -> Tensor:
        return self.x.float()

    @cached_property
    def basis(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(train-row mean [P, 1, d], U, s, V) of the centred train rows: ridge and logistic fits use it."""
        x_mean = self.x[:, self.train].mean(1, keepdim=True)
        return (x_mean, *centred_svd(self.x[:, self.train] - x_mean))


def ridge_cv_stack(stack: FeatureStack, y: Tensor, test: np.ndarray) -> Tensor:
    """RidgeCV(RIDGE_ALPHAS) per feature set: the alpha of least leave-one-out squared error (pooled over
    outputs), then its test predictions [P, n_test, k]. Closed form from the SVD of the centred train rows,
    e_i = r_i / (1 - h_ii) with an unpenalised intercept (h += 1/n): the same choice as sklearn's GCV."""
    x_mean, u, s, v = stack.basis
    ytr = y[stack.train]
    y_mean = ytr.mean(0)
    uy = u.transpose(1, 2) @ (ytr - y_mean)  # [P, r, k]
    alphas = torch.tensor(RIDGE_ALPHAS, dtype=stack.x.dtype)
    shrink = s[:, None] ** 2 / (s[:, None] ** 2 + alphas[None, :, None])  # [P, A, r]
    fitted = u[:, None] @ (shrink[..., None] * uy[:, None])  # [P, A, n, k]
    hat = (u**2 @ shrink.transpose(1, 2)).transpose(1, 2) + 1.0 / len(ytr)  # [P, A, n]
    loo = (((ytr - y_mean) - fitted) / (1 - hat)[..., None]) ** 2
    best = alphas[loo.mean((2, 3)).argmin(1)]  # [P]
    coef = v @ ((s / (s**2 + best[:, None]))[..., None] * uy)  # [P, d, k]
    return (stack.x[:, test] - x_mean) @ coef + y_mean


def lbfgs_stack(
    objective_on, w: Tensor, max_iter: int, tol: float, history: int = 10, max_halvings: int = 30
) -> Tensor:
    """Minimise P independent smooth objectives at once. `objective_on(sets)` gives the objective of the
    sets with those indices: `(w [len(sets), m]) -> (f [len(sets)], grad [len(sets), m])`.

    L-BFGS with each set's own curvature pairs, step size and Armijo backtracking, so every set takes the
    steps it would take alone (one shared line search over the summed objective, as torch.optim.LBFGS does,
    lets the slowest set pace them all); a set stops once its max |grad| <= tol (sklearn's test). The
    evaluations stay batched, over the sets still running: once a quarter of them have stopped, the
    stopped ones leave the batch (a few slow sets would otherwise pay for all of them)."""
    out = w.clone()
    live = torch.arange(len(w))
    objective = objective_on(live)
    f, g = objective(w)
    pairs: list[tuple[Tensor, Tensor, Tensor]] = []  # the newest `history` (s, y, 1 / s.y), per set
    for _iteration in range(max_iter):
        active = g.abs().amax(1) > tol
        if not bool(active.any()):
            break
        if int(active.sum()) <= 0.75 * len(live):
            out[live] = w
            keep = active.nonzero().squeeze(1)
            live, w, f, g, active = live[keep], w[keep], f[keep], g[keep], active[keep]
            pairs = [(s[keep], y[keep], rho[keep]) for s, y, rho in pairs]
            objective = objective_on(live)
        q, alphas = g.clone(), []
        for s, y, rho in reversed(pairs):
            a = rho * (s * q).sum(1)
            q -= a[:, None] * y
            alphas.append(a)
        if pairs:  # initial Hessian: gamma = s.y / y.y of the newest pair
            s, y, _ = pairs[-1]
            q *= ((s * y).sum(1) / (y * y).sum(1).clamp_min(1e-30))[:, None]
        else:
            q *= torch.clamp(1.0 / g.abs().sum(1), max=1.0)[:, None]
        for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
            q += (a - rho * (y * q).sum(1))[:, None] * s
        direction = torch.where(active[:, None], -q, 0.0)
        slope = (g * direction).sum(1)
        step = torch.ones_like(f)
        todo = active.clone()
        w_new, f_new, g_new = w, f, g
        for _ in range(max_halvings):
            trial = w + step[:, None] * direction
            f_t, g_t = objective(trial)
            ok = todo & (f_t <= f + 1e-4 * step * slope)
            w_new = torch.where(ok[:, None], trial, w_new)
            f_new, g_new = torch.where(ok, f_t, f_new), torch.where(ok[:, None], g_t, g_new)
            todo &= ~ok
            if not bool(todo.any()):
                break
            step = torch.where(todo, step * 0.5, step)
        s, y = w_new - w, g_new - g
        sy = (s * y).sum(1)
        rho = torch.where(sy > 1e-10, 1.0 / sy.clamp_min(1e-10), 0.0)  # a set that did not move adds nothing
        pairs = [*pairs, (s, y, rho)][-history:]
        w, f, g = w_new, f_new, g_new
    out[live] = w
    return out


DATA_CURVATURE = 0.25  # the largest curvature of the mean cross-entropy along a unit-variance feature


def logistic_stack(
    stack: FeatureStack,
    codes: Tensor,
    n_classes: int,
    test: np.ndarray,
    max_iter: int = 100,
    tol: float = 1e-3,
) -> Tensor:
    """Multinomial logistic regression per feature set (sklearn's: L2 with C = 1, intercept unpenalised),
    fitted by `lbfgs_stack` until max |gradient| <= tol in the rescaled coordinates below; `max_iter` is a
    budget. At 1e-3 (sklearn: 1e-4 in its own) test accuracies on the dSprites probes sit within 0.011 of
    sklearn's (1e-4 gave 0.007 for 30% more time: benchmarks/probe_backends.py). Test logits [P, n_test, K].

    Solved in the train rows' SVD basis (shared with ridge), each component rescaled so that the data and
    the L2 term together curve about equally along every coordinate: with z = (x - mean) V diag(t / s) e
    sqrt(n) + b, the penalty 0.5 |w|^2 / n is 0.5 sum_j (t_j / s_j)^2 e_j^2 and t_j = (0.25 + s_j^-2)^-1/2.
    It is the same problem (same optimum, same predictions), but correlated features no longer make it
    ill-conditioned: L-BFGS then needs a fraction of the iterations. Objective and gradient by hand, on
    logits laid out [P, n, K] so the softmax reduces over contiguous memory."""
    x_mean, u, s, v = stack.basis
    train, n, p = stack.train, len(stack.train), len(stack.x)
    inv_s = torch.where(s > 0, 1.0 / s.clamp_min(1e-300), 0.0)  # [P, r]; a null direction stays at 0
    t = 1.0 / torch.sqrt(DATA_CURVATURE + inv_s**2)
    scale = (math.sqrt(n) * t * inv_s)[:, None]  # [P, 1, r]: centred features -> scaled components
    ftr = (u * (math.sqrt(n) * t)[:, None]).float()  # [P, n, r] == (x_train - mean) V * scale
    ftr_t = ftr.transpose(1, 2).contiguous()
    penalty = ((t * inv_s) ** 2).float()[..., None]  # [P, r, 1]
    onehot = nn.functional.one_hot(codes[train], n_classes).float()  # [n, K]
    r = ftr.shape[2]

    def objective_on(sets: Tensor):
        f_s, f_s_t, pen = ftr[sets], ftr_t[sets], penalty[sets]

        def objective(flat: Tensor) -> tuple[Tensor, Tensor]:
            e = flat.view(len(sets), r + 1, n_classes)
            coef, b = e[:, :r], e[:, r:]
            logp = torch.baddbmm(b, f_s, coef).log_softmax(2)  # [P, n, K]
            loss = -(logp * onehot).sum((1, 2)) / n + 0.5 * (pen * coef**2).sum((1, 2))
            resid = logp.exp_().sub_(onehot)
            grad = torch.cat([torch.bmm(f_s_t, resid) / n + pen * coef, resid.sum(1, keepdim=True) / n], 1)
            return loss, grad.view(len(sets), -1)

        return objective

    e = lbfgs_stack(objective_on, torch.zeros(p, (r + 1) * n_classes), max_iter, tol)
    e = e.view(p, r + 1, n_classes).double()
    f_test = ((stack.x[:, test] - x_mean) @ v) * scale
    return torch.baddbmm(e[:, r:], f_test, e[:, :r])


MIN_BATCHES = 4  # minibatches per epoch at least: what a 3,000-image probe set takes at batch 512


def _glorot(fan_in: int, fan_out: int, rows: int, gen: torch.Generator) -> Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(rows, fan_out, generator=gen) * 2 - 1) * bound


class StackedMLP:
    """P independent one-hidden-layer ReLU MLPs (sklearn's Glorot-uniform init), each on its own features,
    with the backward pass by hand: the four weights are plain tensors for `metasae.optim.Adam`, and a
    step costs two batched matmuls each way instead of an autograd graph (the fits are tiny, so the graph's
    bookkeeping was most of their time)."""

    def __init__(self, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> None:
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2, b2
        self.params = [w1, b1, w2, b2]

    @classmethod
    def init(cls, n_sets: int, d_in: int, hidden: int, d_out: int, seed: int) -> StackedMLP:
        """Set i drawn from its own generator (seed, i): its start does not depend on its stack-mates."""
        weights = []
        for i in range(n_sets):
            gen = torch.Generator().manual_seed((seed + 7919 * (i + 1)) % 2**63)
            weights.append(
                [
                    _glorot(d_in, hidden, d_in, gen),
                    _glorot(d_in, hidden, 1, gen),
                    _glorot(hidden, d_out, hidden, gen),
                    _glorot(hidden, d_out, 1, gen),
                ]
            )
        return cls(*(torch.stack(w) for w in zip(*weights, strict=True)))

    def narrowed(self, rows: Tensor) -> StackedMLP:
        return StackedMLP(*(p[rows].contiguous() for p in self.params))

    def __call__(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.b2, torch.relu(torch.baddbmm(self.b1, x, self.w1)), self.w2)

    def backward(self, x: Tensor, target: Tensor, kind: str, weight_decay: float) -> None:
        """Set each weight's .grad for the mean loss on (x, target) plus weight_decay / 2 * (|w1|^2 +
        |w2|^2)."""
        h = torch.relu(torch.baddbmm(self.b1, x, self.w1))
        g_out = _loss_and_grad(kind, torch.baddbmm(self.b2, h, self.w2), target)[1]
        g_h = torch.bmm(g_out, self.w2.transpose(1, 2)).mul_(h > 0)
        self.w2.grad = torch.baddbmm(self.w2, h.transpose(1, 2), g_out, beta=weight_decay)
        self.b2.grad = g_out.sum(1, keepdim=True)
        self.w1.grad = torch.baddbmm(self.w1, x.transpose(1, 2), g_h, beta=weight_decay)
        self.b1.grad = g_h.sum(1, keepdim=True)


def _loss_and_grad(kind: str, out: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Mean loss per set [P] and its gradient at the outputs [P, B, k]: cross-entropy against one-hot
    targets, or sklearn's half squared error against regression targets [B, k]."""
    if kind == CLASSIFY:
        logp = out.log_softmax(2)
        return -(logp * target).sum(2).mean(1), (logp.exp() - target) / out.shape[1]
    resid = out - target
    return 0.5 * (resid**2).mean((1, 2)), resid / (out.shape[1] * out.shape[2])


def mlp_stack(
    kind: str, x: Tensor, y: Tensor, d_out: int, train: np.ndarray, test: np.ndarray, fit: MLPFit, seed: int
) -> Tensor:
    """MLP probes of every feature set of x [P, N, d] (float32) trained together: Adam on the summed losses
    (per-parameter steps, so each set trains as if alone). Each set stops after `patience` epochs that fail
    to beat its best loss on a held-out `val_fraction` of the train rows by `tol` (sklearn's rule, there on
    the training loss); its best epoch's weights are kept. Test outputs [P, n_test, d_out]."""
    from metasae.optim import Adam

    gen = torch.Generator().manual_seed(seed % 2**63)
    shuffled = train[torch.randperm(len(train), generator=gen).numpy()]
    n_val = max(1, round(fit.val_fraction * len(train)))
    fit_rows, val_rows = shuffled[n_val:], shuffled[:n_val]
    if kind == CLASSIFY:  # one-hot over every class, so a batch missing one keeps the width
        y = nn.functional.one_hot(y, d_out).float()
    model = StackedMLP.init(len(x), x.shape[2], fit.hidden, d_out, seed)
    opt = Adam(model.params, lr=fit.lr)
    x_fit, y_fit, x_val = x[:, fit_rows], y[fit_rows], x[:, val_rows]
    live = torch.arange(len(x))  # the sets still training; a stopped set leaves the batch (see lbfgs_stack)
    best_loss = torch.full((len(x),), math.inf)
    best = [p.clone() for p in model.params]
    stale = torch.zeros(len(x), dtype=torch.long)
    batch = min(fit.batch_size, math.ceil(len(fit_rows) / MIN_BATCHES))  # small sets still take steps
    for _ in range(fit.epochs):
        order = torch.randperm(len(fit_rows), generator=gen)
        x_epoch, y_epoch = x_fit[:, order], y_fit[order]
        for start in range(0, len(order), batch):
            xb, yb = x_epoch[:, start : start + batch], y_epoch[start : start + batch]
            model.backward(xb, yb, kind, fit.alpha / xb.shape[1])
            opt.step()
        loss = _loss_and_grad(kind, model(x_val), y[val_rows])[0]
        better = (loss < best_loss[live]) & (stale[live] < fit.patience)  # a stopped set stays stopped
        stale[live] = torch.where(loss < best_loss[live] - fit.tol, 0, stale[live] + 1)
        best_loss[live] = torch.where(better, loss, best_loss[live])
        for kept, p in zip(best, model.params, strict=True):
            kept[live[better]] = p[better]
        running = stale[live] < fit.patience
        if not bool(running.any()):
            break
        if int(running.sum()) <= 0.75 * len(live):
            keep = running.nonzero().squeeze(1)
            live, x_fit, x_val = live[keep], x_fit[keep], x_val[keep]
            model = model.narrowed(keep)
            opt = opt.narrowed(model.params, keep)
    return StackedMLP(*best)(x[:, test])


def torch_predict_stack(
    task: Task, probe: str, stack: FeatureStack, test: np.ndarray, fit: MLPFit, seed: int
) -> list[np.ndarray]:
    """One task's probe on the feature sets of one stack, fitted together; test predictions per set, shaped
    as the sklearn path's (class ids, or regression targets [n_test, k])."""
    train = stack.train
    if task.kind == CLASSIFY:
        classes, codes = np.unique(task.target[train], return_inverse=True)
        all_codes = torch.from_numpy(np.searchsorted(classes, task.target).clip(0, len(classes) - 1))
        if probe == "linear":
            out = logistic_stack(stack, all_codes, len(classes), test)
        else:
            out = mlp_stack(CLASSIFY, stack.x32, all_codes, len(classes), train, test, fit, seed)
        return list(classes[out.argmax(2).numpy()])
    y = torch.from_numpy(np.asarray(task.target, dtype=np.float64).reshape(len(task.target), -1))
    if probe == "linear":
        out = ridge_cv_stack(stack, y, test)
    else:
        out = mlp_stack(REGRESS, stack.x32, y.float(), y.shape[1], train, test, fit, seed)
    return [o.reshape(len(test), *task.target.shape[1:]) for o in out.double().numpy()]
