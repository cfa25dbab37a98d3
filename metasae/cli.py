"""`metasae <stage> ...`: parses flags and dispatches to the one function of `metasae.stages.<stage>`.

Each `_register_*` below declares one subcommand's flags; nothing here computes anything. Stage modules are
imported only when their command runs, so `metasae --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from metasae import settings
from metasae.allocator import tune_cpu_allocator
from metasae.errors import MetasaeError

Register = Callable[[argparse._SubParsersAction], None]


def _json_arg(text: str) -> dict:
    """A JSON object flag (the workflow passes config blocks whole); bad JSON is a one-line error."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="run seed (recorded in every artefact)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")


def _register_train_classifier(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-classifier", help="train a base classifier on an image dataset")
    p.add_argument("--model", required=True, help="architecture: mlp | cnn")
    p.add_argument("--train", required=True, help="dataset reference, e.g. digits:train or mnist:test[:8000]")
    p.add_argument("--test", required=True, help="dataset reference for the test accuracy")
    p.add_argument(
        "--out", required=True, type=Path, help="output folder (model.safetensors, cfg.json, metrics.json)"
    )
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--input-shape",
        type=int,
        nargs=3,
        metavar=("C", "H", "W"),
        default=None,
        help="model input spec; images are converted to it explicitly (default: the model's own)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="local copy of real datasets")
    _common(p)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.train_classifier import ClassifierTrainConfig, train_classifier

        cfg = ClassifierTrainConfig(
            model=a.model,
            train=a.train,
            test=a.test,
            epochs=a.epochs,
            batch_size=a.batch_size,
            lr=a.lr,
            seed=a.seed,
            input_shape=tuple(a.input_shape) if a.input_shape else None,
        )
        train_classifier(cfg, a.out, data_dir=a.data_dir, device=a.device)

    p.set_defaults(func=run)


def _register_cache_acts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache-acts", help="cache one layer's activations of a trained classifier on a dataset"
    )
    p.add_argument("--model-dir", required=True, type=Path)
    p.add_argument("--dataset", required=True, help="dataset reference, e.g. glyphs:test")
    p.add_argument("--layer", required=True, help="named layer, e.g. fc1")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--data-dir", type=Path, default=None)
    _common(p)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.cache_acts import cache_activations

        cache_activations(
            a.model_dir,
            a.dataset,
            a.layer,
            a.out,
            batch_size=a.batch_size,
            data_dir=a.data_dir,
            device=a.device,
        )

    p.set_defaults(func=run)


def _register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render the write-up (HTML, PDF, Markdown) from a results folder")
    p.add_argument(
        "--results", required=True, type=Path, help="results folder (reads summary/, analysis/, probes/)"
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output folder (index.html, index.pdf, index.md, figures/)"
    )
    p.add_argument(
        "--template", type=Path, default=None, help="report source (default: the package's report/index.qmd)"
    )
    p.add_argument(
        "--renderer", default="auto", help="auto (quarto if on PATH, else pandoc + typst) | quarto | pandoc"
    )
    p.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="a second study's results folder, set beside this one in the research log comparison "
        "(e.g. the log preset's run; a config's compare_with)",
    )
    p.add_argument(
        "--format",
        dest="output_format",
        default="all",
        help="all (default: index.html, index.pdf, index.md + figures/) | lesswrong (a bundle to upload: "
        "post.md + figures/, checked: no raw HTML, tables of at most 6 columns, images that resolve)",
    )
    p.add_argument(
        "--image-base-url",
        default=None,
        help="where the figures will be hosted: the Markdown's images point at URL/figures/<name> "
        "(upload the output's figures/ folder there), so the text survives being pasted",
    )

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.report import DEFAULT_TEMPLATE, render_report

        render_report(
            a.results,
            a.out,
            template=a.template or DEFAULT_TEMPLATE,
            renderer=a.renderer,
            compare=a.compare,
            output_format=a.output_format,
            image_base_url=a.image_base_url,
        )

    p.set_defaults(func=run)


