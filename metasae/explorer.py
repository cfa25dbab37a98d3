"""The study explorer: one offline folder (results/explorer/) to browse every latent of every analysed depth.

A researcher picks run (classifier/seed/probe/layer/sae) and depth folder, pages through the depth's
latents, and reads each one like a feature dashboard: top images and samples from the quantile bands of its
activations, its place in the depth's log10-density histogram, its decoder direction's effect on the class
logits, its matched latent in the other seeds, and its lineage (parent latents, meta-latents, siblings).

Layout (it opens from disk, file://, and fetches nothing from a network):
- `index.html`: the page, with the study's index inlined (runs, depths, summaries; no latents);
- `explorer.js`, `explorer.css`: the page's code (package files, copied);
- `data/<depth key>.js`, `data/<image key>.js`: one script per depth and one per probe dataset, each calling
  `explorerData(key, value)`. The page adds a `<script>` tag for the ones it needs when it needs them
  (Chromium blocks fetch() of file:// URLs; script tags load), so the page's memory is bounded by what is
  open, and explore's by one depth at a time.
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

import numpy as np
import pandas as pd
import torch
from PIL import Image

from metasae import explorer_latents as views
from metasae.activations import load_activations
from metasae.data import load_dataset
from metasae.errors import MetasaeError
from metasae.io import read_json, staged_dir, write_text
from metasae.layout import BASE_MODE, LATENTS_FILE, MANIFEST_FILE, SUMMARY_FILE, parse_summary_path
from metasae.models import load_classifier
from metasae.stack import Depth
from metasae.statistics.seed_stability import stability_inputs
from metasae.study import parse_run_sae

TEMPLATE = "explorer_template.html"
STATIC = ("explorer.js", "explorer.css")  # package files under explorer_static/, copied beside index.html
INDEX_SLOT = "__EXPLORER_INDEX__"
TITLE_SLOT = "__EXPLORER_TITLE__"
DATA_DIR = "data"
MAX_EDGES = 16  # lineage edges kept per latent on each side (its strongest parents, its strongest metas)
DENSE_FRACTION = (
    0.5  # a depth is flagged dense when the mean share of its latents active per image exceeds it
)
MAX_IMAGE_SIDE = 64  # larger probe images are shrunk: the page shows thumbnails
SUMMARY_KEYS = (
    "n_images",
    "n_latents",
    "alive_latents",
    "purity_mean",
    "mean_active_per_image",
    "codes_used",
    "stack_fvu",
    "spliced_accuracy",
    "loss_recovered",
    "stop_reason",
)  # the depth line above the list
FIELDS = (
    "latent",
    "label",
    "dead",
    "density",
    "n_active",
    "purity",
    "entropy",
    "mean_act",
    "max_act",
    "parent_cos",
    "hist",
    "top",
    "bands",
    "logits",
    "matches",
)  # one row per latent in a depth's data file, in this order (the page zips them back into objects)


def _num(x: float) -> float | None:
    """4 significant digits (the page shows no more; it keeps the files small); NaN becomes null."""
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
    """Probe images, one table per dataset shared by every depth of every run made from it (cache rows are
    dataset rows, in order): a dataset is loaded once, and an image encoded once however many latents show
    it. Each table becomes one data file, `img<k>`."""

    data_dir: Path | None
    uris: dict[str, list[str]] = field(default_factory=dict)  # dataset reference -> its encoded images
    _ids: dict[tuple[str, int], int] = field(default_factory=dict)
    _refs: dict[Path, str] = field(default_factory=dict)  # activation cache -> its dataset reference
    _datasets: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # (images, index)

    def key(self, acts_dir: Path) -> str:
        """The data-file key of the images of a cache's dataset."""
        return f"img{list(self.uris).index(self._dataset_ref(acts_dir))}"

    def _dataset_ref(self, acts_dir: Path) -> str:
        if acts_dir not in self._refs:
            manifest = read_json(acts_dir / MANIFEST_FILE)
            ref = manifest["dataset"]
            if ref not in self._datasets:
                data = load_dataset(ref, self.data_dir)
                self._datasets[ref] = (data.images, data.index)
                self.uris[ref] = []
            if len(self._datasets[ref][1]) != manifest["n"]:
                raise MetasaeError(
                    f"dataset {ref!r} has {len(self._datasets[ref][1])} images but the cache "
                    f"{acts_dir} has {manifest['n']} rows; re-cache the activations"
                )
            self._refs[acts_dir] = ref
        return self._refs[acts_dir]

    def ids(self, acts_dir: Path, rows: list[int], indices: list[int] | None = None) -> list[int]:
        """Image ids of cache rows, checked against the dataset indices the analysis recorded for them when
        given."""
        ref = self._dataset_ref(acts_dir)
        images, index = self._datasets[ref]
        if indices is not None and index[rows].tolist() != list(indices):
            raise MetasaeError(
                f"cache {acts_dir}: rows {rows} are not images {list(indices)} of {ref!r}; "
                "the analysis and the dataset disagree"
            )
        out = []
        for row in rows:
            if (ref, row) not in self._ids:
                self._ids[ref, row] = len(self.uris[ref])
                self.uris[ref].append(png_data_uri(images[row]))
            out.append(self._ids[ref, row])
        return out


