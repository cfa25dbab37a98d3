"""metasae bench: ratio bookkeeping against hand-made pytest-benchmark records, and one end-to-end run of a
tiny suite (the real conftest, sleeps with a known 2:1 ratio) through pass, regression and baseline update."""

from __future__ import annotations

import shutil

import pytest

from metasae.errors import MetasaeError
from metasae.io import read_json, write_json
from metasae.stages.bench import SUITE, _check, _read_runs, run_bench, table


def _record(name: str, ratio: float, median: float = 2.0, **extra: float) -> dict:
    return {
        "name": name,
        "stats": {"median": median},
        "extra_info": {"floor": "matmul", "floor_median_s": median / ratio, "ratio": ratio, **extra},
    }


def test_read_runs_takes_medians_over_runs_and_spread_is_the_worst_deviation():
    raw = [{"benchmarks": [_record("a", r, vs_dense=d)]} for r, d in ((2.0, 0.5), (3.0, 0.7), (2.5, 0.6))]
    (row,) = _read_runs(raw)
    assert row.ratio == 2.5 and row.extra["vs_dense"] == 0.6
    assert row.spread == pytest.approx(0.2)  # |2.0 / 2.5 - 1| = |3.0 / 2.5 - 1| = 0.2
    assert row.status == "new"


def test_check_sets_limits_from_baseline_and_flags_only_rises():
    rows = _read_runs([{"benchmarks": [_record("slow", 13.0), _record("fast", 5.0), _record("new", 1.0)]}])
    _check(rows, {"ratios": {"cpu": {"slow": 10.0, "fast": 10.0}}}, "cpu", 0.25)
    status = {r.name: (r.limit, r.status) for r in rows}
    assert status == {"slow": (12.5, "REGRESSED"), "fast": (12.5, "ok"), "new": (None, "new")}
    assert "| slow |" in table(rows, "cpu", 0.25) and "REGRESSED" in table(rows, "cpu", 0.25)


def test_a_record_without_ratio_is_an_error():
    with pytest.raises(MetasaeError, match="no ratio"):
        _read_runs([{"benchmarks": [{"name": "x", "stats": {"median": 1.0}, "extra_info": {}}]}])


TINY = """
import time

import pytest


def test_sleep(compare):
    compare(lambda: time.sleep(0.02), lambda: time.sleep(0.01), "sleep", rounds=3, warmup=0, items=10)


@pytest.mark.quick
def test_quick(compare):
    compare(lambda: time.sleep(0.01), lambda: time.sleep(0.01), "sleep", rounds=3, warmup=0)
"""


@pytest.fixture
def suite(tmp_path):
    folder = tmp_path / "suite"
    folder.mkdir()
    shutil.copy(SUITE / "conftest.py", folder / "conftest.py")
    (folder / "test_tiny.py").write_text(TINY)
    return folder


def test_run_bench_end_to_end(suite, tmp_path):
    baseline = tmp_path / "baseline.json"
    write_json(baseline, {"tolerance": 0.5})
    rows = run_bench(tmp_path / "out", suite=suite, baseline_path=baseline, update_baseline=True)
    ratios = {r.name: r.ratio for r in rows}
    assert ratios["test_sleep"] == pytest.approx(2.0, rel=0.25)
    assert read_json(baseline)["ratios"]["cpu"] == ratios
    written = read_json(tmp_path / "out" / "cpu.json")
    assert {b["name"] for b in written["benchmarks"]} == {"test_sleep", "test_quick"}
    assert (tmp_path / "out" / "cpu.md").read_text().count("| ok |") == 0  # baseline run: all new

    # Against a baseline half as slow the check fails, naming the test.
    write_json(baseline, {"tolerance": 0.2, "ratios": {"cpu": {"test_sleep": 1.0}}})
    with pytest.raises(MetasaeError, match="test_sleep ratio"):
        run_bench(tmp_path / "out", suite=suite, baseline_path=baseline)

    (row,) = run_bench(tmp_path / "out", suite=suite, baseline_path=baseline, quick=True)
    assert row.name == "test_quick" and (tmp_path / "out" / "cpu-quick.json").is_file()


def test_cuda_without_cuda_skips_cleanly(suite, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the skip path is not reachable here")
    assert (
        run_bench(
            tmp_path / "out", suite=suite, device="cuda", tolerance=0.5, baseline_path=tmp_path / "none.json"
        )
        == []
    )
    assert "CUDA is not available" in capsys.readouterr().out
