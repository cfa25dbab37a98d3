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
from metasae.data import load_dataset
from metasae.errors import MetasaeError
from metasae.io import read_json, write_json
from metasae.layout import LINEAGE_FILE
from metasae.models import build_classifier, save_classifier
from metasae.sae import SAEConfig, build_sae
from metasae.seeds import generator
from metasae.stages.analyse import analyse
from metasae.stages.cache_acts import cache_activations
from metasae.stages.explore import explore

DATASET = "digits:test[:60]"
RUN = "mlp/seed0/digits/fc1/relu"
RUN1 = "mlp/seed1/digits/fc1/relu"  # depth 1 only, from its own copy of the activation cache
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BLOB = re.compile(r'<script type="application/json" id="explorer-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """results/{sae,analysis}/RUN/: depth 1 (latent 0 dead), decoder depth 2 and stopped depth 3, and an
    activations depth 2, each meta depth with its lineage."""
    root = tmp_path_factory.mktemp("explorer")
    results = root / "results"
    torch.manual_seed(0)  # test-only: fixed weights for the tiny classifier
    model = build_classifier("mlp", 10, (1, 28, 28))
    save_classifier(model, root / "model", {"model": "mlp", "num_classes": 10, "input_shape": [1, 28, 28]})
    acts_dir = root / "acts"
    acts = cache_activations(root / "model", DATASET, "fc1", acts_dir).acts
    sae_root = results / "sae" / RUN
    with torch.no_grad():
        sae1 = build_sae(SAEConfig("relu", 256, 24), generator("test", 1))
        sae1.W_enc[:, 0] = -1.0  # activations are >= 0, so latent 0 never fires
        codes1 = sae1.encode(acts)
        d1 = write_depth(sae_root / "depth1", sae1, codes1, 1, "base", acts_dir)
        meta = build_sae(SAEConfig("relu", 256, 6), generator("test", 2))
        meta_codes = meta.encode(sae1.W_dec / sae1.W_dec.norm(dim=1, keepdim=True))
        d2 = write_depth(
            sae_root / "decoder" / "depth2", meta, codes1 @ meta_codes, 2, "decoder", acts_dir, d1, meta_codes
        )
        act_sae = build_sae(SAEConfig("relu", 24, 5), generator("test", 3))
        d2a = write_depth(
            sae_root / "activations" / "depth2",
            act_sae,
            act_sae.encode(codes1),
            2,
            "activations",
            acts_dir,
            d1,
            act_sae.encode(torch.eye(24)),
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


def _blob(path: Path) -> dict:
    return json.loads(BLOB.search(path.read_text()).group(1))


def _depths(data: dict) -> dict:
    return {(r["mode"], r["depth"]): r for r in data["runs"][0]["depths"]}


def test_explorer_embeds_every_depth_its_latents_and_lineage(results, explorer):
    data = _blob(explorer)
    assert [r["id"] for r in data["runs"]] == [RUN, RUN1]
    assert [(r["mode"], r["depth"]) for r in data["runs"][1]["depths"]] == [("base", 1)]
    depths = _depths(data)
    assert sorted(depths) == [("activations", 2), ("base", 1), ("decoder", 2), ("decoder", 3)]
    latents = pd.read_parquet(results / "analysis" / RUN / "depth1" / "latents.parquet")
    assert [lat["latent"] for lat in depths["base", 1]["latents"]] == list(range(24))
    assert len(depths["decoder", 2]["latents"]) == 6 and len(depths["activations", 2]["latents"]) == 5
    assert depths["decoder", 3]["status"] == "stopped" and depths["decoder", 3]["latents"] == []
    assert depths["decoder", 3]["summary"]["stop_reason"] == "parent has 0 alive latents"
    first = depths["base", 1]["latents"]
    assert first[0]["dead"] and first[0]["top"] == []
    assert [lat["label"] for lat in first] == latents.auto_label.tolist()
    for lat, values in zip(first, latents.top_values, strict=True):
        assert [value for _, value, _ in lat["top"]] == pytest.approx(values.tolist(), rel=1e-3)
    edges = _assert_strongest_parents(results, depths, explorer_module.MAX_PARENTS)
    assert len(edges) > 6  # the fixture must give the browser test parents and siblings to follow


def _assert_strongest_parents(results, depths: dict, most: int) -> set:
    """The page's decoder depth-2 edges are each meta-latent's `most` strongest non-zero lineage edges."""
    lineage = pd.read_parquet(results / "sae" / RUN / "decoder" / "depth2" / LINEAGE_FILE)
    lineage = lineage[lineage.weight != 0]
    edges = {(p, m) for p, m, _ in depths["decoder", 2]["lineage"]}
    assert edges <= set(zip(lineage.parent_latent.tolist(), lineage.meta_latent.tolist(), strict=True))
    for meta, group in lineage.groupby("meta_latent"):
        kept = group[[(p, meta) in edges for p in group.parent_latent]]
        assert len(kept) == min(len(group), most)
        assert kept.weight.abs().min() >= group.drop(kept.index).weight.abs().max()
    return edges


def test_lineage_keeps_each_meta_latents_strongest_parents(results, tmp_path, monkeypatch):
    monkeypatch.setattr(explorer_module, "MAX_PARENTS", 2)
    data = _blob(explore(results, tmp_path / "two.html"))
    lineage = pd.read_parquet(results / "sae" / RUN / "decoder" / "depth2" / LINEAGE_FILE)
    assert (lineage[lineage.weight != 0].groupby("meta_latent").size() > 2).any()  # some are cut
    _assert_strongest_parents(results, _depths(data), 2)


def test_each_probe_image_is_embedded_once_as_its_own_pixels(results, explorer):
    data = _blob(explorer)
    first = pd.read_parquet(results / "analysis" / RUN / "depth1" / "latents.parquet")
    tables = [
        pd.read_parquet(results / "analysis" / RUN / mode / "depth2" / "latents.parquet")
        for mode in ("decoder", "activations")
    ]
    rows = {r for t in (first, *tables) for top in t.top_rows for r in top.tolist()}
    assert len(data["images"]) == len(rows)  # once, however many latents, depths and caches (RUN1) show it
    assert all(uri.startswith("data:image/png;base64,") for uri in data["images"])
    image_id, _, _ = _depths(data)["base", 1]["latents"][1]["top"][0]
    png = Image.open(io.BytesIO(base64.b64decode(data["images"][image_id].split(",", 1)[1])))
    pixels = load_dataset(DATASET).images[int(first.top_rows[1][0])][0]
    assert np.array_equal(np.asarray(png), (pixels * 255).round().to(torch.uint8).numpy())


def test_explorer_is_self_contained(explorer):
    text = explorer.read_text()
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)", text)
    assert "__EXPLORER_" not in text and text.isascii()


def test_a_cap_keeps_the_busiest_latents_and_only_lineage_with_both_ends(results, tmp_path):
    data = _blob(explore(results, tmp_path / "capped.html", max_latents_per_depth=4))
    depths = _depths(data)
    shown = {key: {lat["latent"] for lat in r["latents"]} for key, r in depths.items()}
    assert len(shown["base", 1]) == 4 and depths["base", 1]["omitted"] == 20 and 0 not in shown["base", 1]
    for p, m, _ in depths["decoder", 2]["lineage"]:
        assert p in shown["base", 1] and m in shown["decoder", 2]
    with pytest.raises(MetasaeError, match="must be >= 1"):
        explore(results, tmp_path / "none.html", max_latents_per_depth=0)


def test_a_results_folder_without_analyses_is_a_clear_error(tmp_path):
    with pytest.raises(MetasaeError, match="no analysis summaries"):
        explore(tmp_path, tmp_path / "index.html")


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


def test_browser_picks_a_latent_and_follows_its_lineage_and_back(browser, explorer, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    depths = _depths(_blob(explorer))
    depth2 = {lat["latent"]: lat for lat in depths["decoder", 2]["latents"]}
    parents = {}
    for p, m, w in depths["decoder", 2]["lineage"]:
        parents.setdefault(m, []).append((w, p))
    meta = next(m for m, lat in depth2.items() if not lat["dead"] and m in parents)
    parent = max(parents[meta])[1]  # the heaviest parent, the first link shown
    parent_label = depths["base", 1]["latents"][parent]["label"]

    browser.get(explorer.as_uri())
    card = browser.find_element(By.ID, "latent-card")
    assert card.get_attribute("data-depth") == "1" and browser.find_elements(By.CSS_SELECTOR, ".latent-item")

    Select(browser.find_element(By.ID, "select-mode")).select_by_value("decoder")
    _card_shows(browser, mode="decoder", depth=1)
    Select(browser.find_element(By.ID, "select-depth")).select_by_value("2")
    _card_shows(browser, mode="decoder", depth=2)
    browser.find_element(By.CSS_SELECTOR, f'.latent-item[data-latent="{meta}"]').click()
    _card_shows(browser, mode="decoder", depth=2, latent=meta)
    assert f"depth=2&latent={meta}" in browser.current_url
    assert browser.find_element(By.ID, "card-label").text == depth2[meta]["label"]
    assert "%" in browser.find_element(By.ID, "card-stats").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#card-top .top-image img")) == len(depth2[meta]["top"])
    assert browser.find_elements(By.CSS_SELECTOR, "#card-hist .bar")

    links = browser.find_elements(By.CSS_SELECTOR, '#lineage-parents .lineage-link[data-rel="parent"]')
    assert {int(a.get_attribute("data-latent")) for a in links} == {p for _, p in parents[meta]}
    browser.find_element(By.CSS_SELECTOR, f'#lineage-parents .lineage-link[data-latent="{parent}"]').click()
    _card_shows(browser, mode="decoder", depth=1, latent=parent)
    assert browser.find_element(By.ID, "card-depth").text.startswith("depth 1")
    assert browser.find_element(By.ID, "card-label").text == parent_label
    metas = browser.find_elements(By.CSS_SELECTOR, '#lineage-metas .lineage-link[data-rel="meta"]')
    assert meta in {int(a.get_attribute("data-latent")) for a in metas}
    _save_screenshot(browser, tmp_path)

    browser.back()
    _card_shows(browser, mode="decoder", depth=2, latent=meta)
    assert browser.find_element(By.ID, "select-depth").get_attribute("value") == "2"
    assert browser.find_element(By.ID, "card-label").text == depth2[meta]["label"]

    Select(browser.find_element(By.ID, "select-seed")).select_by_value("1")  # a run with depth 1 only
    _card_shows(browser, run=RUN1, depth=1)
    assert [o.text for o in Select(browser.find_element(By.ID, "select-mode")).options] == ["base"]
    assert not browser.find_elements(By.CSS_SELECTOR, ".lineage-link")
    assert browser.get_log("browser") == []  # no script errors, no failed loads
    assert (tmp_path / "explorer.png").stat().st_size > 10_000
