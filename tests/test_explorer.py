"""The study explorer: one self-contained HTML file built from a tiny hand-made results tree (untrained
weights: wiring, not quality), checked as data and, where chromium is installed, in a headless browser."""

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from depth_folders import write_depth
from PIL import Image

from metasae import explorer as explorer_module
from metasae import explorer_latents
from metasae.data import load_dataset
from metasae.errors import MetasaeError
from metasae.io import read_json, write_json
from metasae.layout import LINEAGE_FILE
from metasae.metrics import layer_mean
from metasae.models import build_classifier, load_classifier, save_classifier
from metasae.sae import SAEConfig, build_sae
from metasae.seeds import generator
from metasae.stack import Depth
from metasae.stages.analyse import analyse
from metasae.stages.cache_acts import cache_activations
from metasae.stages.explore import explore

DATASET = "digits:test[:60]"
RUN = "mlp/seed0/digits/fc1/relu"
RUN1 = "mlp/seed1/digits/fc1/relu"  # depth 1 only, from its own copy of the activation cache
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
INDEX = re.compile(r'<script type="application/json" id="explorer-index">(.*?)</script>', re.S)
DATA = re.compile(r"^explorerData\((\"[^\"]+\"),(.*)\);$", re.S)
WIDTH = 300  # depth-1 latents: more than one page of the list, and more than the old cap of 256


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """results/{sae,analysis}/RUN/: depth 1 of WIDTH latents (latent 0 dead), decoder depth 2 and stopped
    depth 3, and an activations depth 2, each meta depth with its lineage; RUN1 (another classifier seed) has
    a copy of depth 1, so the seed matches pair every alive latent with itself."""
    root = tmp_path_factory.mktemp("explorer")
    results = root / "results"
    torch.manual_seed(0)  # test-only: fixed weights for the tiny classifier
    model = build_classifier("mlp", 10, (1, 28, 28))
    save_classifier(model, root / "model", {"model": "mlp", "num_classes": 10, "input_shape": [1, 28, 28]})
    acts_dir = root / "acts"
    acts = cache_activations(root / "model", DATASET, "fc1", acts_dir).acts
    sae_root = results / "sae" / RUN
    with torch.no_grad():
        sae1 = build_sae(SAEConfig("relu", 256, WIDTH), generator("test", 1))
        sae1.W_enc[:, 0] = -1.0  # activations are >= 0, so latent 0 never fires
        codes1 = sae1.encode(acts)
        d1 = write_depth(sae_root / "depth1", sae1, codes1, 1, "base", acts_dir)
        meta = build_sae(SAEConfig("relu", 256, 6), generator("test", 2))
        meta_codes = meta.encode(sae1.W_dec / sae1.W_dec.norm(dim=1, keepdim=True))
        d2 = write_depth(
            sae_root / "decoder" / "depth2", meta, codes1 @ meta_codes, 2, "decoder", acts_dir, d1, meta_codes
        )
        act_sae = build_sae(SAEConfig("relu", WIDTH, 5), generator("test", 3))
        d2a = write_depth(
            sae_root / "activations" / "depth2",
            act_sae,
            act_sae.encode(codes1),
            2,
            "activations",
            acts_dir,
            d1,
            act_sae.encode(torch.eye(WIDTH)),
        )
    d3 = sae_root / "decoder" / "depth3"
    write_json(
        d3 / "metrics.json",
        {"status": "stopped", "stop_reason": "parent has 0 alive latents", "depth": 3, "mode": "decoder"},
    )
    for depth_dir in (d1, d2, d2a, d3):
        analyse(
            depth_dir,
            results / "analysis" / depth_dir.relative_to(results / "sae"),
            top_n=5,
            feature_viz=False,
        )
    shutil.copytree(acts_dir, root / "acts1")
    shutil.copytree(d1, results / "sae" / RUN1 / "depth1")
    write_json(
        results / "sae" / RUN1 / "depth1" / "cfg.json",
        {**read_json(d1 / "cfg.json"), "acts_dir": str(root / "acts1"), "seed": 1},
    )
    shutil.copytree(results / "analysis" / RUN / "depth1", results / "analysis" / RUN1 / "depth1")
    return results


@pytest.fixture(scope="module")
def explorer(results) -> Path:
    return explore(results, results / "explorer" / "index.html")


def _study(page: Path) -> tuple[dict, dict]:
    """The index inlined in the page, and every data file's value by key."""
    index = json.loads(INDEX.search(page.read_text()).group(1))
    data = {}
    for path in (page.parent / index["data_dir"]).glob("*.js"):
        key, blob = DATA.match(path.read_text().strip()).groups()
        data[json.loads(key)] = json.loads(blob)
    return index, data


