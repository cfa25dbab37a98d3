"""Adam in a few lines, numerically the same as torch.optim.Adam / AdamW (single-tensor path).

Why not torch.optim: its first step or constructor imports torch._dynamo, about 1.3 s of CPU per process here,
and a study is hundreds of short processes (one per job); that import alone cost minutes of a 15-minute run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class Adam:
    """Adam; `decoupled=True` applies weight decay as AdamW does. `param_groups[0]["lr"]` may be changed
    between steps (learning-rate schedules), as with torch optimizers."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False) -> None:
        self.params = list(params)
        self.param_groups = [{"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                              "decoupled": decoupled}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in self.params:
            if p.grad is None:
                continue
            grad = p.grad
            if wd and group["decoupled"]:
                p.mul_(1 - lr * wd)
            elif wd:
                grad = grad.add(p, alpha=wd)
            state = self.state.get(p)
            if state is None:
                state = self.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                         "exp_avg_sq": torch.zeros_like(p)}
            state["step"] += 1
            t = float(state["step"])
            state["exp_avg"].lerp_(grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
            p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**t))

    def load_state_dict(self, state_dict: dict) -> None:
        """torch.optim's layout: {"state": {param index: {...}}, "param_groups": [{..., "params": [...]}]}."""
        group = {k: v for k, v in state_dict["param_groups"][0].items() if k != "params"}
        group["betas"] = tuple(group["betas"])
        self.param_groups[0].update(group)
        self.state = {self.params[int(i)]: {k: v.to(self.params[int(i)].device) if k != "step" else v.cpu()
                                            for k, v in s.items()}
                      for i, s in state_dict["state"].items()}
