"""The study explorer: one self-contained HTML file (no server, no network) to browse every analysed depth.

A researcher picks run (classifier/seed/probe/layer/sae) x mode x depth, reads each latent's top images,
density, purity and label histogram, and follows its lineage (parent latents, meta-latents, siblings)
across depths. Everything the page shows is one JSON blob embedded in `explorer_template.html`; probe images
are small PNG data-URIs, each encoded once and referenced by id, so the file opens offline from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from PIL import Image

from metasae.data import load_dataset
from metasae.errors import MetasaeError
from metasae.io import read_json, write_text
from metasae.layout import BASE_MODE, LATENTS_FILE, MANIFEST_FILE, SUMMARY_FILE, parse_summary_path
from metasae.stack import Depth

TEMPLATE = "explorer_template.html"
DATA_SLOT = "__EXPLORER_DATA__"
TITLE_SLOT = "__EXPLORER_TITLE__"
MAX_PARENTS = 8  # lineage edges kept per meta-latent, the strongest
MAX_IMAGE_SIDE = 64  # larger probe images are shrunk: the page shows thumbnails
SUMMARY_KEYS = (
    "n_images",
    "n_latents",
    "alive_latents",
    "purity_mean",
    "mean_active_per_image",
    "stack_fvu",
    "spliced_accuracy",
    "loss_recovered",
    "stop_reason",
)  # the depth line above the list


def _num(x: float) -> float | None:
    """4 significant digits (the page shows no more; it keeps the file small); NaN becomes null."""
    x = float(x)
    return None if math.isnan(x) else float(f"{x:.4g}")


def png_data_uri(image: torch.Tensor) -> str:
    """A [C, H, W] float image in [0, 1] as a PNG data-URI (RGB for 3 channels, else grey)."""
    pixels = image.clamp(0, 1) * 255
    pixels = pixels.permute(1, 2, 0) if pixels.shape[0] == 3 else pixels.mean(0)
    picture = Image.fromarray(pixels.round().to(torch.uint8).numpy())  # H x W x 3: RGB, H x W: grey
    picture.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class ImageTable:
    """Probe images shared by every depth of every run: a dataset is loaded once however many caches were
    made from it (cache rows are dataset rows, in order), and an image is encoded once however many latents
    show it."""

    data_dir: Path | None
    uris: list[str] = field(default_factory=list)
    _ids: dict[tuple[str, int], int] = field(default_factory=dict)
    _refs: dict[Path, str] = field(default_factory=dict)  # activation cache -> its dataset reference
    _datasets: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # (images, index)

    def _dataset_ref(self, acts_dir: Path) -> str:
        if acts_dir not in self._refs:
            manifest = read_json(acts_dir / MANIFEST_FILE)
            ref = manifest["dataset"]
            if ref not in self._datasets:
                data = load_dataset(ref, self.data_dir)
                self._datasets[ref] = (data.images, data.index)
            if len(self._datasets[ref][1]) != manifest["n"]:
                raise MetasaeError(
                    f"dataset {ref!r} has {len(self._datasets[ref][1])} images but the cache "
                    f"{acts_dir} has {manifest['n']} rows; re-cache the activations"
                )
            self._refs[acts_dir] = ref
        return self._refs[acts_dir]

    def ids(self, acts_dir: Path, rows: list[int], indices: list[int]) -> list[int]:
        """Image ids of cache rows, checked against the dataset indices the analysis recorded for them."""
        ref = self._dataset_ref(acts_dir)
        images, index = self._datasets[ref]
        if index[rows].tolist() != list(indices):
            raise MetasaeError(
                f"cache {acts_dir}: rows {rows} are not images {list(indices)} of {ref!r}; "
                "the analysis and the dataset disagree"
            )
        out = []
        for row in rows:
            if (ref, row) not in self._ids:
                self._ids[ref, row] = len(self.uris)
                self.uris.append(png_data_uri(images[row]))
            out.append(self._ids[ref, row])
        return out


def _kept(table: pd.DataFrame, cap: int | None) -> pd.DataFrame:
    """At most `cap` latents, the alive and most often active first (dead ones are rarely worth the bytes)."""
    if cap is None or len(table) <= cap:
        return table
    return table.sort_values(["dead", "n_active", "latent"], ascending=[True, False, True]).head(cap)


def _latent(row: Any, top_ids: list[int]) -> dict:
    return {
        "latent": int(row.latent),
        "label": row.auto_label,
        "dead": bool(row.dead),
        "density": _num(row.density),
        "n_active": int(row.n_active),
        "purity": _num(row.purity),
        "entropy": _num(row.entropy_bits),
        "mean_act": _num(row.mean_act_when_active),
        "max_act": _num(row.max_act),
        "parent_cos": _num(row.parent_max_cosine),
        "hist": json.loads(row.top_label_hist),
        "top": [
            [i, _num(v), int(y)] for i, v, y in zip(top_ids, row.top_values, row.top_labels, strict=True)
        ],
    }


def _lineage(sae: Depth, shown: pd.Series) -> list[list]:
    """[parent latent, meta-latent, weight] edges of the shown meta-latents: the MAX_PARENTS strongest
    non-zero ones of each (a ReLU meta-SAE links every latent to thousands of parents); none at depth 1."""
    table = sae.lineage
    if table is None:
        return []
    table = table[(table.weight != 0) & table.meta_latent.isin(shown)]
    strongest = (
        table.assign(strength=table.weight.abs())
        .sort_values(["meta_latent", "strength", "parent_latent"], ascending=[True, False, True])
        .groupby("meta_latent")
        .head(MAX_PARENTS)
    )
    columns = strongest[["parent_latent", "meta_latent", "weight"]]
    return [[int(p), int(m), _num(w)] for p, m, w in columns.itertuples(index=False, name=None)]


def _depth_record(
    summary_path: Path, where: dict, results: Path, images: ImageTable, cap: int | None
) -> dict:
    """One depth as the page needs it; a stopped or collapsed depth keeps its status and reason only."""
    summary = read_json(summary_path)
    record = {
        "mode": where["mode"] or BASE_MODE,
        "depth": where["depth"],
        "status": summary.get("status"),
        "summary": {k: summary.get(k) for k in SUMMARY_KEYS},
        "label_names": summary.get("label_names", []),
        "latents": [],
        "lineage": [],
        "omitted": 0,
    }
    if record["status"] != "analysed":
        return record
    sae = Depth.load(results / "sae" / summary_path.parent.relative_to(results / "analysis"))
    table = pd.read_parquet(summary_path.parent / LATENTS_FILE)
    kept = _kept(table, cap).sort_values("latent")
    record["latents"] = [
        _latent(row, images.ids(sae.acts_dir, row.top_rows.tolist(), row.top_indices.tolist()))
        for row in kept.itertuples(index=False)
    ]
    record["lineage"] = _lineage(sae, kept["latent"])
    record["omitted"] = len(table) - len(kept)
    return record


def _drop_dangling_edges(depths: list[dict]) -> None:
    """Keep the lineage edges whose two latents are both on the page (a cap may leave some out), so every
    lineage link has a target."""
    shown = {(r["mode"], r["depth"]): {lat["latent"] for lat in r["latents"]} for r in depths}
    for r in depths:
        parents = shown.get((BASE_MODE if r["depth"] == 2 else r["mode"], r["depth"] - 1), set())
        metas = shown[r["mode"], r["depth"]]
        r["lineage"] = [edge for edge in r["lineage"] if edge[0] in parents and edge[1] in metas]


def _run_key(where: dict) -> str:
    return f"{where['model']}/seed{where['seed']}/{where['dataset']}/{where['layer']}/{where['sae']}"


def collect(results: Path, data_dir: Path | None = None, max_latents_per_depth: int | None = None) -> dict:
    """Everything the page shows: runs with their depths, latents and lineage, and the image table."""
    results = Path(results)
    root = results / "analysis"
    hidden = lambda p: any(part.startswith(".") for part in p.relative_to(root).parts)  # noqa: E731
    paths = sorted(p for p in root.rglob(SUMMARY_FILE) if not hidden(p))  # not a killed stage's .partial/
    if not paths:
        raise MetasaeError(f"{results / 'analysis'}: no analysis summaries (run the analyse stage first)")
    images = ImageTable(data_dir)
    runs: dict[str, dict] = {}
    for path in paths:
        where = parse_summary_path(path)
        run = runs.setdefault(
            _run_key(where),
            {
                "id": _run_key(where),
                "classifier": where["model"],
                "seed": where["seed"],
                "probe": where["dataset"],
                "layer": where["layer"],
                "sae": where["sae"],
                "depths": [],
            },
        )
        run["depths"].append(_depth_record(path, where, results, images, max_latents_per_depth))
    for run in runs.values():
        run["depths"].sort(key=lambda r: (r["depth"], r["mode"]))
        _drop_dangling_edges(run["depths"])
    return {"version": 1, "runs": list(runs.values()), "images": images.uris}


def render(data: dict, title: str) -> str:
    """The template with the data blob and title filled in; `</` is escaped so that the JSON cannot end its
    script element early."""
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    template = files("metasae").joinpath(TEMPLATE).read_text(encoding="utf-8")
    title = html.escape(title).encode("ascii", "xmlcharrefreplace").decode()  # ASCII, like the JSON blob
    return template.replace(TITLE_SLOT, title).replace(DATA_SLOT, blob)


def build_explorer(
    results: Path, out_html: Path, data_dir: Path | None = None, max_latents_per_depth: int | None = None
) -> Path:
    """Write the explorer of a results folder to out_html (atomically) and return its path."""
    if max_latents_per_depth is not None and max_latents_per_depth < 1:
        raise MetasaeError(f"max_latents_per_depth={max_latents_per_depth}: must be >= 1")
    data = collect(Path(results), data_dir, max_latents_per_depth)
    out_html = Path(out_html)
    write_text(out_html, render(data, f"metasae explorer: {Path(results).resolve().name}"))
    return out_html
