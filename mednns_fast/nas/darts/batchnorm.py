"""BatchNorm of several modules at once, over a tensor that concatenates their channels.

Several candidates' BN layers run as one `F.batch_norm` call; their running statistics are read from and
written back to the original modules, so state_dicts and eval-mode behaviour stay those of the modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _cat_or_none(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if any(t is None for t in tensors) else torch.cat(tensors)


def can_group(bns: Sequence[nn.BatchNorm2d]) -> bool:
    """Whether `grouped_batch_norm` can run these modules as one call: they share eps, momentum, affine,
    track_running_stats and training mode."""
    settings = {(b.eps, b.momentum, b.affine, b.track_running_stats, b.training) for b in bns}
    return len(settings) <= 1


def grouped_batch_norm(y: torch.Tensor, bns: Sequence[nn.BatchNorm2d]) -> torch.Tensor:
    """Apply ``bns[j]`` to channels ``[j*C, (j+1)*C)`` of ``y`` [N, J*C, H, W] in one call.

    All modules must share eps, momentum, affine, track_running_stats and training mode (`can_group`).
    """
    if not can_group(bns):
        raise ValueError("grouped_batch_norm: all BatchNorm modules must share their settings and mode")
    first = bns[0]
    track = first.track_running_stats
    use_batch_stats = first.training or not track
    running_mean = _cat_or_none([b.running_mean for b in bns]) if track else None
    running_var = _cat_or_none([b.running_var for b in bns]) if track else None
    momentum = first.momentum
    if first.training and track:
        for b in bns:
            b.num_batches_tracked.add_(1)
        if momentum is None:  # cumulative moving average, as nn.BatchNorm does
            momentum = 1.0 / float(first.num_batches_tracked)
    out = F.batch_norm(
        y, running_mean, running_var,
        _cat_or_none([b.weight for b in bns]), _cat_or_none([b.bias for b in bns]),
        use_batch_stats, momentum if momentum is not None else 0.0, first.eps,
    )
    if first.training and track:
        with torch.no_grad():  # F.batch_norm updated the concatenated copies: hand them back
            for b, m, v in zip(bns, running_mean.chunk(len(bns)), running_var.chunk(len(bns))):
                b.running_mean.copy_(m)
                b.running_var.copy_(v)
    return out
