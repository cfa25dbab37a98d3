"""The report's side-by-side table: the research log's numbers (constants with their source), the log preset's
and the fixed setup's (two results folders, `metasae report --compare`), and why the preset misses where it
does."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from metasae.cli import main
from metasae.io import read_json, write_json
from metasae.writeup.data import ReportData
from metasae.writeup.sections.log_comparison import LOG_NUMBERS, log_comparison


def make_study(
    root: Path, preset: str | None, modes: tuple[str, ...], seeds: tuple[int, ...], fashion: list
) -> Path:
    """A results folder of an MNIST-trained MLP probed with mnist, fashion_mnist and glyphs (the EMNIST
    stand-in): `fashion` gives the Fashion-MNIST count per depth (None: the depth stopped); everything else
    follows simple formulas."""
    rows = []
    probes = (
        ("mnist", "mnist:test", True),
        ("fashion_mnist", "fashion_mnist:test", True),
        ("glyphs", "glyphs:train", False),
    )
    for dataset, ref, real in probes:
        for mode in modes:
            for seed in seeds:
                for depth, count in enumerate(fashion, 1):
                    stopped = count is None
                    rows.append(
                        dict(
                            model="mlp_mnist",
                            train_dataset="mnist:train",
                            dataset=dataset,
                            dataset_ref=ref,
                            layer="fc1",
                            sae="s",
                            mode=mode,
                            architecture="relu",
                            seed=seed,
                            depth=depth,
                            status="stopped" if stopped else "trained",
                            stop_reason="parent has 0 alive latents" if stopped else "",
                            width=2304,
                            alive_latents=None if stopped else 2000 - 500 * depth,
                            dead_fraction=0.1,
                            fvu=0.1,
                            explained_variance=0.9,
                            stack_fvu=0.2,
                            l0=4.0,
                            purity_mean=0.5,
                            purity_median=0.5,
                            entropy_mean=1.0,
                            count_all_top10_nonzero=None
                            if stopped
                            else (count if dataset != "glyphs" else 961),
                            mean_active_per_image=None if stopped else 0.4 * depth,
                            spliced_accuracy=0.9,
                            loss_recovered=0.9,
                            is_real=real,
                        )
                    )
                    if dataset == "mnist" and not stopped:
                        folder = "depth1" if depth == 1 else f"{mode}/depth{depth}"
                        log = root / "sae" / "mlp_mnist" / f"seed{seed}" / "mnist" / "fc1" / "s" / folder
                        log.mkdir(parents=True, exist_ok=True)
                        pd.DataFrame(
                            {"step": [0, 9], "total": [99.0, 34.0 / 10 ** (3 * (depth - 1))]}
                        ).to_csv(log / "train_log.csv", index=False)
    (root / "summary").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "summary" / "depths.csv", index=False)
    write_json(root / "summary" / "study.json", {"config": {"preset": preset} if preset else {}})
    for seed in seeds:
        write_json(root / "models" / "mlp_mnist" / f"seed{seed}" / "metrics.json", {"test_accuracy": 0.97})
    return root


@pytest.fixture
def studies(tmp_path):
    fixed = make_study(tmp_path / "fixed", None, ("decoder", "activations"), (0, 1, 2), [900, 1200, 300])
    log = make_study(tmp_path / "log", "log", ("activations",), (0, 1), [470, 100, None])
    return fixed, log


def table_rows(markdown: str) -> dict[tuple[str, str], dict[str, str]]:
    """{(quantity, depth): {column: cell}} of the pipe tables in `markdown`, the parts of a table split to at
    most 6 columns (each repeating quantity and depth) merged back."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    header: list[str] = []
    previous = ""
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not previous.startswith("|"):
                header = cells
            elif not set(line) <= set("|:- "):
                assert len(cells) <= 6, line
                rows.setdefault((cells[0], cells[1]), {}).update(zip(header, cells, strict=True))
        previous = line
    return rows


