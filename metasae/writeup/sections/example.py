"""One worked example: a depth-1 latent, its decoder-mode meta-latents (depth 2) and their sibling latents,
each with its top images and a link into the explorer, chosen by a rule the text states (`choose`).

It reads the run's depth-1 and depth-2 latents.parquet (analysis/) and depth 2's lineage.parquet (sae/), and
draws the card with the analysis' own lineage-card drawing (`metasae.figures.depth.lineage_card`) from the
probe images, loaded as the explorer loads them (study.json's data_dir).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from metasae.errors import MetasaeError
from metasae.io import read_json
from metasae.layout import LATENTS_FILE, LINEAGE_FILE, MANIFEST_FILE
from metasae.writeup.data import ReportData
from metasae.writeup.format import figure_size, fmt

MODE = "decoder"  # the published meta-SAE method: depth 2 decomposes depth 1's decoder rows
SHOWN = 3  # meta-latents of the example, and siblings per meta-latent, on its card
EXPLORER = "../explorer/index.html"  # the explorer, relative to the report folder
RULE = (
    "among the alive depth-1 latents whose purity lift is above the median, the one that decomposes into "
    "the most alive depth-2 meta-latents (ties: the larger total lineage weight, then the lower index)"
)


@dataclass(frozen=True)
class Example:
    """The chosen latent and what the card shows: `metas` [(meta-latent, weight, [(sibling, weight)])]."""

    run: str
    base: pd.DataFrame  # depth 1's latents.parquet, indexed by latent
    meta: pd.DataFrame  # depth 2's
    latent: int
    metas: list[tuple[int, float, list[tuple[int, float]]]]


def explorer_link(run: str, depth: int, latent: int) -> str:
    """The explorer's address of one latent (its URL-hash state: run, mode, depth, latent)."""
    return f"{EXPLORER}#run={run}&mode={MODE}&depth={depth}&latent={latent}"


def _run(report: ReportData) -> str | None:
    """study.json's headline run where it has a decoder-mode depth 2 with lineage, else the first that has."""

    def usable(run: str) -> bool:
        return (report.results / "sae" / run / MODE / "depth2" / LINEAGE_FILE).is_file() and (
            report.results / "analysis" / run / MODE / "depth2" / LATENTS_FILE
        ).is_file()

    named = report.study.get("headline_run")
    if named and usable(named):
        return named
    found = sorted(report.results.glob(f"sae/*/*/*/*/*/{MODE}/depth2/{LINEAGE_FILE}"))
    runs = [p.parents[2].relative_to(report.results / "sae").as_posix() for p in found]
    return next((r for r in runs if usable(r)), None)


def choose(base: pd.DataFrame, meta: pd.DataFrame, lineage: pd.DataFrame) -> int | None:
    """The example latent by RULE (purity lift orders latents as purity does: chance is one number per
    probe), or None where no depth-1 latent above the median decomposes into an alive meta-latent."""
    alive = base.loc[~base["dead"] & base["purity"].notna()]
    above = alive.loc[alive["purity"] > alive["purity"].median()]
    if above.empty:  # every alive latent equally pure
        above = alive
    edges = lineage.loc[
        (lineage["weight"] != 0)
        & lineage["parent_latent"].isin(above.index)
        & lineage["meta_latent"].isin(meta.index[~meta["dead"]])
    ]
    if edges.empty:
        return None
    ranked = edges.groupby("parent_latent")["weight"].agg(["size", "sum"]).reset_index()
    ranked = ranked.sort_values(
        ["size", "sum", "parent_latent"], ascending=[False, False, True], kind="stable"
    )
    return int(ranked["parent_latent"].iloc[0])


def _strongest(edges: pd.DataFrame, key: str) -> list[tuple[int, float]]:
    """The SHOWN strongest (latent, weight) pairs of `edges` by weight (ties: the lower index)."""
    top = edges.sort_values(["weight", key], ascending=[False, True], kind="stable").head(SHOWN)
    return [(int(i), float(w)) for i, w in zip(top[key], top["weight"], strict=True)]


