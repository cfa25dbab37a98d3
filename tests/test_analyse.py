"""End-to-end per-depth analysis on tiny hand-made depth folders (untrained weights: wiring, not quality)."""

import math

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from depth_folders import write_depth

from metasae.activations import load_activations
from metasae.analysis import SCHEMA
from metasae.cli import main
from metasae.codes import load_codes
from metasae.data import InputSpec, load_dataset, to_input_spec
from metasae.errors import MetasaeError
from metasae.featviz import FeatureVizConfig
from metasae.io import read_json, write_json
from metasae.latent_stats import max_correlation_to_parent, max_cosine_to_parent
from metasae.layout import CODES_FILE, LATENTS_FILE, SUMMARY_FILE
from metasae.models import build_classifier, load_classifier, save_classifier
from metasae.sae import SAEConfig, build_sae
from metasae.seeds import generator
from metasae.stages.analyse import analyse as analyse_depth
from metasae.stages.cache_acts import cache_activations

DATASET = "digits:test[:60]"
FAST_VIZ = FeatureVizConfig(steps=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """classifier -> cache -> depth 1 (latent 0 dead) -> depth 2 decoder / activations, + stopped,
    collapsed."""
    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)  # test-only: fixed weights for the tiny classifier
    model = build_classifier("mlp", 10, (1, 28, 28))
    save_classifier(model, root / "model", {"model": "mlp", "num_classes": 10, "input_shape": [1, 28, 28]})
    acts = cache_activations(root / "model", DATASET, "fc1", root / "acts").acts

    with torch.no_grad():
        sae1 = build_sae(SAEConfig("relu", 256, 24), generator("test", 1))
        sae1.W_enc[:, 0] = -1.0  # activations are >= 0, so latent 0 never fires
        codes1 = sae1.encode(acts)
        d1 = write_depth(root / "depth1", sae1, codes1, 1, "base", root / "acts")

        meta = build_sae(SAEConfig("relu", 256, 6), generator("test", 2))
        meta_codes = meta.encode(sae1.W_dec / sae1.W_dec.norm(dim=1, keepdim=True))
        d2 = write_depth(
            root / "depth2", meta, codes1 @ meta_codes, 2, "decoder", root / "acts", d1, meta_codes=meta_codes
        )

        act_sae = build_sae(SAEConfig("relu", 24, 5), generator("test", 3))
        d2a = write_depth(
            root / "depth2a", act_sae, act_sae.encode(codes1), 2, "activations", root / "acts", d1
        )
        collapsed = write_depth(
            root / "collapsed", act_sae, torch.zeros(len(acts), 5), 2, "activations", root / "acts", d1
        )
    stopped = root / "depth3"
    write_json(
        stopped / "metrics.json",
        {"status": "stopped", "stop_reason": "parent has 0 alive latents", "depth": 3, "mode": "decoder"},
    )
    return {
        "root": root,
        "d1": d1,
        "d2": d2,
        "d2a": d2a,
        "stopped": stopped,
        "collapsed": collapsed,
        "codes1": codes1,
        "sae1": sae1,
        "meta": meta,
    }


@pytest.fixture(scope="module")
def depth1(run):
    out = run["root"] / "analysis1"
    return out, analyse_depth(run["d1"], out, top_n=5, n_grid=4, viz_cfg=FAST_VIZ, figures="all")


def test_depth1_table_matches_the_codes_and_the_images(run, depth1):
    out, summary = depth1
    table = pq.read_table(out / LATENTS_FILE)
    assert table.schema.equals(SCHEMA)
    df = table.to_pandas()
    codes = run["codes1"]
    cache = load_activations(run["root"] / "acts")
    assert len(df) == 24 and df.latent.tolist() == list(range(24))
    assert df.dead.tolist() == (codes == 0).all(0).tolist()
    assert df.dead[0] and df.auto_label[0] == "dead" and df.top_indices[0].size == 0
    for j in (1, 7):
        col = codes[:, j]
        order = torch.argsort(col, descending=True, stable=True)[:5]
        order = order[col[order] > 0]
        assert df.top_rows[j].tolist() == order.tolist()
        assert df.top_indices[j].tolist() == cache.index[order].tolist()
        assert df.top_values[j].tolist() == pytest.approx(col[order].tolist())
        assert df.density[j] == pytest.approx(float((col > 0).float().mean()))
        assert df.all_top10_nonzero[j] == bool((col > 0).sum() >= 10)
    # predictions are the classifier's on the same pixels that produced the codes
    model, _ = load_classifier(run["root"] / "model")
    images = to_input_spec(load_dataset(DATASET, None).images, InputSpec(1, 28, 28))
    rows = torch.tensor(df.top_rows[3].tolist())
    assert df.predicted_labels[3].tolist() == model(images[rows]).argmax(1).tolist()
    assert df.parent_max_cosine.isna().all()  # depth 1 has no parent
    assert summary["status"] == "analysed"
    assert summary["alive_latents"] == int((~df.dead).sum()) == int((codes > 0).any(0).sum())
    assert summary["count_all_top10_nonzero"] == int(df.all_top10_nonzero.sum())
    assert summary["mean_active_per_image"] == pytest.approx(float((codes > 0).sum(1).float().mean()))
    assert summary["purity_mean"] == pytest.approx(df.purity[~df.dead].mean())


def test_depth1_figures_are_written(depth1):
    out, summary = depth1
    expected = {
        "top_images_densest.png",
        "top_images_purest.png",
        "log10_density.png",
        "activation_counts.png",
        "decoder_pca.png",
        "purity_entropy.png",
        "feature_viz.png",
    }
    assert set(summary["figures"]) == expected
    for name in expected:
        assert (out / "figures" / name).stat().st_size > 1000
    assert read_json(out / SUMMARY_FILE)["provenance"]["config"]["top_n"] == 5


