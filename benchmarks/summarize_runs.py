"""Summarise several runs of a benchmark file: per group and entry, its speed-up over the group's baseline
(median time per unit of work, the baseline of the same run) in every run, then the min and median over
runs. The tables of BENCHMARKS.md come from here.

Usage: python benchmarks/summarize_runs.py run1.json run2.json run3.json
(each from `pytest benchmarks/bench_x.py --benchmark-json=runN.json`).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def _per_unit(bench: dict) -> float:
    return bench["stats"]["median"] / bench.get("extra_info", {}).get("units", 1)


def ratios(path: str) -> dict[str, dict[str, tuple[float, float, dict]]]:
    """group -> entry name -> (speed-up over the group's baseline, median ms per call, extra_info)."""
    with open(path) as f:
        benches = json.load(f)["benchmarks"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for b in benches:
        groups[b["group"] or ""].append(b)
    out: dict[str, dict[str, tuple[float, float, dict]]] = {}
    for name, bs in groups.items():
        base = [b for b in bs if b.get("extra_info", {}).get("role") == "baseline"]
        if not base:
            continue
        ref = _per_unit(base[0])
        out[name] = {b["name"]: (ref / _per_unit(b), b["stats"]["median"] * 1e3, b.get("extra_info", {}))
                     for b in bs}
    return out


def main(paths: list[str]) -> None:
    runs = [ratios(p) for p in paths]
    for group in sorted(set().union(*runs)):
        print(f"\n## {group}")
        print("| entry | speed-up per run | min | median | median ms (last run) | extra |")
        print("|---|---|---|---|---|---|")
        names = sorted(set().union(*(r.get(group, {}) for r in runs)))
        for name in names:
            values = [r[group][name] for r in runs if name in r.get(group, {})]
            xs = [v[0] for v in values]
            extra = {k: v for k, v in values[-1][2].items() if k not in ("role", "bytes", "bandwidth")}
            print(f"| {name} | {' / '.join(f'{x:.2f}x' for x in xs)} | {min(xs):.2f}x | "
                  f"{statistics.median(xs):.2f}x | {values[-1][1]:.2f} | {extra or ''} |")


if __name__ == "__main__":
    main(sys.argv[1:])
