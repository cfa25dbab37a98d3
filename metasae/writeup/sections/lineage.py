"""Appendix F: lineage cards and top-image grids of one run, depth by depth."""

from __future__ import annotations

from pathlib import Path

from metasae.writeup.data import ReportData

LINEAGE_FIGURES = ("lineage_card", "top_images")
MAX_LINEAGE_DEPTHS = 3


def lineage(report: ReportData) -> str:
    """Lineage cards and top-image grids of the run study.json names (`headline_run`), else the first run.

    A run folder holds depth1/ and, per mode, {mode}/depth{d}/
    (analysis/{model}/seed{s}/{probe}/{layer}/{sae}/).
    """
    analysis = report.results / "analysis"
    named = report.study.get("headline_run")
    base = analysis / named if named and (analysis / named).is_dir() else analysis
    figures = [
        p
        for p in base.rglob("depth*/figures/*.png")
        if p.parent.parent.name[5:].isdigit() and p.stem.startswith(LINEAGE_FIGURES)
    ]
    if not figures:
        return report.skip("lineage examples", report.results / "analysis")

    def depth(p: Path) -> int:
        return int(p.parent.parent.name[5:])

    run = (
        base
        if base != analysis
        else min(figures, key=lambda p: (depth(p), p.as_posix())).parent.parent.parent
    )
    out = [f"Examples from run `{report.rel(run)}`.\n"]
    for path in sorted(figures, key=lambda p: (depth(p), p.as_posix())):
        if run in path.parents and depth(path) <= MAX_LINEAGE_DEPTHS:
            where = path.parent.parent.relative_to(run).as_posix()
            out.append(report.figure(path, f"{where}: {path.stem.replace('_', ' ')}."))
    return "\n".join(out)
