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

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import compare_topk  # noqa: E402

from metasae.allocator import tune_cpu_allocator  # noqa: E402
from metasae.io import load_tensors  # noqa: E402


def data(a) -> tuple[torch.Tensor, torch.Tensor]:
    if a.acts is None:
        rows = compare_topk.make_data(a.n_train + a.n_test, a.d_in, a.seed)
        return rows[: a.n_train], rows[a.n_train :]
    fit = load_tensors(a.acts / "fit_acts" / a.run / "acts.safetensors")["acts"]
    held_out = load_tensors(a.acts / "acts" / a.run / "acts.safetensors")["acts"]
    scale = fit.pow(2).sum(1).mean().sqrt()
    return fit / scale, held_out / scale


def main() -> None:
    p = compare_topk.arguments(__doc__.splitlines()[0])
    p.add_argument("--acts", type=Path, help="a study's results folder (default: the peers' planted data)")
    p.add_argument("--run", default="mlp_mnist/seed0/mnist/fc1", help="<classifier>/<seed>/<probe>/<layer>")
    p.add_argument("--target", type=float, default=0.130, help="held-out FVU to reach (SAELens's, 200 steps)")
    p.set_defaults(steps=600, check_every=5, out=Path("results/bench/ours_alone.jsonl"))
    a = p.parse_args()
    tune_cpu_allocator()
    train, test = data(a)
    a.d_in, a.n_train = train.shape[1], len(train)
    order = compare_topk.batch_order(a.n_train, a.batch, a.seed)
    ours = compare_topk.Ours(a, train[order(0)])
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
        fired = torch.zeros(a.d_sae, dtype=torch.bool)
        for i in range(0, len(test), 4096):
            fired |= (ours.sae.encode(test[i : i + 4096]) > 0).any(0)
    record = {
        "data": str(a.acts / a.run) if a.acts else "planted",
        **{
            k: v
            for k, v in vars(a).items()
            if k not in ("acts", "run", "out", "venv", "inside", "install_errors")
        },
        "steps_to_target": reached,
        "final_fvu": round(fvu, 4),
        "dead_held_out": round(1 - float(fired.float().mean()), 4),
        "train_s": round(seconds, 1),
        "torch": torch.__version__,
    }
    print(json.dumps(record, default=str))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")


if __name__ == "__main__":
    main()