def find_example(report: ReportData) -> Example | None:
    """The worked example of the study, or None where no run has a decoder-mode depth 2 with lineage."""
    run = _run(report)
    if run is None:
        return None
    paths = {
        "base": report.results / "analysis" / run / "depth1" / LATENTS_FILE,
        "meta": report.results / "analysis" / run / MODE / "depth2" / LATENTS_FILE,
        "lineage": report.results / "sae" / run / MODE / "depth2" / LINEAGE_FILE,
    }
    if not paths["base"].is_file():
        return None
    tables = {k: pd.read_parquet(p) for k, p in paths.items()}
    report.inputs.update(paths.values())
    base, meta = (tables[k].set_index("latent", drop=False) for k in ("base", "meta"))
    lineage = tables["lineage"]
    latent = choose(base, meta, lineage)
    if latent is None:
        return None
    alive_base = set(base.index[~base["dead"]])
    edges = lineage.loc[(lineage["weight"] != 0) & lineage["meta_latent"].isin(meta.index[~meta["dead"]])]
    metas = []
    for m, w in _strongest(edges.loc[edges["parent_latent"] == latent], "meta_latent"):
        siblings = edges.loc[
            (edges["meta_latent"] == m)
            & (edges["parent_latent"] != latent)
            & edges["parent_latent"].isin(alive_base)
        ]
        metas.append((m, w, _strongest(siblings, "parent_latent")))
    return Example(run, base, meta, latent, metas)


def _card(report: ReportData, ex: Example) -> str:
    """The example's card (top images of every latent it names) as a figure line, or why it is not drawn."""
    from metasae.data import load_dataset
    from metasae.figures.depth import ImageRow, lineage_card

    manifest = report.results / "acts" / Path(ex.run).parent / MANIFEST_FILE
    try:
        ref = read_json(manifest)["dataset"]
        data = load_dataset(ref, (report.study.get("config") or {}).get("data_dir"))
    except (MetasaeError, OSError, KeyError) as exc:
        return (
            f"*The card is not drawn: the probe images could not be loaded ({str(exc).splitlines()[0]}).*\n"
        )
    report.inputs.add(manifest)

    def row(table: pd.DataFrame, latent: int, prefix: str) -> ImageRow:
        r = table.loc[latent]
        k = int(sum(v > 0 for v in r["top_values"]))
        title = f"{prefix}latent {latent}\n{r['auto_label']}\npurity {fmt(r['purity'])}"
        return ImageRow(
            title, data.images[list(r["top_rows"][:k])], [f"{v:.2g}" for v in r["top_values"][:k]]
        )

    metas = [
        (
            row(ex.meta, m, f"d2 meta w={w:.2g} "),
            [row(ex.base, s, f"d1 sibling w={sw:.2g} ") for s, sw in sib],
        )
        for m, w, sib in ex.metas
    ]
    report.figures_dir.mkdir(parents=True, exist_ok=True)
    path = report.figures_dir / "example_lineage.png"
    title = f"depth-1 latent {ex.latent}, its depth-2 meta-latents and their siblings ({ex.run})"
    lineage_card(row(ex.base, ex.latent, "d1 "), metas, title, path)
    caption = (
        f"The worked example: depth-1 latent {ex.latent} (top row), each of its strongest meta-latents "
        "(d2, with the lineage weight w) followed by the depth-1 siblings that share it (↳), each with its "
        "top images and their activations. What to see: whether the siblings share something visible "
        "that the meta-latent could stand for."
    )
    return f"![{caption}]({report.figures_dir.name}/{path.name}){figure_size(path)}\n"


def _named(table: pd.DataFrame, latent: int, depth: int, run: str) -> str:
    """A latent as the text names it: linked into the explorer, with its label and purity."""
    r = table.loc[latent]
    link = explorer_link(run, depth, latent)
    return f"[latent {latent}]({link}) ({r['auto_label']}, purity {fmt(r['purity'])})"


def worked_example(report: ReportData) -> str:
    """The example's paragraph (the rule, the latents it names, each linked into the explorer) and card."""
    ex = find_example(report)
    if ex is None:
        return report.skip("the worked example (a decoder-mode depth 2 with lineage)", report.results / "sae")
    lines = [
        f"The example is chosen by rule, not by eye: {RULE}. In run `{ex.run}` that is depth-1 "
        f"{_named(ex.base, ex.latent, 1, ex.run)}. Its strongest meta-latents at depth 2, each with the "
        "depth-1 siblings that share it:\n"
    ]
    for m, w, siblings in ex.metas:
        sibs = ", ".join(_named(ex.base, s, 1, ex.run) for s, _ in siblings) or "no alive sibling"
        lines.append(f"- meta-{_named(ex.meta, m, 2, ex.run)}, weight {fmt(w)}: {sibs}.")
    lines.append(
        "\nEvery latent named here links to the explorer (`explorer/index.html` beside this report), "
        "which shows its top images, label histogram and lineage.\n"
    )
    return "\n".join(lines) + "\n" + _card(report, ex)
