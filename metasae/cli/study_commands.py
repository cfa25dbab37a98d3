"""The study's subcommands: data, classifier, cache, SAE stack, analysis, aggregate, explorer, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from metasae import settings
from metasae.cli.flags import add_common_flags, json_object, merged_spec
from metasae.errors import MetasaeError


def register_check_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-data", help="load every dataset a study config names; fail naming what is missing"
    )
    p.add_argument("--config-json", required=True, type=json_object, help="the study config as JSON")
    p.add_argument("--out", required=True, type=Path, help="JSON record of what each reference resolved to")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.check_data import check_data

        check_data(a.config_json, a.out)

    p.set_defaults(func=run)


def register_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list the registered datasets (real and embedded) with descriptions")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.datasets import datasets

        print("\n".join(datasets()))

    p.set_defaults(func=run)


def register_fetch_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch-data", help="download a real dataset's official files (needs a network)")
    p.add_argument("--dataset", required=True, help="real dataset name, e.g. mnist, cifar10, dsprites")
    p.add_argument("--data-dir", required=True, type=Path, help="folder to download into")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.fetch_data import fetch_data

        print(fetch_data(a.dataset, a.data_dir))

    p.set_defaults(func=run)


def register_train_classifier(sub: argparse._SubParsersAction) -> None:
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
    add_common_flags(p)

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


def register_cache_acts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache-acts", help="cache one layer's activations of a trained classifier on a dataset"
    )
    p.add_argument("--model-dir", required=True, type=Path)
    p.add_argument("--dataset", required=True, help="dataset reference, e.g. glyphs:test")
    p.add_argument("--layer", required=True, help="named layer, e.g. fc1")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument(
        "--role",
        choices=("eval", "fit"),
        default="eval",
        help="eval: a probe's images, analysed; fit: the images its SAE stack trains on (recorded)",
    )
    p.add_argument(
        "--shuffle-labels", action="store_true", help="permute the labels, fixed seed (negative control)"
    )
    add_common_flags(p)

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
            role=a.role,
            shuffle_labels=a.shuffle_labels,
        )

    p.set_defaults(func=run)


def register_train_sae(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-sae",
        help="train depth 1 of a stack on cached activations, or depth d >= 2 on depth d-1",
        description="Settings come from --spec (a JSON object, e.g. a config block) with any flag "
        "below overriding it.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--acts", type=Path, help="depth 1: the activation cache it trains on (the fit set)")
    src.add_argument("--parent", type=Path, help="depth d >= 2: the depth d-1 folder of the same stack")
    p.add_argument(
        "--mode", help="with --parent: decoder (train on its decoder rows) | activations (on its codes)"
    )
    p.add_argument("--depth", type=int, help="with --parent: the depth being trained (>= 2)")
    p.add_argument(
        "--eval-acts",
        type=Path,
        help="with --acts: the probe's eval cache, whose codes the analysis reads (default: --acts itself)",
    )
    p.add_argument(
        "--sae-seed", type=int, default=0, help="the SAE seed (0: the run seed itself; recorded with it)"
    )
    p.add_argument(
        "--apply",
        type=Path,
        help="train nothing: copy this depth folder of a stack trained on another probe and encode --acts "
        "(depth 1) or --parent's codes through it (a classifier's stack_from)",
    )
    p.add_argument(
        "--stop",
        type=json_object,
        default={},
        help='stop rules as JSON, e.g. {"min_alive": 8, "max_fvu": 1.0}; "max_depth": the last depth trained',
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output folder (sae.safetensors, cfg.json, codes, ...)"
    )
    p.add_argument(
        "--spec", type=json_object, default={}, help="settings as a JSON object (the keys of the flags below)"
    )
    settings.add_flags(p)
    p.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left by a crashed run")
    add_common_flags(p)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages import train_sae as stage

        spec = merged_spec(a)
        if a.eval_acts is not None and (a.acts is None or a.apply is not None):
            raise MetasaeError("--eval-acts goes with --acts (depth 1 on a fit cache), not --parent, --apply")
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
            stage.train_base(
                a.acts,
                spec,
                a.out,
                stage.sae_run_seed(a.seed, a.sae_seed),
                eval_acts_dir=a.eval_acts,
                device=a.device,
                resume=not a.no_resume,
            )
        else:
            if a.mode is None or a.depth is None:
                raise MetasaeError("--parent needs --mode (decoder | activations) and --depth (>= 2)")
            stage.train_meta(
                a.parent,
                a.mode,
                a.depth,
                spec,
                a.out,
                stage.sae_run_seed(a.seed, a.sae_seed),
                stage.StopRules.from_dict(a.stop),
                device=a.device,
                resume=not a.no_resume,
            )

    p.set_defaults(func=run)


def register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a trained SAE in another library's format")
    p.add_argument("--sae", required=True, type=Path, help="SAE folder (train-sae output)")
    p.add_argument("--format", required=True, help="saelens")
    p.add_argument("--out", required=True, type=Path)

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.export import export

        export(a.sae, a.out, a.format)

    p.set_defaults(func=run)


def register_analyse(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--null-memo",
        type=Path,
        default=None,
        help="folder of the meta gain's null values, shared by a study's analyses (changes no value)",
    )

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
            null_memo=a.null_memo,
        )

    p.set_defaults(func=run)


def register_aggregate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="study tables (depths, optimal depth with CIs, claims) and figures")
    p.add_argument(
        "summaries", nargs="+", type=Path, help="analysis summary.json files of every run and depth"
    )
    p.add_argument(
        "--config-json",
        required=True,
        type=json_object,
        help="the study config as JSON (as the workflow resolved it)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder, e.g. results/synth_summary")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.aggregate import aggregate

        aggregate(a.summaries, a.config_json, a.out)

    p.set_defaults(func=run)


def register_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explore", help="the offline latent explorer of every analysed depth (a folder that opens from disk)"
    )
    p.add_argument("--results", required=True, type=Path, help="results folder (reads analysis/ and sae/)")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the page to write, e.g. results/explorer/index.html; its folder is the explorer's own (replaced"
        " whole: the page, explorer.js/.css and data/, one script per depth and per probe dataset)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="local copy of real datasets (probe images)")

    def run(a: argparse.Namespace) -> None:
        from metasae.stages.explore import explore

        explore(a.results, a.out, data_dir=a.data_dir)

    p.set_defaults(func=run)


def register_report(sub: argparse._SubParsersAction) -> None:
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


COMMANDS = [
    register_train_classifier,
    register_cache_acts,
    register_check_data,
    register_aggregate,
    register_report,
    register_datasets,
    register_fetch_data,
    register_train_sae,
    register_export,
    register_analyse,
    register_explore,
]  # in `metasae --help` order