def _register_check_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-data", help="load every dataset a study config names; fail naming what is missing"
    )
    p.add_argument("--config-json", required=True, type=_json_arg, help="the study config as JSON")
    p.add_argument("--out", required=True, type=Path, help="JSON record of what each reference resolved to")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.check_data import check_data

        check_data(a.config_json, a.out)

    p.set_defaults(func=run)


def _register_aggregate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="study tables (depths, optimal depth with CIs, claims) and figures")
    p.add_argument(
        "summaries", nargs="+", type=Path, help="analysis summary.json files of every run and depth"
    )
    p.add_argument(
        "--config-json",
        required=True,
        type=_json_arg,
        help="the study config as JSON (as the workflow resolved it)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder, e.g. results/synth_summary")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.aggregate import aggregate

        aggregate(a.summaries, a.config_json, a.out)

    p.set_defaults(func=run)


def _register_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list the registered datasets (real and embedded) with descriptions")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.datasets import datasets

        print("\n".join(datasets()))

    p.set_defaults(func=run)


def _register_fetch_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch-data", help="download a real dataset's official files (needs a network)")
    p.add_argument("--dataset", required=True, help="real dataset name, e.g. mnist, cifar10, dsprites")
    p.add_argument("--data-dir", required=True, type=Path, help="folder to download into")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.fetch_data import fetch_data

        print(fetch_data(a.dataset, a.data_dir))

    p.set_defaults(func=run)


def _register_train_sae(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-sae",
        help="train depth 1 of a stack on cached activations, or depth d >= 2 on depth d-1",
        description="Settings come from --spec (a JSON object, e.g. a config block) with any flag "
        "below overriding it.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--acts", type=Path, help="depth 1: activation cache folder (cache-acts output)")
    src.add_argument("--parent", type=Path, help="depth d >= 2: the depth d-1 folder of the same stack")
    p.add_argument(
        "--mode", help="with --parent: decoder (train on its decoder rows) | activations (on its codes)"
    )
    p.add_argument("--depth", type=int, help="with --parent: the depth being trained (>= 2)")
    p.add_argument(
        "--apply",
        type=Path,
        help="train nothing: copy this depth folder of a stack trained on another probe and encode --acts "
        "(depth 1) or --parent's codes through it (a classifier's stack_from)",
    )
    p.add_argument(
        "--stop", type=_json_arg, default={}, help='stop rules as JSON, e.g. {"min_alive": 8, "max_fvu": 1.0}'
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output folder (sae.safetensors, cfg.json, codes, ...)"
    )
    p.add_argument(
        "--spec", type=_json_arg, default={}, help="settings as a JSON object (the keys of the flags below)"
    )
    settings.add_flags(p)
    p.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left by a crashed run")
    _common(p)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages import train_sae as stage

        spec = _spec(a)
        if a.apply is not None:
            if a.acts is not None:
                stage.apply_base(a.acts, a.apply, a.out)
            else:
                stage.apply_meta(a.parent, a.apply, a.out)
        elif a.acts is not None:
            if a.mode or a.depth not in (None, 1):
                raise MetasaeError(
                    "--acts trains depth 1; use --parent DIR --mode M --depth D for deeper depths"
                )
            stage.train_base(a.acts, spec, a.out, a.seed, device=a.device, resume=not a.no_resume)
        else:
            if a.mode is None or a.depth is None:
                raise MetasaeError("--parent needs --mode (decoder | activations) and --depth (>= 2)")
            stage.train_meta(
                a.parent,
                a.mode,
                a.depth,
                spec,
                a.out,
                a.seed,
                stage.StopRules.from_dict(a.stop),
                device=a.device,
                resume=not a.no_resume,
            )

    p.set_defaults(func=run)