def _depths(index: dict, data: dict, run: int = 0) -> dict:
    """{folder: (index record, its data file's value or None)} of a run."""
    return {r["folder"]: (r, data.get(r.get("file"))) for r in index["runs"][run]["depths"]}


def _latents(value: dict) -> dict:
    return {row[0]: dict(zip(value["fields"], row, strict=True)) for row in value["rows"]}


def test_every_latent_of_every_depth_is_written(results, explorer):
    index, data = _study(explorer)
    assert [r["id"] for r in index["runs"]] == [RUN, RUN1]
    depths = _depths(index, data)
    assert sorted(depths) == ["activations/depth2", "decoder/depth2", "decoder/depth3", "depth1"]
    latents = pd.read_parquet(results / "analysis" / RUN / "depth1" / "latents.parquet")
    first = _latents(depths["depth1"][1])
    assert sorted(first) == list(range(WIDTH))  # no cap: all of them, the 257th and beyond too
    assert len(depths["decoder/depth2"][1]["rows"]) == 6 and len(depths["activations/depth2"][1]["rows"]) == 5
    stopped, none = depths["decoder/depth3"]
    assert stopped["status"] == "stopped" and none is None and "file" not in stopped
    assert stopped["summary"]["stop_reason"] == "parent has 0 alive latents"
    assert first[0]["dead"] and first[0]["top"] == [] and first[0]["bands"] == []
    assert [first[j]["label"] for j in range(WIDTH)] == latents.auto_label.tolist()
    for j, values in enumerate(latents.top_values):
        assert [value for _, value, _ in first[j]["top"]] == pytest.approx(values.tolist(), rel=1e-3)
    assert depths["depth1"][0]["children"] == ["activations/depth2", "decoder/depth2"]
    assert depths["decoder/depth3"][0]["parent"] == "decoder/depth2"


def test_dense_depths_are_flagged_by_their_mean_active_fraction(explorer):
    index, data = _study(explorer)
    for record, _ in _depths(index, data).values():
        summary = record["summary"]
        if record["status"] == "analysed":
            fraction = summary["mean_active_per_image"] / summary["n_latents"]
            assert record["active_fraction"] == pytest.approx(fraction, rel=1e-3)
            assert record["dense"] == (fraction > explorer_module.DENSE_FRACTION)
    assert any(r["dense"] for r, _ in _depths(index, data).values())  # untrained ReLU: half its latents fire


def _true_lineage(results, folder: str) -> pd.DataFrame:
    table = pd.read_parquet(results / "sae" / RUN / folder / LINEAGE_FILE)
    return table[table.weight != 0].assign(strength=lambda t: t.weight.abs())


@pytest.mark.parametrize("most", [2, explorer_module.MAX_EDGES])
def test_lineage_keeps_each_sides_strongest_edges_and_counts_them_all(results, tmp_path, monkeypatch, most):
    monkeypatch.setattr(explorer_module, "MAX_EDGES", most)
    index, data = _study(explore(results, tmp_path / "explorer" / "index.html"))
    for folder in ("decoder/depth2", "activations/depth2"):
        lineage = _depths(index, data)[folder][1]["lineage"]
        table = _true_lineage(results, folder)
        kept = {(p, m) for p, m, _ in lineage["edges"]}
        assert kept <= set(zip(table.parent_latent, table.meta_latent, strict=True))
        for side, count in (("meta_latent", "n_parents"), ("parent_latent", "n_metas")):
            assert {int(k): v for k, v in lineage[count].items()} == table.groupby(side).size().to_dict()
            for _, group in table.groupby(side):
                strongest = group.sort_values("strength", ascending=False).head(most)
                assert set(zip(strongest.parent_latent, strongest.meta_latent, strict=True)) <= kept
        assert lineage["kept_per_latent"] == most
    assert (table.groupby("meta_latent").size() > 2).any()  # the fixture has meta-latents to prune


def test_quantile_bands_sample_each_quarter_of_the_nonzero_activations():
    values = torch.arange(1.0, 9.0)  # latent 0: 1..8 on images 0..7; latent 1: never active
    codes = torch.sparse_coo_tensor(
        torch.stack([torch.arange(8), torch.zeros(8, dtype=torch.long)]),
        values,
        (8, 2),
        check_invariants=True,
    )
    bands = explorer_latents.band_samples(codes, n_bands=4, per_band=2)
    assert bands[1] == []
    assert [(lo, hi) for lo, hi, _ in bands[0]] == [(1, 2), (3, 4), (5, 6), (7, 8)]
    assert [[row for row, _ in samples] for _, _, samples in bands[0]] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_density_histogram_counts_alive_latents_on_log10_bins():
    hist = explorer_latents.density_histogram(np.array([0.0, 0.001, 0.01, 0.5, 1.0]), n_bins=3)
    assert hist["lo"] == -3 and hist["hi"] == 0 and hist["dead"] == 1
    assert hist["counts"] == [1, 1, 2]