@dataclass
class DepthData:
    """What the explorer reads of a trained depth folder."""

    codes: torch.Tensor  # sparse [probe images, latents]: the depth's image codes (Depth.image_codes)
    directions: torch.Tensor  # unit, in the cached layer's space [latents, d_layer]
    decoder: torch.Tensor  # the SAE's decoder rows as trained [latents, d_in]
    lineage: pd.DataFrame | None
    acts_dir: Path


def read_depth(depth: Depth) -> DepthData:
    """Every read of a depth folder's data goes through here (the codes accessor may change; one place).

    Directions: depth 1 and decoder mode, the decoder rows (a decoder-mode meta-SAE trains on its parent's
    unit decoder rows, so its rows live in the layer space too); activations mode, the latent decoded down
    the stack, decoder(e_j) - decoder(0): what it adds to the layer's reconstruction.
    """
    with torch.no_grad():
        decoder = depth.sae.W_dec.detach()
        if depth.mode == "activations":
            decode = depth.decoder()
            eye = torch.eye(decoder.shape[0])
            directions = decode(eye) - decode(torch.zeros(1, eye.shape[1]))
            directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
        else:
            directions = depth.decoder_rows()
    return DepthData(depth.image_codes, directions, decoder, depth.lineage, depth.acts_dir)


@dataclass
class RunContext:
    """What a run's depths share for the logit effects: the classifier and its cached layer, the layer's
    mean activation over the probe images, the push size (`views.latent_scale` of depth 1), class names and
    probe labels; `note` says why effects are missing when the classifier cannot be loaded."""

    model: torch.nn.Module | None
    layer: str
    mean_act: torch.Tensor
    scale: float
    class_names: list[str]
    labels: torch.Tensor
    note: str | None

    @classmethod
    def of(cls, depth1: DepthData, layer: str) -> RunContext:
        cache = load_activations(depth1.acts_dir)
        scale = views.latent_scale(depth1.codes, depth1.decoder)
        mean_act = cache.acts.mean(0)
        names = list(cache.manifest.get("label_names", []))
        try:
            model, model_cfg = load_classifier(cache.manifest["source_model"])
        except (MetasaeError, KeyError, TypeError, OSError) as exc:
            return cls(None, layer, mean_act, scale, names, cache.labels, f"classifier not loaded: {exc}")
        names = list(model_cfg.get("label_names") or names)
        if len(names) != model.num_classes:
            names = [str(c) for c in range(model.num_classes)]
        return cls(model, layer, mean_act, scale, names, cache.labels, None)

    def effects(self, directions: torch.Tensor) -> np.ndarray | None:
        if self.model is None:
            return None
        image = torch.zeros(1, *self.model.input_shape)
        return views.logit_effects(
            self.model, self.layer, directions, self.mean_act, self.scale, image
        ).numpy()


