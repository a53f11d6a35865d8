"""Shared benchmark plumbing: every group has one baseline (extra_info["role"] = "baseline") and the
terminal summary prints each entry's speed-up over it, measured in the same run."""

from __future__ import annotations

import platform

import pytest
import torch


def mark_baseline(benchmark) -> None:
    """Call inside a benchmark to make it the baseline of its group."""
    benchmark.extra_info["role"] = "baseline"


def mark_bandwidth(benchmark, nbytes: int, ceiling: bool = False, scope: str | None = None) -> None:
    """Record the bytes one call must move; `ceiling` marks the machine's copy-bandwidth measurement. With
    `scope` (e.g. a working-set size), entries are compared with the ceiling of the same scope (copy bandwidth
    depends on the size: caches), else with the run's first unscoped ceiling."""
    benchmark.extra_info["bytes"] = int(nbytes)
    if ceiling:
        benchmark.extra_info["bandwidth"] = "ceiling"
    if scope is not None:
        benchmark.extra_info["scope"] = scope


def set_units(benchmark, units: int) -> None:
    """Declare that one call does `units` units of work (e.g. pairs): the summary then compares time per
    unit, so a slow baseline may be timed on a few units and the fast entries on many."""
    benchmark.extra_info["units"] = units


def _per_unit(bench) -> float:
    return bench.stats.median / bench.extra_info.get("units", 1)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = {}
    for bench in session.benchmarks:
        if bench.stats is None or not bench.stats.rounds:
            continue
        groups.setdefault(bench.group or "", []).append(bench)
    tr = terminalreporter
    tr.section("speed-up over each group's baseline (median time per unit of work, same run)")
    tr.write_line(f"machine: {platform.processor() or platform.machine()}, "
                  f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    ceilings: dict[str | None, float] = {}  # scope -> copy bandwidth (bytes/s); the first of each scope
    for bs in groups.values():
        for b in bs:
            if b.extra_info.get("bandwidth") == "ceiling":
                ceilings.setdefault(b.extra_info.get("scope"), b.extra_info["bytes"] / b.stats.median)
    for name, benches in sorted(groups.items()):
        base = [b for b in benches if b.extra_info.get("role") == "baseline"]
        if not base:
            tr.write_line(f"[{name}] (no baseline)")
            continue
        ref = _per_unit(base[0])
        for b in sorted(benches, key=_per_unit):
            extra = "".join(f" {k}={v}" for k, v in b.extra_info.items()
                            if k not in ("role", "bytes", "bandwidth", "scope"))
            if "bytes" in b.extra_info:
                rate = b.extra_info["bytes"] / b.stats.median
                extra += f" {rate / 1e9:.1f} GB/s"
                ceiling = ceilings.get(b.extra_info.get("scope"))
                if ceiling:
                    extra += f" ({100 * rate / ceiling:.0f}% of copy bandwidth)"
            tr.write_line(f"[{name}] {b.name:60s} median {b.stats.median * 1e3:10.3f} ms  "
                          f"x{ref / _per_unit(b):7.2f}{extra}")
