"""Statistics the studies share: the paired bootstrap interval of a mean difference."""

from __future__ import annotations

import statistics

import torch

__all__ = ["paired_bootstrap"]


def paired_bootstrap(a: dict, b: dict, n: int = 2000, seed: int = 0, scale: float = 100.0) -> dict:
    """Paired per-unit difference a - b with a seeded bootstrap 95 % interval.

    a, b: unit id -> that unit's value in each seed's run (same order of seeds in both). Per unit the mean over
    seeds of the difference (NaN pairs skipped), times `scale` (points); the interval resamples the units (the
    level that carries the noise: test cases, held-out datasets, ...). Returns {"mean", "lo", "hi", "cases",
    "per_case"}."""
    cases = sorted(set(a) & set(b))
    per_case = []
    for c in cases:
        d = [x - y for x, y in zip(a[c], b[c], strict=True) if x == x and y == y]
        if d:
            per_case.append(scale * statistics.fmean(d))
    if not per_case:
        return {"mean": None, "lo": None, "hi": None, "cases": 0, "per_case": []}
    t = torch.tensor(per_case, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(t), (n, len(t)), generator=gen)
    boot = t[idx].mean(1)
    return {"mean": float(t.mean()), "lo": float(torch.quantile(boot, 0.025)), "hi": float(torch.quantile(boot, 0.975)),
            "cases": len(per_case), "per_case": per_case}