def _folder(where: dict) -> str:
    """A depth's folder under its run: `depth1`, `decoder/depth2`, ... (the hash's `depth=`)."""
    return f"depth{where['depth']}" if where["depth"] == 1 else f"{where['mode']}/depth{where['depth']}"


def _parent_folder(where: dict) -> str | None:
    d = where["depth"]
    return None if d == 1 else "depth1" if d == 2 else f"{where['mode']}/depth{d - 1}"


def _run_key(where: dict) -> str:
    return f"{where['model']}/seed{where['seed']}/{where['dataset']}/{where['layer']}/{where['sae']}"


def _lineage(table: pd.DataFrame | None) -> dict | None:
    """Edges [parent, meta, weight] of each meta-latent's MAX_EDGES strongest parents and each parent's
    MAX_EDGES strongest meta-latents, with every latent's total count of non-zero edges, so the page can say
    "16 strongest of 254" (a ReLU meta-SAE links a meta-latent to hundreds of parents)."""
    if table is None:
        return None
    table = table[table.weight != 0].assign(strength=lambda t: t.weight.abs())

    def strongest(by: str, other: str) -> pd.DataFrame:
        order = table.sort_values([by, "strength", other], ascending=[True, False, True])
        return order.groupby(by).head(MAX_EDGES)

    kept = pd.concat([strongest("meta_latent", "parent_latent"), strongest("parent_latent", "meta_latent")])
    kept = kept.drop_duplicates(["parent_latent", "meta_latent"]).sort_values(
        ["meta_latent", "parent_latent"]
    )
    columns = kept[["parent_latent", "meta_latent", "weight"]].itertuples(index=False, name=None)
    return {
        "edges": [[int(p), int(m), _num(w)] for p, m, w in columns],
        "n_parents": {int(k): int(v) for k, v in table.groupby("meta_latent").size().items()},
        "n_metas": {int(k): int(v) for k, v in table.groupby("parent_latent").size().items()},
        "kept_per_latent": MAX_EDGES,
    }


def _latent_rows(
    table: pd.DataFrame,
    data: DepthData,
    context: RunContext,
    images: ImageTable,
    matches: dict[int, list],
) -> list[list]:
    """One row per latent (FIELDS order): the analysis statistics, the top images, the quantile-band
    samples, the logit effects and the cross-seed matches."""
    bands = views.band_samples(data.codes)
    effects = context.effects(data.directions)
    labels = context.labels
    rows = []
    for row in table.sort_values("latent").itertuples(index=False):
        j = int(row.latent)
        top_ids = images.ids(data.acts_dir, row.top_rows.tolist(), row.top_indices.tolist())
        band_rows = [
            [
                _num(lo),
                _num(hi),
                [
                    [i, _num(v), int(labels[r])]
                    for i, (r, v) in zip(images.ids(data.acts_dir, [r for r, _ in s]), s, strict=True)
                ],
            ]
            for lo, hi, s in bands[j]
        ]
        rows.append(
            [
                j,
                row.auto_label,
                bool(row.dead),
                _num(row.density),
                int(row.n_active),
                _num(row.purity),
                _num(row.entropy_bits),
                _num(row.mean_act_when_active),
                _num(row.max_act),
                _num(row.parent_max_cosine),
                json.loads(row.top_label_hist),
                [
                    [i, _num(v), int(y)]
                    for i, v, y in zip(top_ids, row.top_values, row.top_labels, strict=True)
                ],
                band_rows,
                None if effects is None else [_num(v) for v in effects[j]],
                [[seed, other, _num(sim)] for seed, other, sim in matches.get(j, [])],
            ]
        )
    return rows


