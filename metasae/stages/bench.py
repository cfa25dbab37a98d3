"""Stage `bench`: run the pytest-benchmark suite in benchmarks/, tabulate each hot path's ratio to its floor,
and fail when a ratio regressed past the baseline's tolerance.

Ratios (ours / floor, both timed in the same run) are what is compared, not seconds, because machines differ.
The suite is the repository's benchmarks/ folder (an editable install or a checkout is assumed).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from metasae.errors import MetasaeError
from metasae.io import provenance, read_json, write_json, write_text

SUITE = Path(__file__).resolve().parents[2] / "benchmarks"  # in a source checkout; a wheel has no suite
BASELINE = SUITE / "baseline.json"


@dataclass
class Row:
    """One benchmark over `repeat` runs of the suite: its ratios to the floor, and what baseline allows."""

    name: str
    ratios: list[float]
    ours_s: float
    floor: str
    floor_s: float
    extra: dict[str, float] = field(default_factory=dict)
    baseline: float | None = None
    limit: float | None = None

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> float:
        """Largest relative deviation of one run's ratio from the median (the noise the tolerance must
        cover)."""
        return max(abs(r / self.ratio - 1) for r in self.ratios)

    @property
    def status(self) -> str:
        if self.limit is None:
            return "new"
        return "REGRESSED" if self.ratio > self.limit else "ok"


def _run_suite(suite: Path, device: str, quick: bool, json_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(suite),
        "--benchmark-only",
        f"--benchmark-json={json_path}",
        "-o",
        "addopts=",
        "-p",
        "no:cacheprovider",
        "-q",
        "--device",
        device,
        *(["--quick"] if quick else []),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise MetasaeError(f"benchmark suite {suite} failed (pytest exit {done.returncode}): {tail}")


def _read_runs(raw: list[dict]) -> list[Row]:
    by_name: dict[str, list[dict]] = {}
    for run in raw:
        for b in run["benchmarks"]:
            if "ratio" not in b["extra_info"]:
                raise MetasaeError(
                    f"benchmark {b['name']}: no ratio in extra_info (time it with the `compare` fixture)"
                )
            by_name.setdefault(b["name"], []).append(b)
    rows = []
    for name, runs in by_name.items():
        info = [b["extra_info"] for b in runs]
        extra_keys = [k for k in info[0] if k.startswith("vs_") or k == "items_per_s"]
        rows.append(
            Row(
                name,
                [i["ratio"] for i in info],
                statistics.median(b["stats"]["median"] for b in runs),
                info[0]["floor"],
                statistics.median(i["floor_median_s"] for i in info),
                {k: statistics.median(i[k] for i in info) for k in extra_keys},
            )
        )
    return rows


def _check(rows: list[Row], baseline: dict, device: str, tolerance: float) -> None:
    accepted = baseline.get("ratios", {}).get(device, {})
    for row in rows:
        if row.name in accepted:
            row.baseline = accepted[row.name]
            row.limit = row.baseline * (1 + tolerance)


def table(rows: list[Row], device: str, tolerance: float) -> str:
    """A Markdown table: one row per benchmark, ours and floor medians, the ratio and what the baseline
    allows."""
    lines = [
        f"Benchmarks on {device}; ratio = median(ours) / median(floor) over the runs; limit = baseline x "
        f"(1 + {tolerance:g}).",
        "",
        "| benchmark | ours ms | floor | floor ms | ratio | spread | baseline | limit | "
        "vs torch addmm | vs dense | items/s | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        lines.append(
            f"| {r.name} | {r.ours_s * 1e3:.1f} | {r.floor} | {r.floor_s * 1e3:.2f} | {r.ratio:.3g} | "
            f"{r.spread:.1%} | {fmt(r.baseline, '.3g')} | {fmt(r.limit, '.3g')} | "
            f"{fmt(r.extra.get('vs_torch_addmm'), '.2f')} | {fmt(r.extra.get('vs_dense'), '.2f')} | "
            f"{fmt(r.extra.get('items_per_s'), ',.0f')} | {r.status} |"
        )
    return "\n".join(lines) + "\n"


def run_bench(
    out_dir: str | Path,
    device: str = "cpu",
    quick: bool = False,
    repeat: int = 1,
    baseline_path: str | Path = BASELINE,
    tolerance: float | None = None,
    update_baseline: bool = False,
    suite: str | Path = SUITE,
) -> list[Row]:
    """Run the suite `repeat` times; write out_dir/{name}.json, {name}.raw.json and {name}.md (name = device,
    plus `-quick`); then either store the median ratios as the baseline, or fail on a regressed ratio."""
    if repeat < 1:
        raise MetasaeError(f"--repeat {repeat}: must be >= 1")
    out_dir, baseline_path, suite = Path(out_dir), Path(baseline_path), Path(suite)
    baseline: dict[str, Any] = read_json(baseline_path) if baseline_path.is_file() else {}
    tol = tolerance if tolerance is not None else baseline.get("tolerance")
    if tol is None or tol < 0:
        raise MetasaeError(f"{baseline_path}: no 'tolerance' (>= 0) and no --tolerance given")
    raw = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            path = Path(tmp) / f"run{i}.json"
            _run_suite(suite, device, quick, path)
            if path.is_file() and path.stat().st_size:  # empty when every benchmark was skipped
                raw.append(read_json(path))
    rows = _read_runs(raw)
    if not rows:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"metasae bench: --device {device}: CUDA is not available here; every benchmark skipped")
            return []
        raise MetasaeError(
            f"benchmark suite {suite} ran no benchmark on {device} (all deselected or skipped)"
        )
    _check(rows, baseline, device.split(":")[0], tol)
    name = device.replace(":", "") + ("-quick" if quick else "")
    text = table(rows, device, tol)
    write_json(out_dir / f"{name}.raw.json", raw)
    write_json(
        out_dir / f"{name}.json",
        {
            "device": device,
            "quick": quick,
            "repeat": repeat,
            "tolerance": tol,
            "baseline": str(baseline_path),
            "benchmarks": [
                {
                    "name": r.name,
                    "ratio": r.ratio,
                    "ratios": r.ratios,
                    "spread": r.spread,
                    "ours_s": r.ours_s,
                    "floor": r.floor,
                    "floor_s": r.floor_s,
                    **r.extra,
                    "baseline": r.baseline,
                    "limit": r.limit,
                    "status": r.status,
                }
                for r in rows
            ],
            "provenance": provenance({"device": device, "quick": quick, "repeat": repeat}),
        },
    )
    write_text(out_dir / f"{name}.md", text)
    print(text, end="")
    if update_baseline:
        ratios = baseline.setdefault("ratios", {}).setdefault(device.split(":")[0], {})
        ratios.update({r.name: r.ratio for r in rows})
        baseline.setdefault("tolerance", tol)
        write_json(baseline_path, baseline)
        return rows
    regressed = [r for r in rows if r.status == "REGRESSED"]
    if regressed:
        worst = ", ".join(
            f"{r.name} ratio {r.ratio:.3g} > limit {r.limit:.3g} (baseline {r.baseline:.3g})"
            for r in regressed
        )
        raise MetasaeError(
            f"{len(regressed)} benchmark(s) regressed beyond tolerance {tol:g} of {baseline_path}: "
            f"{worst}; table: {out_dir / (name + '.md')}"
        )
    return rows
