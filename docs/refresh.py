"""Refresh the README's headline from a finished real study: the data it used, its TL;DR and two of its
figures, all read from the study's results folder (nothing typed by hand).

    python docs/refresh.py results_mnist        # after: snakemake --cores all --configfile config/mnist.yaml

Writes docs/headline_*.png (small PNGs) and rewrites the README between its `headline` markers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIGURES = {  # a main-text figure of the report (report/figures/main-<stem>.png) -> (file under docs/, alt)
    "purity_mean_vs_depth": (
        "headline_purity.png",
        "Mean label purity of latents' top images vs depth, with each dataset's chance level",
    ),
    "stack_fvu_vs_depth": ("headline_stack_fvu.png", "FVU of the layer rebuilt from each depth vs depth"),
}
MAX_WIDTH = 900  # pixels: small enough for the README, large enough to read
START = "<!-- headline:start (written by `python docs/refresh.py <results>`; do not edit by hand) -->"
END = "<!-- headline:end -->"


def tldr(report_md: Path) -> str:
    """The TL;DR section of the rendered report's Markdown (its sentences, as the report words them)."""
    text = report_md.read_text()
    if "## TL;DR" not in text:
        sys.exit(f"{report_md}: no TL;DR section (render the report first)")
    return text.split("## TL;DR", 1)[1].split("\n## ", 1)[0].strip()


def data_used(study: dict) -> str:
    """Which data the study ran on: each classifier's training set and each probe, real or stand-in."""
    config = study.get("config", {})
    kinds = {d["name"]: ("real" if d["is_real"] else "embedded stand-in") for d in study.get("datasets", [])}
    classifiers = ", ".join(
        f"`{name}` on `{clf['train']}` (tested on `{clf['test']}`)"
        for name, clf in config.get("classifiers", {}).items()
    )
    probes = ", ".join(
        f"`{name}` = `{ref}` ({kinds.get(name, 'not run')})" for name, ref in config.get("probes", {}).items()
    )
    where = f" from `{config['data_dir']}`" if config.get("data_dir") else ""
    return f"**Data{where}:** classifiers {classifiers}; probes {probes}."


def small_png(source: Path, target: Path) -> None:
    """A copy at most MAX_WIDTH wide, palette-quantised (a plot has few colours), for the repository."""
    image = Image.open(source).convert("RGB")
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
    image.quantize(colors=64).save(target, optimize=True)


def write_between_markers(start: str, end: str, parts: list[str]) -> None:
    """Replace the README's text from the marker `start` (matched up to its parenthesis) to `end` with
    `start`, the parts and `end`, blank lines between; exits naming the markers when the README lacks
    them."""
    readme = README.read_text()
    pattern = re.compile(re.escape(start.split(" (")[0]) + r".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        sys.exit(f"{README}: no markers {start.split(' (')[0]} ... {end}")
    block = "\n\n".join([start, *parts, end])
    README.write_text(pattern.sub(lambda _: block, readme, count=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the real study's results folder (e.g. results_mnist)")
    results = parser.parse_args().results
    study = json.loads((results / "summary" / "study.json").read_text())
    figures = []
    for stem, (name, alt) in FIGURES.items():
        source = results / "report" / "figures" / f"main-{stem}.png"
        if not source.is_file():
            sys.exit(f"{source}: missing (run the study to the end first)")
        small_png(source, ROOT / "docs" / name)
        figures.append(f"![{alt}](docs/{name})")
    write_between_markers(START, END, [data_used(study), tldr(results / "report" / "index.md"), *figures])
    print(f"README headline refreshed from {results}; figures in docs/")


if __name__ == "__main__":
    main()
