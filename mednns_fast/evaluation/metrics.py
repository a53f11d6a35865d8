"""Evaluation metrics of a meta-space: Spearman rank correlation, retrieval regret, epochs to reach a target."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    order = x.argsort(stable=True)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    values, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(ranks))
    return (sums / counts)[inverse]


def spearman(a: Sequence[float] | torch.Tensor, b: Sequence[float] | torch.Tensor) -> float:
    """Spearman's rho of two equally long sequences (NaN when either is constant or shorter than 2)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman: expected two 1-D sequences of one length, got {tuple(a.shape)}, {tuple(b.shape)}")
    if len(a) < 2:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denom) if denom > 0 else float("nan")


def regret(best_accuracy: float, retrieved_accuracy: float) -> float:
    """Best accuracy available in the held-out dataset's own zoo minus that of the retrieved model (>= 0 unless
    the retrieved config beats every config of the zoo)."""
    return float(best_accuracy - retrieved_accuracy)


def epochs_to_reach(curve: Sequence[float], target: float) -> int | None:
    """First epoch index whose accuracy is >= target (curve[0] = before training), or None if never."""
    for epoch, acc in enumerate(curve):
        if acc >= target - 1e-12:
            return epoch
    return None
