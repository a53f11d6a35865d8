"""Shared benchmark plumbing: every group has one baseline (extra_info["role"] = "baseline") and the
terminal summary prints each entry's speed-up over it, measured in the same run."""

from __future__ import annotations

import platform

import pytest
import torch


def mark_baseline(benchmark) -> None:
    """Call inside a benchmark to make it the baseline of its group."""
    benchmark.extra_info["role"] = "baseline"


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
    tr.section("speed-up over each group's baseline (median time, same run)")
    tr.write_line(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                  f"torch {torch.__version__}")
    for name, benches in sorted(groups.items()):
        base = [b for b in benches if b.extra_info.get("role") == "baseline"]
        if not base:
            tr.write_line(f"[{name}] (no baseline)")
            continue
        ref = base[0].stats.median
        for b in sorted(benches, key=lambda b: b.stats.median):
            extra = "".join(f" {k}={v}" for k, v in b.extra_info.items() if k != "role")
            tr.write_line(f"[{name}] {b.name:60s} median {b.stats.median * 1e3:10.3f} ms  "
                          f"x{ref / b.stats.median:7.2f}{extra}")
