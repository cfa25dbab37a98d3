"""Our TopK training step vs dictionary_learning's TopKTrainer and SAELens's TopKTrainingSAE: same data, same
batches in the same order, same hyper-parameters, same number of steps; reports median step time and the FVU
(about the mean, on held-out rows) each reaches.

    python benchmarks/peers/compare_topk.py [--venv /tmp/peers-venv] [--steps 200] [--device cpu]

The peers learn at different rates per step, so it also reports, for every peer, the steps and seconds our
TopK needs to reach that peer's final held-out FVU (stepping on past --steps where it must).

The peers are never project dependencies: this script makes a separate venv that sees this interpreter's
packages (torch, and metasae however it is installed: system, venv, editable) through a .pth file,
pip-installs them there, and re-runs itself with that venv's python. A peer that fails to install or import
is reported with pip's / Python's error instead of a timing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

PEERS = {"dictionary_learning": "dictionary-learning", "sae_lens": "sae-lens"}


def ensure_venv(venv: Path) -> dict[str, str]:
    """Create the venv and install each missing peer; returns {module: error} for peers that did not
    install."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    share_packages(python)
    errors = {}
    for module, package in PEERS.items():
        if subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0:
            continue
        done = subprocess.run([str(python), "-m", "pip", "install", package], capture_output=True, text=True)
        if done.returncode != 0:
            errors[module] = " | ".join(done.stderr.strip().splitlines()[-3:])
    return errors


def share_packages(python: Path) -> None:
    """Make the venv of `python` see this interpreter's site-packages, .pth files included.

    --system-site-packages alone shares the *base* interpreter's packages: run from a venv, the peers' venv
    would then lack the project and its torch (ModuleNotFoundError: metasae). site.addsitedir also runs the
    .pth files there, so an editable install resolves too; the venv's own packages stay first on sys.path.
    """
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    site_dir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    line = "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in ours) + "\n"
    (Path(site_dir) / "_metasae_parent.pth").write_text(line)


def make_data(n: int, d_in: int, seed: int):
    """Rows that are sparse combinations of a hidden dictionary plus noise, scaled to E||x||^2 = 1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n_true, active = 4 * d_in, 8
    true = torch.nn.functional.normalize(torch.randn(n_true, d_in, generator=g), dim=1)
    idx = torch.randint(n_true, (n, active), generator=g)
    mags = torch.empty(n, active).exponential_(generator=g)
    x = (mags.unsqueeze(2) * true[idx]).sum(1) + 0.05 * torch.randn(n, d_in, generator=g)
    return x / x.pow(2).sum(1).mean().sqrt()


def fvu(x, x_hat) -> float:
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


class Ours:
    """metasae's TopK SAE, stepped exactly as metasae.sae.trainer.train_sae steps it."""

    name = "metasae topk"

    def __init__(self, a, first_batch) -> None:
        import torch

        from metasae.optim import Adam
        from metasae.sae import SAEConfig, build_sae
        from metasae.sae.trainer import TrainConfig, decoder_lr_scale_for, initialise_
        from metasae.seeds import generator

        self.sae = build_sae(
            SAEConfig("topk", a.d_in, a.d_sae, k=a.k, aux_coeff=a.aux), generator(a.seed, "peers")
        )
        self.sae.to(a.device)
        # the trainer's start: b_dec the geometric median, the encoder scaled by encoder_init_scale
        initialise_(
            self.sae, TrainConfig(steps=a.steps, encoder_init_scale=a.encoder_init_scale), first_batch
        )
        self.opt = Adam(self.sae.parameters(), lr=a.lr)
        self.since_fired = torch.zeros(a.d_sae, dtype=torch.long, device=a.device)
        self.dead_after = a.dead_after
        self.decoder_lr_scale = decoder_lr_scale_for("topk", a.decoder_lr_scale)
        self.encoder_lr_scale = a.encoder_lr_scale
        self.balance_steps, self.balance_rate = a.balance_steps, a.balance_rate
        self.rank_bias = torch.zeros(a.d_sae, device=a.device)

    def step(self, step: int, x) -> None:
        from metasae.sae.trainer import balance_, optimizer_step

        balancing = step < self.balance_steps
        self.sae.rank_bias = self.rank_bias if balancing else None
        parts = self.sae.loss(x, dead=self.since_fired >= self.dead_after)
        self.opt.zero_grad(set_to_none=True)
        parts.total.backward()
        optimizer_step(self.sae, self.opt, self.decoder_lr_scale, self.encoder_lr_scale)
        if balancing:
            balance_(self.rank_bias, parts.fired, len(x), self.sae.cfg.k, self.balance_rate)
        self.since_fired += len(x)
        self.since_fired[parts.fired > 0] = 0

    def reconstruct(self, x):
        return self.sae(x)