def test_logit_effects_push_the_direction_through_the_layers_after_the_cached_one(results, explorer):
    index, data = _study(explorer)
    value = _depths(index, data)["depth1"][1]
    model = load_classifier(read_json(results.parent / "acts" / "manifest.json")["source_model"])[0]
    acts = load_dataset(DATASET).images
    mean = layer_mean(model, "fc1", acts)
    depth1 = explorer_module.read_depth(Depth.load(results / "sae" / RUN / "depth1"))
    scale = value["logits"]["scale"]
    rest = lambda x: model.fc3(model.fc2(x))  # noqa: E731  the MLP after fc1
    for j in (1, WIDTH - 1):
        expected = rest(mean + scale * depth1.directions[j]) - rest(mean)
        assert _latents(value)[j]["logits"] == pytest.approx(expected.tolist(), rel=0.02, abs=2e-3)
    assert value["logits"]["classes"] == [str(c) for c in range(10)]


def test_each_alive_latent_is_matched_to_its_replicate(explorer):
    index, data = _study(explorer)
    value = _depths(index, data, run=0)["depth1"][1]
    assert value["matches"]["runs"] == [RUN1] and value["matches"]["basis"] == "decoder rows"
    for j, latent in _latents(value).items():
        if latent["dead"]:
            assert latent["matches"] == []
        else:
            assert [(k, other) for k, other, _ in latent["matches"]] == [(0, j)]
            assert latent["matches"][0][2] == pytest.approx(1.0)


def test_each_probe_image_is_written_once_as_its_own_pixels(results, explorer):
    index, data = _study(explorer)
    depths = _depths(index, data)
    first = _latents(depths["depth1"][1])
    images = data[depths["depth1"][1]["images"]]
    referenced = {
        i
        for _, value in depths.values()
        if value
        for row in _latents(value).values()
        for i in [t[0] for t in row["top"]] + [s[0] for band in row["bands"] for s in band[2]]
    }
    assert referenced == set(range(len(images)))  # once each, however many latents, depths and runs show it
    table = pd.read_parquet(results / "analysis" / RUN / "depth1" / "latents.parquet")
    image_id = first[1]["top"][0][0]
    png = Image.open(io.BytesIO(base64.b64decode(images[image_id].split(",", 1)[1])))
    pixels = load_dataset(DATASET).images[int(table.top_rows[1][0])][0]
    assert np.array_equal(np.asarray(png), (pixels * 255).round().to(torch.uint8).numpy())


def test_the_folder_opens_offline(explorer):
    folder = explorer.parent
    texts = {p: p.read_text() for p in folder.rglob("*") if p.is_file()}
    for path, text in texts.items():
        assert set(re.findall(r"https?://[^\s\"']+", text)) <= {"http://www.w3.org/2000/svg"}, path
        assert "fetch(" not in text and "XMLHttpRequest" not in text and text.isascii(), path
    page = texts[explorer]
    assert "__EXPLORER_" not in page
    for ref in re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page):
        assert (folder / ref).is_file(), ref
    assert 'href="../report/index.html"' in page


def test_rerunning_replaces_the_folder_whole(results, tmp_path):
    page = explore(results, tmp_path / "explorer" / "index.html")
    (page.parent / "data" / "stale.js").write_text("old")
    explore(results, page)
    assert not (page.parent / "data" / "stale.js").exists()


def test_a_results_folder_without_analyses_is_a_clear_error(tmp_path):
    with pytest.raises(MetasaeError, match="no analysis summaries"):
        explore(tmp_path, tmp_path / "explorer" / "index.html")


# ---- in a real headless browser --------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _card_shows(driver, **expected) -> None:
    """Wait until the latent card's data attributes (mode, depth, latent) say what it shows: navigation
    re-renders on hashchange, after the click returns."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d):
        card = d.find_element(By.ID, "latent-card")
        return all(card.get_attribute(f"data-{k}") == str(v) for k, v in expected.items())

    WebDriverWait(driver, 10).until(shown)


def _save_screenshot(driver, tmp_path: Path) -> None:
    """tmp_path/explorer.png, and results/test-artifacts/ too where CI asks (METASAE_TEST_ARTIFACTS)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()  # no hover glow
    driver.save_screenshot(str(tmp_path / "explorer.png"))
    if os.environ.get("METASAE_TEST_ARTIFACTS"):
        artifacts = Path(__file__).resolve().parents[1] / "results" / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "explorer.png", artifacts / "explorer.png")


def _hash(run: str, folder: str, latent: int) -> str:
    return f"#run={run}&depth={folder}&latent={latent}"


