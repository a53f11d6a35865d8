"""Chan's parallel update of streaming moments, shared by FeatureStats, its reference and its Triton path."""

from __future__ import annotations

import torch


def chan_merge_(mean: torch.Tensor, m2: torch.Tensor, count: int,
                mean_b: torch.Tensor, m2_b: torch.Tensor, count_b: int) -> None:
    """In place: the moments (mean [d], centred m2 [d, d]) of `count` rows absorb those of `count_b` more
    rows, as if all rows had been seen in one pass (Chan, Golub & LeVeque). Computed in float64."""
    if count_b == 0:
        return
    if count == 0:
        mean.copy_(mean_b)
        m2.copy_(m2_b)
        return
    n = count + count_b
    delta = mean_b.to(torch.float64) - mean.to(torch.float64)
    m2.copy_(m2.to(torch.float64) + m2_b + torch.outer(delta, delta) * (count * count_b / n))
    mean.copy_(mean.to(torch.float64) + delta * (count_b / n))