class DictionaryLearning:
    """dictionary_learning's TopKTrainer.update (their step: loss, AuxK, grad clip, Adam, unit-norm
    decoder)."""

    name = "dictionary_learning TopKTrainer"

    def __init__(self, a, first_batch) -> None:
        from dictionary_learning.trainers.top_k import TopKTrainer

        self.trainer = TopKTrainer(
            steps=a.steps,
            activation_dim=a.d_in,
            dict_size=a.d_sae,
            k=a.k,
            layer=0,
            lm_name="none",
            lr=a.lr,
            auxk_alpha=a.aux,
            warmup_steps=0,
            threshold_start_step=a.steps + 1,
            seed=a.seed,
            device=a.device,
        )
        self.trainer.dead_feature_threshold = a.dead_after

    def step(self, step: int, x) -> None:
        self.trainer.update(step, x)

    def reconstruct(self, x):
        return self.trainer.ae(x)


class SAELens:
    """SAELens's TopKTrainingSAE.training_forward_pass (MSE + AuxK) with Adam; its decoder is rescaled, not
    normalised (rescale_acts_by_decoder_norm, the library default)."""

    name = "sae_lens TopKTrainingSAE"

    def __init__(self, a, first_batch) -> None:
        import torch
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

        torch.manual_seed(a.seed)
        cfg = TopKTrainingSAEConfig(
            d_in=a.d_in, d_sae=a.d_sae, k=a.k, aux_loss_coefficient=a.aux, dtype="float32", device=a.device
        )
        self.sae = TopKTrainingSAE(cfg)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=a.lr)
        self.since_fired = torch.zeros(a.d_sae, dtype=torch.long, device=a.device)
        self.dead_after = a.dead_after

    def step(self, step: int, x) -> None:
        from sae_lens.saes.sae import TrainStepInput

        out = self.sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients={},
                dead_neuron_mask=self.since_fired >= self.dead_after,
                n_training_steps=step,
                is_logging_step=False,
            )
        )
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        self.opt.step()
        self.since_fired += len(x)
        self.since_fired[(out.feature_acts > 0).any(0)] = 0

    def reconstruct(self, x):
        return self.sae(x)


def run_all(classes: list[type], a, train, test, order: Callable[[int], object]) -> tuple[list[dict], list]:
    """Step every implementation on the same batch in turn, so each sees the same machine load; the first
    (ours) also gets its held-out FVU every --check-every steps (untimed), for the time to each peer's FVU."""

    models = [cls(a, train[order(0)]) for cls in classes]
    times: list[list[float]] = [[] for _ in models]
    trace: list[dict] = []
    for step in range(a.steps):
        x = train[order(step)]
        for model, t in zip(models, times, strict=True):
            t.append(_timed_step(model, step, x, a.device))
        if models and (step + 1) % a.check_every == 0:
            trace.append({"steps": step + 1, "train_s": sum(times[0]), "fvu": _held_out_fvu(models[0], test)})
    results = []
    for model, t in zip(models, times, strict=True):
        step_s = statistics.median(t[a.warmup :])
        results.append(
            {
                "impl": model.name,
                "step_ms": 1e3 * step_s,
                "rows_per_s": a.batch / step_s,
                "fvu": _held_out_fvu(model, test),
                "train_s": sum(t),
            }
        )
    if results:
        results[0]["trace"] = trace
    return results, models