def test_the_log_the_preset_and_the_fixed_setup_side_by_side(studies, tmp_path):
    fixed, log = studies
    markdown = log_comparison(ReportData(fixed, tmp_path / "figures", compare=log))
    rows = table_rows(markdown)
    first = next(iter(rows.values()))
    assert list(first) == [
        "quantity",
        "depth",
        "research log",
        "log preset: activations (2 seeds)",
        "fixed setup: activations (3 seeds)",
        "fixed setup: decoder (3 seeds)",
        "preset reproduces",
    ]
    accuracy = rows[("MNIST test accuracy", "–")]
    assert accuracy["research log"] == "97.52%" and accuracy["log preset: activations (2 seeds)"] == "97.00%"
    assert accuracy["preset reproduces"] == "yes"
    emnist = rows[("EMNIST (stand-in: glyphs): top-10 count", "1")]
    assert emnist["research log"] == "961/2304" and emnist["fixed setup: decoder (3 seeds)"] == "961/2304"
    fashion = {d: rows[("Fashion-MNIST: top-10 count", str(d))] for d in (1, 2, 3, 9)}
    assert (
        fashion[1]["log preset: activations (2 seeds)"] == "470/2304"
        and fashion[1]["preset reproduces"] == "yes"
    )
    assert fashion[2]["preset reproduces"] == "no"  # 100 against the log's 2304
    assert fashion[3]["log preset: activations (2 seeds)"] == "stopped"
    assert fashion[9]["research log"] == "0/2304" and fashion[9]["log preset: activations (2 seeds)"] == "–"
    loss = rows[("MNIST: SAE training loss (last batch)", "2")]
    assert loss["research log"] == "0.0177" and loss["log preset: activations (2 seeds)"] == "0.034"
    assert loss["preset reproduces"] == "yes"  # within a factor of 10
    assert rows[("MNIST: SAE training loss (last batch)", "7")]["research log"] == "3.64e-44"
    l0 = rows[("EMNIST (stand-in: glyphs): L0", "2")]
    assert l0["research log"] == "18.4" and l0["log preset: activations (2 seeds)"] == "0.8"
    # why: only for the quantities the preset missed
    assert "**fashion_mnist:** the log cached Fashion-MNIST's train split" in markdown
    assert "**emnist:** EMNIST is not available offline" in markdown  # L0 0.8 vs 18.4
    assert "**accuracy:**" not in markdown
    # the log's numbers are constants with their source, never results
    assert LOG_NUMBERS[("emnist_count", 1)] == 961 and LOG_NUMBERS[("fashion_count", 4)] == 1339
    assert "log-facts.md" in markdown


def test_a_depth_some_seeds_stopped_at_says_how_many_trained_it(studies, tmp_path):
    fixed, log = studies
    depths = pd.read_csv(log / "summary" / "depths.csv")
    one = (depths["seed"] == 1) & (depths["depth"] == 3) & (depths["dataset"] == "fashion_mnist")
    depths.loc[one, ["status", "count_all_top10_nonzero", "width"]] = ["trained", 2115, 2304]
    depths.to_csv(log / "summary" / "depths.csv", index=False)
    rows = table_rows(log_comparison(ReportData(fixed, tmp_path / "figures", compare=log)))
    fashion = rows[("Fashion-MNIST: top-10 count", "3")]
    assert fashion["log preset: activations (2 seeds)"] == "2115/2304 (1/2 seeds)"
    assert fashion["preset reproduces"] == "no"  # the stopped seed counts as collapsed: mean 1058 vs 2115


def test_the_preset_run_alone_and_the_fixed_run_alone(studies, tmp_path):
    fixed, log = studies
    alone = log_comparison(ReportData(fixed, tmp_path / "figures"))
    assert "log preset" not in table_rows(alone)[("MNIST test accuracy", "–")]
    assert "The log preset's columns are absent" in alone
    preset = log_comparison(ReportData(log, tmp_path / "figures", compare=tmp_path / "nowhere"))
    assert "log preset: activations (2 seeds)" in table_rows(preset)[("MNIST test accuracy", "–")]


def test_a_study_without_an_mnist_classifier_says_so(studies, tmp_path):
    fixed, _ = studies
    depths = pd.read_csv(fixed / "summary" / "depths.csv").assign(train_dataset="digits:train")
    depths.to_csv(fixed / "summary" / "depths.csv", index=False)
    data = ReportData(fixed, tmp_path / "figures")
    assert log_comparison(data).startswith("*Not run: no classifier here was trained on MNIST")


def test_report_cli_compare_renders_the_table_and_records_its_inputs(studies, tmp_path):
    fixed, log = studies
    out = tmp_path / "report"
    main(
        ["report", "--results", str(fixed), "--out", str(out), "--compare", str(log), "--renderer", "pandoc"]
    )
    page = (out / "index.html").read_text()  # an appendix table: in the full report, not in the post
    assert "numbers beside ours" in page and "log preset: activations (2 seeds)" in page
    provenance = read_json(out / "provenance.json")
    inputs = provenance["config"]["inputs"]
    assert "summary/depths.csv" in inputs and str(log.resolve() / "summary" / "depths.csv") in inputs
