"""Shared fixtures of the benchmark suite: device selection, the quick subset, and `compare`, which times a
hot path against its floor in the same run so a regression check can compare machine-independent ratios.

    pytest benchmarks/ --benchmark-only                    # the whole suite on the CPU
    pytest benchmarks/ --benchmark-only --quick            # the CI subset
    pytest benchmarks/ --benchmark-only --device cuda      # the same on a GPU (skips without CUDA)

`metasae bench` wraps these commands and checks the ratios against benchmarks/baseline.json.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import pytest
import torch

from metasae.allocator import tune_cpu_allocator


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default=os.environ.get("BENCH_DEVICE", "cpu"),
        help="torch device of the benchmarks: cpu, cuda, cuda:1 (skipped where CUDA is absent)",
    )
    parser.addoption(
        "--quick", action="store_true", help="run only the benchmarks marked quick (the CI subset)"
    )


def pytest_configure(config: pytest.Config) -> None:
    tune_cpu_allocator()  # as the CLI does: the benchmarks time what a `metasae` process runs
    config.addinivalue_line("markers", "quick: part of the quick subset (metasae bench --quick, CI)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--quick"):
        return
    deselected = [item for item in items if item.get_closest_marker("quick") is None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("quick") is not None]


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


@pytest.fixture(scope="session")
def sync(device: torch.device) -> Callable[[], None]:
    """Waits for queued kernels, so a timer around a GPU call measures the work, not its launch."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


Timed = Callable[[], object]


def _quickest(fn: Timed, budget_s: float = 0.1, most: int = 20) -> float:
    """Fastest of as many calls of a floor as fit in ~budget_s (at most `most`): a single few-millisecond
    timing is mostly scheduler noise, and the floor stands for what the work costs at best."""
    best, calls, began = float("inf"), 0, time.perf_counter()
    while calls < most and (calls == 0 or time.perf_counter() - began < budget_s):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        calls += 1
    return best


@pytest.fixture
def compare(benchmark, sync: Callable[[], None]) -> Callable[..., float]:
    """compare(ours, floor, floor_name, rounds, warmup, refs, items): benchmark `ours`, timing `floor` (and
    any `refs`; the quickest of a few calls when they are short) right before each round so all see the same
    machine load; returns median(ours) / median(floor).

    The ratio goes to extra_info["ratio"] (what baseline.json holds); refs give extra_info["vs_<name>"];
    `items` (images, rows) per call gives a throughput in extra_info["items_per_s"].
    """

    def timed(fn: Timed) -> Timed:
        def run() -> None:
            fn()
            sync()

        return run

    def run(
        ours: Timed,
        floor: Timed,
        floor_name: str,
        rounds: int = 5,
        warmup: int = 1,
        refs: dict[str, Timed] | None = None,
        items: int | None = None,
    ) -> float:
        others = {"floor": floor, **(refs or {})}
        times: dict[str, list[float]] = {name: [] for name in others}

        def setup() -> None:
            for name, fn in others.items():
                times[name].append(_quickest(timed(fn)))

        benchmark.pedantic(timed(ours), setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
        medians = {name: statistics.median(t[warmup:]) for name, t in times.items()}
        ours_median = benchmark.stats.stats.median
        ratio = ours_median / medians["floor"]
        benchmark.extra_info.update({"floor": floor_name, "floor_median_s": medians["floor"], "ratio": ratio})
        for name in refs or {}:
            benchmark.extra_info[f"{name}_median_s"] = medians[name]
            benchmark.extra_info[f"vs_{name}"] = ours_median / medians[name]
        if items:
            benchmark.extra_info["items_per_s"] = items / ours_median
        return ratio

    return run
