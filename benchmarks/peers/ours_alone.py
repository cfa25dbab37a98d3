"""Our TopK SAE alone, stepped as compare_topk.py steps it (same SAE, batches, lr, AuxK): the step at which
its held-out FVU first reaches a target, its final FVU, and the share of latents that never fire on held-out
rows.
How an initialisation or a schedule is chosen for the peers' comparison and checked not to raise dead latents:

    python benchmarks/peers/ours_alone.py --encoder-init-scale 0.3 --balance-steps 300           # planted
    python benchmarks/peers/ours_alone.py --acts results_mnist --run mlp_mnist/seed0/mnist/fc1 ...  # real fc1

On a real cache it trains on the fit split (`<acts>/fit_acts/<run>`) and measures on the held-out eval images
(`<acts>/acts/<run>`), both scaled to E||x||^2 = 1 as the peers' data is. Appends one JSON line to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).parent))
import compare_topk  # noqa: E402

from metasae.allocator import tune_cpu_allocator  # noqa: E402
from metasae.io import load_tensors  # noqa: E402


def data(a) -> tuple[torch.Tensor, torch.Tensor]:
    if a.acts is None:
        rows = compare_topk.make_data(a.n_train + a.n_test, 256, a.seed)
        return rows[: a.n_train], rows[a.n_train :]
    fit = load_tensors(a.acts / "fit_acts" / a.run / "acts.safetensors")["acts"]
    held_out = load_tensors(a.acts / "acts" / a.run / "acts.safetensors")["acts"]
    scale = fit.pow(2).sum(1).mean().sqrt()
    return fit / scale, held_out / scale


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--acts", type=Path, help="a study's results folder (default: the peers' planted data)")
    p.add_argument("--run", default="mlp_mnist/seed0/mnist/fc1", help="<classifier>/<seed>/<probe>/<layer>")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--target", type=float, default=0.130, help="held-out FVU to reach (SAELens's, 200 steps)")
    p.add_argument("--check-every", type=int, default=5)
    p.add_argument("--encoder-init-scale", type=float, default=1.0)
    p.add_argument("--encoder-lr-scale", type=float, default=1.0)
    p.add_argument("--balance-steps", type=int, default=0)
    p.add_argument("--balance-rate", type=float, default=0.003)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=32_768)
    p.add_argument("--n-test", type=int, default=8192)
    p.add_argument("--out", type=Path, default=Path("results/bench/ours_alone.jsonl"))
    a = p.parse_args()
    tune_cpu_allocator()
    train, test = data(a)
    settings = SimpleNamespace(
        d_in=train.shape[1],
        d_sae=4096,
        k=32,
        aux=1 / 32,
        seed=a.seed,
        device="cpu",
        lr=1e-3,
        dead_after=20_000,
        decoder_lr_scale=None,
        encoder_lr_scale=a.encoder_lr_scale,
        encoder_init_scale=a.encoder_init_scale,
        balance_steps=a.balance_steps,
        balance_rate=a.balance_rate,
    )
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(a.seed))
    per_epoch = len(train) // 1024
    order = lambda s: perm[(s % per_epoch) * 1024 : (s % per_epoch + 1) * 1024]  # noqa: E731
    ours = compare_topk.Ours(settings, train[order(0)])
    seconds, reached, fvu = 0.0, None, float("nan")
    for step in range(a.steps):
        start = time.perf_counter()
        ours.step(step, train[order(step)])
        seconds += time.perf_counter() - start
        if (step + 1) % a.check_every == 0 or step + 1 == a.steps:
            fvu = compare_topk._held_out_fvu(ours, test)
            if reached is None and fvu <= a.target:
                reached = step + 1
    with torch.no_grad():
        fired = torch.zeros(settings.d_sae, dtype=torch.bool)
        for i in range(0, len(test), 4096):
            fired |= (ours.sae.encode(test[i : i + 4096]) > 0).any(0)
    record = {
        "data": str(a.acts / a.run) if a.acts else "planted",
        **{k: v for k, v in vars(a).items() if k not in ("acts", "run", "out")},
        "steps_to_target": reached,
        "final_fvu": round(fvu, 4),
        "dead_held_out": round(1 - float(fired.float().mean()), 4),
        "train_s": round(seconds, 1),
        "torch": torch.__version__,
    }
    print(json.dumps(record))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