@dataclass
class Entry:
    """An analysed (or stopped) depth: where it is and its summary."""

    summary_path: Path
    where: dict

    @property
    def run(self) -> str:
        return _run_key(self.where)

    @property
    def folder(self) -> str:
        return _folder(self.where)

    @property
    def summary(self) -> dict:
        return read_json(self.summary_path)

    def depth(self, results: Path) -> Depth:
        return Depth.load(results / "sae" / self.summary_path.parent.relative_to(results / "analysis"))


def _entries(results: Path) -> list[Entry]:
    root = results / "analysis"
    hidden = lambda p: any(part.startswith(".") for part in p.relative_to(root).parts)  # noqa: E731
    paths = sorted(p for p in root.rglob(SUMMARY_FILE) if not hidden(p))  # not a killed stage's .partial/
    if not paths:
        raise MetasaeError(f"{root}: no analysis summaries (run the analyse stage first)")
    entries = [Entry(p, parse_summary_path(p)) for p in paths]
    return sorted(entries, key=lambda e: (e.run, e.where["depth"], e.folder))


def _replicate_groups(entries: list[Entry]) -> list[list[Entry]]:
    """Depths that replicate one another, for the seed matches: the SAE seeds of one configuration on one
    classifier (one layer space: decoder rows compare), or, where the study trained one SAE seed, the
    classifier seeds (their codes on the same probe images compare)."""
    analysed = [e for e in entries if e.summary.get("status") == "analysed"]

    def config(e: Entry) -> tuple:
        w, sae = e.where, parse_run_sae(e.where["sae"])
        return (w["model"], w["dataset"], w["layer"], sae.sae, sae.control_width, e.folder)

    def groups(replicate: str) -> list[list[Entry]]:
        found: dict[tuple, list[Entry]] = {}
        for e in analysed:
            other = e.where["seed"] if replicate == "sae" else parse_run_sae(e.where["sae"]).sae_seed
            found.setdefault((*config(e), other), []).append(e)
        return [g for g in found.values() if len(g) > 1]

    return groups("sae") or groups("classifier")


def _all_matches(results: Path, entries: list[Entry]) -> dict[tuple[str, str], tuple[str, dict]]:
    """{(run, folder): (basis, {latent: [(other run, its latent, similarity)]})} for every depth that has
    replicates; each group's depths are read, matched and let go in turn (peak memory: one group)."""
    out = {}
    for group in _replicate_groups(entries):
        depths = {i: e.depth(results) for i, e in enumerate(group)}
        basis, matrices = stability_inputs(depths)
        codes = {i: read_depth(d).codes for i, d in depths.items()}
        alive = {
            i: torch.nonzero(torch.bincount(c.indices()[1], minlength=c.shape[1])).ravel().tolist()
            for i, c in codes.items()
        }
        for i, matched in views.seed_matches(matrices, alive).items():
            named = {j: [(group[k].run, b, sim) for k, b, sim in m] for j, m in matched.items()}
            out[group[i].run, group[i].folder] = (basis, named)
    return out


def _depth_record(entry: Entry, summary: dict, children: list[str]) -> dict:
    """A depth as the index lists it (no latents): its status, summary line, density flag and relatives."""
    n, active = summary.get("n_latents"), summary.get("mean_active_per_image")
    fraction = active / n if n and active is not None else None
    return {
        "folder": entry.folder,
        "mode": entry.where["mode"] or BASE_MODE,
        "depth": entry.where["depth"],
        "status": summary.get("status"),
        "summary": {k: summary.get(k) for k in SUMMARY_KEYS},
        "label_names": summary.get("label_names", []),
        "active_fraction": None if fraction is None else _num(fraction),
        "dense": bool(fraction is not None and fraction > DENSE_FRACTION),
        "parent": _parent_folder(entry.where),
        "children": children,
    }


