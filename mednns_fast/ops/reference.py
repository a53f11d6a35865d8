"""Pure-PyTorch references of every op: the oracle the fast paths are tested against, never a fast path.

They compute in float64 (or float32 for half types) the plain textbook formula, so they are slow and
memory hungry on purpose: readable first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._checks import check_finite, check_mixed_sum_args


def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def mixed_sum(xs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """sum_k weights[..., k] * xs[k]. xs: K tensors of one shape [B, ...]; weights: [K] or [B, K]."""
    check_mixed_sum_args(xs, weights)
    check_finite(weights, "mixed_sum: weights")
    acc = _opmath(xs[0].dtype)
    w = weights.to(acc)
    if w.dim() == 2:  # one weight row per sample: broadcast over the sample's remaining dims
        w = w.reshape(w.shape + (1,) * (xs[0].dim() - 1))
        terms = [w[:, k] * x.to(acc) for k, x in enumerate(xs)]
    else:
        terms = [w[k] * x.to(acc) for k, x in enumerate(xs)]
    return torch.stack(terms).sum(0).to(xs[0].dtype)


def multi_depthwise_conv2d(x: torch.Tensor, weights: Sequence[torch.Tensor], dilations: Sequence[int],
                           stride: int = 1, shared_input: bool = True) -> torch.Tensor:
    """J depthwise convolutions, "same" padding d*(k-1)/2, outputs concatenated candidate-major.

    x: [N, C, H, W] (shared_input) or [N, J*C, H, W]; weights[j]: [C, 1, k_j, k_j]. Returns [N, J*C, Ho, Wo].
    """
    C = weights[0].shape[0]
    outs = []
    for j, (w, d) in enumerate(zip(weights, dilations)):
        xin = x if shared_input else x[:, j * C:(j + 1) * C]
        pad = d * (w.shape[-1] - 1) // 2
        outs.append(torch.nn.functional.conv2d(xin, w, stride=stride, padding=pad, dilation=d, groups=C))
    return torch.cat(outs, dim=1)
