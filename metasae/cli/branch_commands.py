"""The side branches' subcommands: the dSprites ViT and its probes, planted hierarchies, benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path

from metasae.cli.flags import add_common_flags, json_object
from metasae.errors import MetasaeError


def register_train_vit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-vit", help="train the small ViT, saving checkpoints at log-spaced steps")
    p.add_argument(
        "--train", required=True, help="dataset reference, e.g. glyphs:train or dsprites_gen:sample[:4000]"
    )
    p.add_argument("--test", required=True, help="dataset reference for the test accuracy")
    p.add_argument(
        "--label",
        default="label",
        help="label: the dataset's labels, a dSprites factor (shape, ...), or factors (one head per factor)",
    )
    p.add_argument(
        "--vit", type=json_object, default={}, help='architecture JSON, e.g. {"patch": 8, "depth": 3}'
    )
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--checkpoints", type=int, default=6, help="checkpoints incl. step 0 and the last step")
    p.add_argument("--out", required=True, type=Path, help="output folder (step<s>/, metrics.json)")
    p.add_argument("--data-dir", type=Path, default=None)
    add_common_flags(p)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.train_vit import ViTTrainConfig, train_vit

        cfg = ViTTrainConfig(
            train=a.train,
            test=a.test,
            label=a.label,
            steps=a.steps,
            batch_size=a.batch_size,
            lr=a.lr,
            checkpoints=a.checkpoints,
            seed=a.seed,
        )
        train_vit(cfg, a.vit, a.out, data_dir=a.data_dir, device=a.device)

    p.set_defaults(func=run)


def register_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help="linear / MLP probes of dSprites factors on every ViT checkpoint x layer"
    )
    p.add_argument("--vit-dir", required=True, type=Path, help="train-vit output folder")
    p.add_argument("--dataset", required=True, help="dSprites reference, e.g. dsprites_gen:sample[4000:6000]")
    p.add_argument(
        "--spec", type=json_object, default={}, help="probe settings JSON (test_fraction, mlp_at, ...)"
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output folder (probes.csv, probes.json, figures/)"
    )
    p.add_argument("--data-dir", type=Path, default=None)
    add_common_flags(p)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.probe import ProbeConfig, run_probes

        try:
            cfg = ProbeConfig(**a.spec, seed=a.seed)
        except TypeError as exc:
            raise MetasaeError(f"--spec: {exc}") from None
        run_probes(a.vit_dir, a.dataset, a.out, cfg, data_dir=a.data_dir, device=a.device)

    p.set_defaults(func=run)


def register_probe_sae(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe-sae", help="SAE on the best probed ViT layer; k-sparse probing per dSprites factor"
    )
    p.add_argument("--vit-dir", required=True, type=Path)
    p.add_argument("--probes-csv", required=True, type=Path, help="probe output (picks the best layer)")
    p.add_argument("--dataset", required=True, help="the dSprites reference the probes used")
    p.add_argument(
        "--spec",
        type=json_object,
        default={},
        help='SAE settings JSON, e.g. {"architecture": "topk", '
        '"width": 128, "k": 8, "epochs": 30} (the keys of train-sae\'s flags)',
    )
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--out", required=True, type=Path, help="output folder (ksparse.csv, ksparse.json, sae/)")
    p.add_argument("--data-dir", type=Path, default=None)
    add_common_flags(p)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.probe_sae import run_ksparse

        run_ksparse(
            a.vit_dir,
            a.probes_csv,
            a.dataset,
            a.out,
            a.spec,
            ks=tuple(a.ks),
            seed=a.seed,
            data_dir=a.data_dir,
            device=a.device,
        )

    p.set_defaults(func=run)


def register_probe_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe-summary", help="every dSprites run's probes side by side: one table, one figure per question"
    )
    p.add_argument("probes_csvs", nargs="+", type=Path, help="probe outputs (the run is the folder's name)")
    p.add_argument("--probe", default="linear", choices=("linear", "mlp"), help="the probe the figures show")
    p.add_argument("--out", required=True, type=Path, help="output folder (probes.csv, figures, summary)")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.probe_summary import probe_summary

        probe_summary(a.probes_csvs, a.out, a.probe)

    p.set_defaults(func=run)


def register_synth_acts(sub: argparse._SubParsersAction) -> None:
    """The planted-hierarchy branch: synth-acts (the activations), score-synth (one depth against the
    planted levels), synth-summary (criterion x true depth)."""
    p = sub.add_parser("synth-acts", help="planted feature trees of known depth, as an activation cache")
    p.add_argument("--tree", required=True, type=json_object, help="the tree's config entry, JSON")
    p.add_argument("--out", required=True, type=Path)
    add_common_flags(p)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.synth_acts import synth_activations, tree_spec

        synth_activations(tree_spec(a.tree, a.seed), a.out)

    p.set_defaults(func=run)

    p = sub.add_parser("score-synth", help="score one depth of a synth stack against the planted levels")
    p.add_argument("--depth-dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="output folder (score.json)")

    def run_score(a: argparse.Namespace) -> None:
        from metasae.stages.score_synth import score_synth

        score_synth(a.depth_dir, a.out)

    p.set_defaults(func=run_score)

    p = sub.add_parser("synth-summary", help="criterion x true depth tables of the planted-tree runs")
    p.add_argument("scores", nargs="+", type=Path, help="score.json files of every synth run and depth")
    p.add_argument("--config-json", required=True, type=json_object, help="the study config as JSON")
    p.add_argument("--out", required=True, type=Path, help="output folder, e.g. results/synth_summary")

    def run_summary(a: argparse.Namespace) -> None:
        from metasae.stages.score_synth import synth_summary

        synth_summary(a.scores, a.config_json, a.out)

    p.set_defaults(func=run_summary)


def register_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time the hot paths against their floors; fail when a ratio regressed")
    p.add_argument(
        "--out", type=Path, default=Path("results/bench"), help="output folder (<device>.json, .md)"
    )
    p.add_argument(
        "--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (cuda skips without CUDA)"
    )
    p.add_argument("--quick", action="store_true", help="only the quick subset (what CI runs)")
    p.add_argument("--repeat", type=int, default=1, help="runs of the suite; ratios are their medians")
    p.add_argument(
        "--baseline", type=Path, default=None, help="accepted ratios (default: benchmarks/baseline.json)"
    )
    p.add_argument(
        "--tolerance", type=float, default=None, help="allowed relative rise of a ratio (default: baseline's)"
    )
    p.add_argument("--update-baseline", action="store_true", help="store this run's ratios as the baseline")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.bench import BASELINE, run_bench

        run_bench(
            a.out,
            device=a.device,
            quick=a.quick,
            repeat=a.repeat,
            baseline_path=a.baseline or BASELINE,
            tolerance=a.tolerance,
            update_baseline=a.update_baseline,
        )

    p.set_defaults(func=run)


def register_synth_oracle(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth-oracle", help="analytic oracle / shuffled stacks of a synth-acts folder")
    p.add_argument("--acts-dir", required=True, type=Path, help="a synth-acts folder (leaf regime)")
    p.add_argument("--kind", default="oracle", choices=("oracle", "shuffled"))
    p.add_argument("--out", required=True, type=Path, help="stack folder: depth1/, <mode>/depth<d>/")
    add_common_flags(p)  # --seed draws the shuffle

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.synth_oracle import synth_oracle

        synth_oracle(a.acts_dir, a.out, a.kind, a.seed)

    p.set_defaults(func=run)


COMMANDS = [
    register_train_vit,
    register_probe,
    register_probe_sae,
    register_probe_summary,
    register_bench,
    register_synth_acts,
    register_synth_oracle,
]  # in `metasae --help` order