def _depth_file(
    entry: Entry,
    results: Path,
    context: RunContext,
    images: ImageTable,
    matches: tuple[str, dict] | None,
) -> dict:
    """A depth's data file: every latent's row, the lineage, the density histogram and how the logit
    effects and seed matches were made."""
    data = read_depth(entry.depth(results))
    table = pd.read_parquet(entry.summary_path.parent / LATENTS_FILE)
    basis, matched = matches or (None, {})
    others = sorted({run for m in matched.values() for run, _, _ in m})
    matched = {j: [(others.index(run), b, sim) for run, b, sim in m] for j, m in matched.items()}
    return {
        "fields": FIELDS,
        "rows": _latent_rows(table, data, context, images, matched),
        "lineage": _lineage(data.lineage),
        "density_hist": views.density_histogram(table.sort_values("latent").density.to_numpy()),
        "images": images.key(data.acts_dir),
        "logits": {"classes": context.class_names, "scale": _num(context.scale), "note": context.note},
        "matches": {"basis": basis, "runs": others} if basis else None,
    }


def _script(key: str, value: Any) -> str:
    """A data file: one call of the page's loader; `</` escaped so no string can end a script early."""
    blob = json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f"explorerData({json.dumps(key)},{blob});\n"


def _write_study(results: Path, out: Path, data_dir: Path | None) -> dict:
    """Write every depth's and dataset's data file under out/data/ and return the index."""
    entries = _entries(results)
    matches = _all_matches(results, entries)
    images = ImageTable(data_dir)
    runs: dict[str, dict] = {}
    for run_id in dict.fromkeys(e.run for e in entries):
        mine = [e for e in entries if e.run == run_id]
        w = mine[0].where
        run = runs[run_id] = {
            "id": run_id,
            "classifier": w["model"],
            "seed": w["seed"],
            "probe": w["dataset"],
            "layer": w["layer"],
            "sae": w["sae"],
            "depths": [],
        }
        context = None
        for e in mine:
            summary = e.summary
            children = [c.folder for c in mine if _parent_folder(c.where) == e.folder]
            record = _depth_record(e, summary, children)
            if record["status"] == "analysed":
                if context is None:
                    root = e.depth(results).root
                    context = RunContext.of(read_depth(root), w["layer"])
                key = f"d{sum(len(r['depths']) for r in runs.values())}"
                record["file"] = key
                write_text(
                    out / DATA_DIR / f"{key}.js",
                    _script(key, _depth_file(e, results, context, images, matches.get((run_id, e.folder)))),
                )
            run["depths"].append(record)
    for ref, uris in images.uris.items():
        key = f"img{list(images.uris).index(ref)}"
        write_text(out / DATA_DIR / f"{key}.js", _script(key, uris))
    return {"version": 2, "runs": list(runs.values()), "data_dir": DATA_DIR}


def render(index: dict, title: str) -> str:
    """The template with the index and title filled in; `</` is escaped so that the JSON cannot end its
    script element early."""
    blob = json.dumps(index, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    template = files("metasae").joinpath(TEMPLATE).read_text(encoding="utf-8")
    title = html.escape(title).encode("ascii", "xmlcharrefreplace").decode()  # ASCII, like the JSON blob
    return template.replace(TITLE_SLOT, title).replace(INDEX_SLOT, blob)


def build_explorer(results: Path, out_html: Path, data_dir: Path | None = None) -> Path:
    """Write the explorer folder of a results folder (out_html's folder, staged: all or nothing; it is the
    explorer's own) and return the page's path."""
    results, out_html = Path(results), Path(out_html)
    with staged_dir(out_html.parent, marker=out_html.name) as partial:
        index = _write_study(results, partial, data_dir)
        for name in STATIC:
            with files("metasae").joinpath("explorer_static", name).open("rb") as src:
                (partial / name).write_bytes(src.read())
        write_text(partial / out_html.name, render(index, f"metasae explorer: {results.resolve().name}"))
    return out_html
