"""The report's dSprites section on a small fake results folder: figures, readings computed from the
tables, the shape table with CIs, and the per-run tables in the appendix."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from metasae.layout import PROBE_COLUMNS
from metasae.stages.probe_summary import probe_summary
from metasae.stages.report import DSPRITES_TEMPLATE, render_report
from metasae.writeup.data import ReportData
from metasae.writeup.sections.dsprites import dsprites, dsprites_appendix, dsprites_link

LAYERS = ("embed.cls", "embed.mean", "block0.cls", "block0.mean")


def _run_table(trained_on: str, shape_by_layer: dict[str, float]) -> pd.DataFrame:
    rows = []

    def add(train_set, step, layer, factor, metric, value, probe="linear", half=0.02):
        rows.append(
            (train_set, f"step{step}", step, layer, factor, probe, metric, value, value - half, value + half)
        )

    for layer in LAYERS:
        add("random_init", 0, layer, "shape", "accuracy", 0.40)
        add(trained_on, 10, layer, "shape", "accuracy", 0.45)
        add(trained_on, 100, layer, "shape", "accuracy", shape_by_layer[layer])
        for factor, metric in (("scale", "accuracy"), ("posX", "r2"), ("posY", "r2")):
            add("random_init", 0, layer, factor, metric, 0.5)
            add(trained_on, 100, layer, factor, metric, 0.3)
        for shape, acc, init_r2 in (("square", 0.2, 0.2), ("ellipse", 0.1, 0.2), ("heart", 0.9, 0.8)):
            add("random_init", 0, layer, f"orientation_{shape}", "accuracy", 0.05)
            add("random_init", 0, layer, f"orientation_{shape}", "r2_sincos_fold", init_r2)
            add(trained_on, 100, layer, f"orientation_{shape}", "accuracy", acc)
            add(trained_on, 100, layer, f"orientation_{shape}", "r2_sincos_fold", 0.7)
    for factor, metric in (("shape", "accuracy"), ("scale", "accuracy"), ("posX", "r2"), ("posY", "r2")):
        add("pixels", 0, "pixels", factor, metric, 0.55)
    for shape, cap in (("square", 0.25), ("ellipse", 0.5), ("heart", 0.98)):
        add("symmetry_ceiling", 0, "-", f"orientation_{shape}", "accuracy", cap, probe="bayes", half=0)
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    paths = []
    for run, on, shape in (
        ("dsprites_shape", "dsprites_gen:sample[0:10]", (0.33, 0.80, 0.90, 0.95)),
        ("fashion_mnist", "fashion_mnist:train", (0.33, 0.38, 0.50, 0.70)),
    ):
        folder = root / "probes" / run
        folder.mkdir(parents=True)
        _run_table(on, dict(zip(LAYERS, shape, strict=True))).to_csv(folder / "probes.csv", index=False)
        paths.append(folder / "probes.csv")
        vit = root / "vit" / run
        (vit / "step100").mkdir(parents=True)
        metrics = {
            "checkpoints": [{"step": 100, "dir": "step100", "test_accuracy": 0.97}],
            "final_step": 100,
            "test_accuracy": 0.97,
            "test_scores": {"shape_accuracy": 0.97},
            "cpu_seconds": 12.5,
        }
        (vit / "metrics.json").write_text(json.dumps(metrics))
        cfg = {
            "train_dataset": on,
            "test_dataset": "t",
            "label": "shape",
            "vit": {"stem": "conv", "patch": 8},
        }
        (vit / "step100" / "cfg.json").write_text(json.dumps(cfg))
    probe_summary(paths, root / "probes_summary")
    return root


def test_section_places_one_figure_per_question_with_a_reading(results, tmp_path):
    data = ReportData(results, tmp_path / "figs")
    text, appendix = dsprites(data), dsprites_appendix(data)
    assert "probes_summary-score_vs_layer.png" in text and text.count("](") == 1  # one main-text figure
    assert "What to see:" in text
    for name in ("shape_vs_step", "orientation_per_shape"):  # the others in the appendix
        assert f"probes_summary-{name}.png" in appendix and name not in text
    assert text.count("**Reading.**") == 3
    # computed, not typed: the best layer, its CI and where it first beats the random init (0.40)
    assert "`dsprites_shape` 0.95 [0.93, 0.97] at block0.mean (above the random init from embed.mean)" in text
    assert "`fashion_mnist` 0.7 [0.68, 0.72] at block0.mean (above the random init from block0.cls)" in text
    assert "random init 0.4 [0.38, 0.42]" in text and "raw pixels 0.55 [0.53, 0.57]" in text
    assert (
        "PosX (R²): `dsprites_shape` 0.3 [0.28, 0.32] at embed.cls (below the random init at every layer)"
        in text
    )
    assert "first above its random init at step 10;" in text  # step 10: CI [0.43, 0.47] above 0.40
    # orientation (R² 0.7 everywhere): squares 0.2 of 0.25 (80%) near the ceiling, ellipses 0.1 of 0.5
    # coarser than the grid, hearts' R² under their random init's 0.8: not encoded
    near, rest = text.split("read near the ceiling")[1].split("encoded but more coarsely")
    coarse, none = rest.split("not encoded linearly for")
    assert "`dsprites_shape` squares" in near and "`fashion_mnist` ellipses" in coarse
    assert "`dsprites_shape` hearts" in none and "hearts" not in near + coarse


def test_shape_table_has_every_vit_layer_and_control_with_cis(results, tmp_path):
    text = dsprites_appendix(ReportData(results, tmp_path / "figs"))
    table = text.split("| layer")[1].split("\n\n")[0]
    assert "dsprites_shape (step 100)" in table and "fashion_mnist (step 100)" in table
    assert "random init (step 0)" in table
    assert "| block0.mean | 0.95 [0.93, 0.97]" in table
    assert "Raw pixels (the same probe on the ViT's input): 0.55 [0.53, 0.57]." in text
    assert "| dsprites_shape | dsprites_gen:sample[0:10] (shape) | conv, patch 8 |" in text  # the ViTs


def test_appendix_keeps_every_runs_tables(results, tmp_path):
    text = dsprites_appendix(ReportData(results, tmp_path / "figs"))
    assert "**`dsprites_shape`**" in text and "**`fashion_mnist`**" in text
    assert text.count("Probe score per layer at the last training step") == 2


def test_the_branch_has_its_own_report_which_the_main_report_links(results, tmp_path):
    out = tmp_path / "report_dsprites"
    render_report(results, out, template=DSPRITES_TEMPLATE, renderer="pandoc")
    page = (out / "index.html").read_text()
    assert "dSprites: what ViTs represent" in page and "Appendix: the ViTs" in page
    post = (out / "index.md").read_text()
    assert "## Results" in post and "## Appendix" not in post and "[full report](index.html)" in post
    assert "../report_dsprites/index.html" in dsprites_link(ReportData(results, tmp_path / "figs"))
    assert dsprites_link(ReportData(tmp_path, tmp_path / "figs")) == ""  # no probes: no link