def _timed_step(model, step: int, x, device: str) -> float:
    import torch

    start = time.perf_counter()
    model.step(step, x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _held_out_fvu(model, test) -> float:
    import torch

    with torch.no_grad():
        return fvu(
            test, torch.cat([model.reconstruct(test[i : i + 4096]) for i in range(0, len(test), 4096)])
        )


def extend_trace(model, trace: list[dict], target: float, a, train, test, order) -> None:
    """Go on stepping our `model` until its held-out FVU reaches `target` (a peer's, lower than ours after
    --steps) or 20x --steps pass, appending to its trace every --check-every steps."""
    step, seconds = trace[-1]["steps"], trace[-1]["train_s"]
    while trace[-1]["fvu"] > target and step < 20 * a.steps:
        for _ in range(a.check_every):
            seconds += _timed_step(model, step, train[order(step)], a.device)
            step += 1
        trace.append({"steps": step, "train_s": seconds, "fvu": _held_out_fvu(model, test)})


def time_to_peer(trace: list[dict], peer: dict) -> dict:
    """Our steps and seconds to the peer's final held-out FVU: the first trace point at or below it (None
    where ours never got there); `speedup` > 1 means ours got there in less time than the peer took."""
    reached = next((p for p in trace if p["fvu"] <= peer["fvu"]), None)
    return {
        "peer": peer["impl"],
        "peer_fvu": peer["fvu"],
        "peer_train_s": peer["train_s"],
        "steps": reached and reached["steps"],
        "train_s": reached and reached["train_s"],
        "speedup": reached and peer["train_s"] / reached["train_s"],
    }


def _version(module: str, package: str) -> str:
    """The installed version, or the module's own __version__ where the source travels without metadata."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(sys.modules.get(module), "__version__", "unknown (no metadata)"))


def batch_order(n_train: int, batch: int, seed: int) -> Callable[[int], object]:
    """Step -> the training rows of its batch: one seeded permutation, cycled epoch after epoch, the ragged
    tail dropped; every implementation (and ours_alone.py) sees the same batches."""
    import torch

    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    per_epoch = n_train // batch
    return lambda s: perm[(s % per_epoch) * batch : (s % per_epoch + 1) * batch]


def inside(a) -> None:
    import torch

    from metasae.allocator import tune_cpu_allocator

    tune_cpu_allocator()  # as the `metasae` CLI does; the same process, so the peers get it too

    data = make_data(a.n_train + a.n_test, a.d_in, a.seed).to(a.device)
    train, test = data[: a.n_train], data[a.n_train :]
    order = batch_order(a.n_train, a.batch, a.seed)
    errors = dict(a.install_errors)
    classes = []
    for module, cls in (
        ("metasae", Ours),
        ("dictionary_learning", DictionaryLearning),
        ("sae_lens", SAELens),
    ):
        if module in errors:
            continue
        try:
            __import__(module)
        except ImportError as exc:
            errors[module] = f"import failed: {exc}"
            continue
        classes.append(cls)
    results, models = run_all(classes, a, train, test, order)
    ours = results[0] if classes and classes[0] is Ours else None
    to_peers = []
    if ours and len(results) > 1:
        extend_trace(models[0], ours["trace"], min(r["fvu"] for r in results[1:]), a, train, test, order)
        to_peers = [time_to_peer(ours["trace"], peer) for peer in results[1:]]
    versions = {
        "torch": torch.__version__,
        **{pkg: _version(m, pkg) for m, pkg in PEERS.items() if m not in errors},
    }
    record = {
        "settings": {k: v for k, v in vars(a).items() if k not in ("install_errors", "inside")},
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "results": results,
        "ours_to_peer_fvu": to_peers,
        "errors": errors,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=2, default=str))
    print(
        f"TopK, d_in={a.d_in}, d_sae={a.d_sae}, k={a.k}, batch={a.batch}, {a.steps} steps, lr={a.lr}, "
        f"{a.device}"
    )
    print("| implementation | median step ms | rows/s | FVU (held-out) |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['impl']} | {r['step_ms']:.1f} | {r['rows_per_s']:,.0f} | {r['fvu']:.4f} |")
    for module, err in errors.items():
        print(f"| {module} | not run: {err} | | |")
    print(
        f"\n| metasae topk to the peer's FVU | peer FVU ({a.steps} steps) | peer s | our steps | our s | "
        "speed-up |\n|---|---|---|---|---|---|"
    )
    for t in to_peers:
        ours_part = (
            f"{t['steps']} | {t['train_s']:.1f} | {t['speedup']:.2f}x"
            if t["steps"]
            else f"not reached in {20 * a.steps} | | "
        )
        print(f"| {t['peer']} | {t['peer_fvu']:.4f} | {t['peer_train_s']:.1f} | {ours_part} |")


def arguments(description: str = __doc__.splitlines()[0]) -> argparse.ArgumentParser:
    """The settings of the comparison (data, SAE, training, ours' options); ours_alone.py adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--venv", type=Path, default=Path("/tmp/peers-venv"))
    p.add_argument("--out", type=Path, default=Path("results/bench/peers.json"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the median step time")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--d-in", type=int, default=256)
    p.add_argument("--d-sae", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--aux", type=float, default=1 / 32, help="AuxK coefficient")
    p.add_argument(
        "--dead-after", type=int, default=20_000, help="examples without firing before a latent is dead"
    )
    p.add_argument("--n-train", type=int, default=32_768)
    p.add_argument("--n-test", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-every", type=int, default=25, help="steps between our held-out FVU checks")
    p.add_argument(
        "--decoder-lr-scale", type=float, help="ours: train.decoder_lr_scale (default: the trainer's)"
    )
    p.add_argument(
        "--encoder-lr-scale", type=float, default=1.0, help="ours: train.encoder_lr_scale (default 1)"
    )
    p.add_argument(
        "--encoder-init-scale",
        type=float,
        default=1.0,
        help="ours: train.encoder_init_scale (default 1)",
    )
    p.add_argument(
        "--balance-steps",
        type=int,
        default=0,
        help="ours: balanced firing (train.balance_fraction) over the first N steps (default 0: off)",
    )
    p.add_argument("--balance-rate", type=float, default=0.003, help="ours: train.balance_rate")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--install-errors", type=json.loads, default={}, help=argparse.SUPPRESS)
    return p


def main() -> None:
    a = arguments().parse_args()
    if a.inside:
        inside(a)
        return
    errors = ensure_venv(a.venv)
    cmd = [
        str(a.venv / "bin" / "python"),
        __file__,
        *sys.argv[1:],
        "--inside",
        "--install-errors",
        json.dumps(errors),
    ]
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