def test_browser_opens_a_latent_beyond_the_old_cap_and_follows_its_lineage(browser, explorer, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    index, data = _study(explorer)
    depths = _depths(index, data)
    first, meta_value = _latents(depths["depth1"][1]), depths["decoder/depth2"][1]
    metas_of = {}
    for p, m, w in meta_value["lineage"]["edges"]:
        metas_of.setdefault(p, []).append((abs(w), m))
    latent = next(
        j for j in range(257, WIDTH) if not first[j]["dead"] and j in metas_of and first[j]["bands"]
    )
    meta = max(metas_of[latent])[1]

    browser.get(explorer.as_uri() + _hash(RUN, "depth1", latent))  # a hash URL, followed directly
    _card_shows(browser, run=RUN, depth="depth1", latent=latent)
    assert browser.find_element(By.ID, "report-link").get_attribute("href").endswith("/report/index.html")
    summary = browser.find_element(By.ID, "depth-summary").text
    assert f"of {WIDTH} latents, all listed" in summary
    assert bool(browser.find_elements(By.ID, "dense-badge")) == depths["depth1"][0]["dense"]
    alive = sum(not lat["dead"] for lat in first.values())
    count = browser.find_element(By.ID, "list-count").text
    assert count == f"{alive} of {WIDTH} latents match ({alive} alive)"
    assert browser.find_elements(By.CSS_SELECTOR, f'.latent-item.selected[data-latent="{latent}"]')
    items = browser.find_elements(By.CSS_SELECTOR, ".latent-item")
    assert items and all(re.match(r"#\d+", a.text) for a in items)  # no blank rows
    assert len(browser.find_elements(By.CSS_SELECTOR, "#latent-list li")) == len(items)

    assert browser.find_elements(By.CSS_SELECTOR, "#card-density svg rect")
    assert browser.find_elements(By.CSS_SELECTOR, "#card-density svg line.mark")
    bands = browser.find_elements(By.CSS_SELECTOR, "#card-bands .band")
    assert len(bands) == len(first[latent]["bands"])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#card-bands .band img")) == sum(
        len(b[2]) for b in first[latent]["bands"]
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#card-logit-bars .bar")) == 10
    match = browser.find_element(By.CSS_SELECTOR, '#card-matches .lineage-link[data-rel="match"]')
    assert match.get_attribute("data-run") == RUN1 and match.get_attribute("data-latent") == str(latent)
    legend = browser.find_element(By.ID, "legend-list").get_attribute("textContent")
    assert "lineage weight" in legend and "logit" in legend

    browser.find_element(
        By.CSS_SELECTOR,
        f'.lineage-metas[data-child="decoder/depth2"] .lineage-link[data-rel="meta"][data-latent="{meta}"]',
    ).click()
    _card_shows(browser, depth="decoder/depth2", latent=meta)
    assert f"depth=decoder/depth2&latent={meta}" in browser.current_url
    heading = browser.find_element(By.CSS_SELECTOR, "#lineage-parents h3").get_attribute("textContent")
    n_parents = meta_value["lineage"]["n_parents"][str(meta)]
    assert f"of {n_parents} parents" in heading or f"all {n_parents} parents" in heading
    back = browser.find_element(By.CSS_SELECTOR, f'#lineage-parents .lineage-link[data-latent="{latent}"]')
    if not back.is_displayed():  # not among the meta-latent's strongest parents: under "more"
        browser.find_element(By.CSS_SELECTOR, "#more-parents summary").click()
    _save_screenshot(browser, tmp_path)
    back.click()
    _card_shows(browser, depth="depth1", latent=latent)
    browser.back()
    _card_shows(browser, depth="decoder/depth2", latent=meta)

    browser.get(explorer.as_uri() + _hash(RUN, "depth1", 0))  # dead, hidden: the densest is shown, page 1
    _card_shows(browser, depth="depth1")
    assert browser.find_element(By.ID, "page-info").text.startswith("1\u2013100 of")
    browser.find_element(By.ID, "page-next").click()
    page_info = lambda d: d.find_element(By.ID, "page-info").text  # noqa: E731
    WebDriverWait(browser, 10).until(lambda d: page_info(d).startswith("101\u2013"))
    search = browser.find_element(By.ID, "latent-filter")
    search.send_keys(f"#{latent}", Keys.ENTER)
    _card_shows(browser, depth="depth1", latent=latent)
    assert [
        a.get_attribute("data-latent") for a in browser.find_elements(By.CSS_SELECTOR, ".latent-item")
    ] == [str(latent)]

    browser.get(explorer.as_uri() + _hash(RUN1, "depth1", latent))  # a run with depth 1 only
    _card_shows(browser, run=RUN1, depth="depth1", latent=latent)
    assert not browser.find_elements(By.CSS_SELECTOR, '.lineage-link[data-rel="meta"]')
    assert browser.get_log("browser") == []  # no script errors, no failed loads
    assert (tmp_path / "explorer.png").stat().st_size > 10_000