def _spec(a: argparse.Namespace) -> dict:
    """--spec with any setting flag given on top of it (a schedule flag updates --spec's schedule)."""
    given = settings.flags_to_dict(a)
    if isinstance(given.get("width"), dict) and isinstance(a.spec.get("width"), dict):
        given["width"] = {**a.spec["width"], **given["width"]}
    return {**a.spec, **given}


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a trained SAE in another library's format")
    p.add_argument("--sae", required=True, type=Path, help="SAE folder (train-sae output)")
    p.add_argument("--format", required=True, help="saelens")
    p.add_argument("--out", required=True, type=Path)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.export import export

        export(a.sae, a.out, a.format)

    p.set_defaults(func=run)


def _register_analyse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyse", help="per-latent table, summary and figures for one depth of one run")
    p.add_argument("--depth-dir", required=True, type=Path, help="results/sae/<run>/.../depth<d>/")
    p.add_argument(
        "--out", required=True, type=Path, help="output folder (latents.parquet, summary.json, figures/)"
    )
    p.add_argument("--data-dir", type=Path, default=None, help="local copy of real datasets")
    p.add_argument("--top-n", type=int, default=10, help="top-activating images kept per latent")
    p.add_argument("--n-grid", type=int, default=8, help="latents shown in each top-image grid")
    p.add_argument("--no-feature-viz", action="store_true", help="skip feature visualisation by optimisation")
    p.add_argument(
        "--figures",
        choices=("all", "report", "none"),
        default="report",
        help="per-depth figures: those the report embeds (default), all (with feature visualisation), none",
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.analyse import analyse

        analyse(
            a.depth_dir,
            a.out,
            data_dir=a.data_dir,
            top_n=a.top_n,
            n_grid=a.n_grid,
            feature_viz=not a.no_feature_viz,
            device=a.device,
            figures=a.figures,
        )

    p.set_defaults(func=run)


MAX_EXPLORER_LATENTS = 256


def _register_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="one self-contained HTML explorer of every analysed depth (offline)")
    p.add_argument("--results", required=True, type=Path, help="results folder (reads analysis/ and sae/)")
    p.add_argument("--out", required=True, type=Path, help="output HTML file")
    p.add_argument("--data-dir", type=Path, default=None, help="local copy of real datasets (probe images)")
    p.add_argument(
        "--max-latents-per-depth",
        type=int,
        default=MAX_EXPLORER_LATENTS,
        help=f"keep at most N latents per depth (alive, most active first) to bound the file size (default "
        f"{MAX_EXPLORER_LATENTS}; a study of 2304-latent depths would otherwise write a file of a gigabyte)",
    )

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.explore import explore

        explore(a.results, a.out, data_dir=a.data_dir, max_latents_per_depth=a.max_latents_per_depth)

    p.set_defaults(func=run)


def _register_train_vit(sub: argparse._SubParsersAction) -> None:
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
        "--vit", type=_json_arg, default={}, help='architecture JSON, e.g. {"patch": 8, "depth": 3}'
    )
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--checkpoints", type=int, default=6, help="checkpoints incl. step 0 and the last step")
    p.add_argument("--out", required=True, type=Path, help="output folder (step<s>/, metrics.json)")
    p.add_argument("--data-dir", type=Path, default=None)
    _common(p)

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


def _register_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help="linear / MLP probes of dSprites factors on every ViT checkpoint x layer"
    )
    p.add_argument("--vit-dir", required=True, type=Path, help="train-vit output folder")
    p.add_argument("--dataset", required=True, help="dSprites reference, e.g. dsprites_gen:sample[4000:6000]")
    p.add_argument(
        "--spec", type=_json_arg, default={}, help="probe settings JSON (test_fraction, mlp_at, ...)"
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output folder (probes.csv, probes.json, figures/)"
    )
    p.add_argument("--data-dir", type=Path, default=None)
    _common(p)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.probe import ProbeConfig, run_probes

        try:
            cfg = ProbeConfig(**a.spec, seed=a.seed)
        except TypeError as exc:
            raise MetasaeError(f"--spec: {exc}") from None
        run_probes(a.vit_dir, a.dataset, a.out, cfg, data_dir=a.data_dir, device=a.device)

    p.set_defaults(func=run)