def test_decoder_depth_has_parent_cosine_and_lineage_card(run):
    out = run["root"] / "analysis2"
    summary = analyse_depth(run["d2"], out, top_n=5, n_grid=3, feature_viz=False)
    df = pd.read_parquet(out / LATENTS_FILE)
    expected = max_cosine_to_parent(run["meta"].W_dec.detach(), run["sae1"].W_dec.detach())
    assert df.parent_max_cosine.tolist() == pytest.approx(expected.tolist())
    assert "lineage_card.png" in summary["figures"]
    assert (out / "figures" / "lineage_card.png").stat().st_size > 1000


def test_figures_report_draws_what_the_report_embeds_and_none_draws_nothing(run, depth1):
    out = run["root"] / "analysis2_report"
    summary = analyse_depth(run["d2"], out, top_n=5, n_grid=3, viz_cfg=FAST_VIZ)  # report: the default
    assert summary["figures"] == ["top_images_densest.png", "top_images_purest.png", "lineage_card.png"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(summary["figures"])
    assert read_json(out / SUMMARY_FILE)["provenance"]["config"]["figures"] == "report"
    none = run["root"] / "analysis1_none"
    summary = analyse_depth(run["d1"], none, top_n=5, n_grid=4, figures="none")
    assert summary["figures"] == [] and not (none / "figures").exists()
    # the tables do not depend on the figures drawn
    assert pd.read_parquet(none / LATENTS_FILE).equals(pd.read_parquet(depth1[0] / LATENTS_FILE))
    drawn = read_json(depth1[0] / SUMMARY_FILE)
    for key in ("figures", "provenance"):
        drawn.pop(key), summary.pop(key)
    assert summary == drawn
    with pytest.raises(MetasaeError, match="--figures some"):
        analyse_depth(run["d1"], none, figures="some")


def test_report_figures_are_the_ones_the_report_embeds(depth1):
    from metasae.figures.depth import REPORT_FIGURES
    from metasae.writeup.sections.lineage import LINEAGE_FIGURES

    every = {*read_json(depth1[0] / SUMMARY_FILE)["figures"], "lineage_card.png"}  # depth 1 has no card
    assert {f for f in every if f.startswith(LINEAGE_FIGURES)} == REPORT_FIGURES


def test_deeper_feature_viz_goes_through_the_stack_encoder(run):
    out = run["root"] / "analysis2_viz"
    summary = analyse_depth(run["d2"], out, top_n=5, n_grid=3, viz_cfg=FAST_VIZ, figures="all")
    assert (out / "figures" / "feature_viz.png").stat().st_size > 1000
    assert "feature_viz.png" in summary["figures"]


def test_activations_depth_has_parent_correlation(run):
    out = run["root"] / "analysis2a"
    analyse_depth(run["d2a"], out, top_n=5, feature_viz=False)
    df = pd.read_parquet(out / LATENTS_FILE)
    expected = max_correlation_to_parent(load_codes(run["d2a"] / CODES_FILE), run["codes1"].to_sparse())
    assert df.parent_max_cosine.to_numpy() == pytest.approx(expected.numpy(), nan_ok=True)


def test_stopped_depth_writes_an_empty_table_and_the_reason(run):
    out = run["root"] / "analysis3"
    summary = analyse_depth(run["stopped"], out)
    table = pq.read_table(out / LATENTS_FILE)
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)
    assert summary["status"] == "stopped" and summary["stop_reason"] == "parent has 0 alive latents"
    assert not (out / "figures").exists()


def test_collapsed_depth_is_reported_not_analysed_as_zeros(run):
    out = run["root"] / "analysis_collapsed"
    summary = analyse_depth(run["collapsed"], out)
    assert summary["status"] == "collapsed"
    assert summary["alive_latents"] == 0 and summary["dead_fraction"] == 1.0
    assert summary["purity_mean"] is None and summary["figures"] == []
    df = pd.read_parquet(out / LATENTS_FILE)
    assert df.dead.all() and (df.auto_label == "dead").all()
    assert all(len(t) == 0 for t in df.top_indices)  # no latent 0 "wins" an all-zero argmax
    assert df.purity.isna().all() and not (out / "figures").exists()


def test_analysis_is_deterministic(run, depth1):
    out = run["root"] / "analysis1_again"
    analyse_depth(run["d1"], out, top_n=5, n_grid=4, feature_viz=False)
    assert pd.read_parquet(out / LATENTS_FILE).equals(pd.read_parquet(depth1[0] / LATENTS_FILE))


def test_cli_analyse_and_its_errors(run, capsys):
    out = run["root"] / "analysis_cli"
    assert (
        main(
            ["analyse", "--depth-dir", str(run["d2a"]), "--out", str(out), "--top-n", "3", "--no-feature-viz"]
        )
        == 0
    )
    assert pd.read_parquet(out / LATENTS_FILE).top_rows.map(len).max() <= 3
    assert main(["analyse", "--depth-dir", str(run["root"] / "nope"), "--out", str(out)]) == 2
    assert "nope/metrics.json: file not found" in capsys.readouterr().err
    bad = run["root"] / "bad"
    write_json(bad / "metrics.json", {"status": "done"})
    assert main(["analyse", "--depth-dir", str(bad), "--out", str(out)]) == 2
    assert "status='done'; allowed: trained, stopped" in capsys.readouterr().err
    assert main(["analyse", "--depth-dir", str(run["d1"]), "--out", str(out), "--top-n", "0"]) == 2
    assert math.isfinite(read_json(out / SUMMARY_FILE)["mean_active_per_image"])