def _register_probe_sae(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe-sae", help="SAE on the best probed ViT layer; k-sparse probing per dSprites factor"
    )
    p.add_argument("--vit-dir", required=True, type=Path)
    p.add_argument("--probes-csv", required=True, type=Path, help="probe output (picks the best layer)")
    p.add_argument("--dataset", required=True, help="the dSprites reference the probes used")
    p.add_argument(
        "--spec",
        type=_json_arg,
        default={},
        help='SAE settings JSON, e.g. {"architecture": "topk", '
        '"width": 128, "k": 8, "epochs": 30} (the keys of train-sae\'s flags)',
    )
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--out", required=True, type=Path, help="output folder (ksparse.csv, ksparse.json, sae/)")
    p.add_argument("--data-dir", type=Path, default=None)
    _common(p)

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


def _register_probe_summary(sub: argparse._SubParsersAction) -> None:
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


def _register_bench(sub: argparse._SubParsersAction) -> None:
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


def _register_synth_acts(sub: argparse._SubParsersAction) -> None:
    """The planted-hierarchy branch: synth-acts (the activations), score-synth (one depth against the
    planted levels), synth-summary (criterion x true depth)."""
    p = sub.add_parser("synth-acts", help="planted feature trees of known depth, as an activation cache")
    p.add_argument("--tree", required=True, type=_json_arg, help="the tree's config entry, JSON")
    p.add_argument("--out", required=True, type=Path)
    _common(p)

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
    p.add_argument("--config-json", required=True, type=_json_arg, help="the study config as JSON")
    p.add_argument("--out", required=True, type=Path, help="output folder, e.g. results/synth_summary")

    def run_summary(a: argparse.Namespace) -> None:
        from metasae.stages.score_synth import synth_summary

        synth_summary(a.scores, a.config_json, a.out)

    p.set_defaults(func=run_summary)


_STAGES: list[Register] = [
    _register_train_classifier,
    _register_cache_acts,
    _register_check_data,
    _register_aggregate,
    _register_report,
    _register_datasets,
    _register_fetch_data,
    _register_train_sae,
    _register_export,
    _register_analyse,
    _register_explore,
    _register_train_vit,
    _register_probe,
    _register_probe_sae,
    _register_probe_summary,
    _register_bench,
    _register_synth_acts,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metasae",
        description=(
            "SAEs and meta-SAEs, to any depth, on vision models: one subcommand per stage of the study."
        ),
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (the workflow passes each job's share; default: torch's own)",
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")
    for register in _STAGES:
        register(sub)
    return parser


THEN = "--then"  # `metasae A ... --then B ...`: commands run one after another in one process


def split_commands(argv: list[str]) -> list[list[str]]:
    """`[--threads N] A ... --then B ... --then C ...` -> the argv of each command, in order."""
    commands: list[list[str]] = [[]]
    for word in argv:
        if word == THEN:
            commands.append([])
        else:
            commands[-1].append(word)
    return commands


def main(argv: list[str] | None = None) -> int:
    """Run one command, or several joined by `--then` (the workflow's chains of depths: one interpreter
    start-up and one set of imports for all of them). Every command is parsed before the first runs; the
    first that fails stops the rest and gives the exit status."""
    parser = build_parser()
    chain = [parser.parse_args(words) for words in split_commands(sys.argv[1:] if argv is None else argv)]
    tune_cpu_allocator()
    for i, args in enumerate(chain, 1):
        if len(chain) > 1:
            out = f" --out {args.out}" if getattr(args, "out", None) else ""
            print(f"metasae: command {i} of {len(chain)}: {args.stage}{out}", file=sys.stderr, flush=True)
        status = _run(args)
        if status:
            return status
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except MetasaeError as exc:
        print(f"metasae {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `metasae datasets | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # read-only folder, full disk, ...: one line naming the path, not a traceback
        where = exc.filename or "output"
        print(f"metasae {args.stage}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
