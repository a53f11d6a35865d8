"""Pure-PyTorch references of every op: the oracle the fast paths are tested against, never a fast path.

They compute in float64 (or float32 for half types) the plain textbook formula, so they are slow and
memory hungry on purpose: readable first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._checks import (
    check_finite,
    check_floating,
    check_js_history,
    check_js_pair,
    check_js_values,
    check_mixed_sum_args,
    check_same_device,
    check_same_dtype,
)


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


# ---- Jensen-Shannon divergence --------------------------------------------------------------------

_LN2 = math.log(2.0)


def js_divergence(p: torch.Tensor, q: torch.Tensor, dim: int = -1, from_logits: bool = False) -> torch.Tensor:
    """JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2, natural log, reduced over `dim`.

    p and q broadcast against each other; with from_logits they are softmaxed over `dim` first.
    0 log 0 = 0; the result is clamped to [0, ln 2] (gradients pass straight through the clamp).

    Gradient convention: dJS/dp_k = 1/2 log(2 p_k / (p_k + q_k)), and 0 where p_k == 0 (where the true
    derivative is -inf). It is what autograd gives here because the logs are detached: the terms that
    differentiating them adds cancel exactly, sum_k p_k d log(2 p_k/s_k) + q_k d log(2 q_k/s_k) = 0, so
    only the first derivative is exact (no double backward).
    """
    check_floating(p, "js_divergence: p")
    check_floating(q, "js_divergence: q")
    check_same_dtype(q, "js_divergence: q", p, "p")
    check_same_device(q, "js_divergence: q", p, "p")
    check_js_values(p, "js_divergence: p", from_logits, dim)
    check_js_values(q, "js_divergence: q", from_logits, dim)
    dtype, acc = p.dtype, _opmath(p.dtype)
    p, q = p.to(acc), q.to(acc)
    if from_logits:
        p, q = torch.softmax(p, dim), torch.softmax(q, dim)
    s = p + q
    log_p = torch.where(p > 0, torch.log(2 * p / s), 0.0).detach()
    log_q = torch.where(q > 0, torch.log(2 * q / s), 0.0).detach()
    js = (0.5 * (p * log_p + q * log_q)).sum(dim)
    js = js + (js.clamp(0.0, _LN2) - js).detach()
    return js.to(dtype)


def js_pairwise(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """out[i, j] = JS(p[i], q[j]) for p [N, K], q [M, K]. Builds [N, M, K]: the oracle, not a fast path."""
    check_js_pair(p, q, "js_pairwise", same_shape=False)
    return js_divergence(p[:, None, :], q[None, :, :], dim=-1)


def js_stability(history: torch.Tensor, window: int, from_logits: bool = True) -> torch.Tensor:
    """out[t, e] = JS(P[t, e], mean(P[t - window : t, e])) for history [T, E, K]; +inf for t < window.

    P is history's softmax over K when from_logits, else history itself (probabilities)."""
    check_js_history(history, window)
    check_js_values(history, "js_stability: history", from_logits)
    T, E, _ = history.shape
    acc = _opmath(history.dtype)
    P = torch.softmax(history.to(acc), -1) if from_logits else history.to(acc)
    out = torch.full((T, E), math.inf, dtype=acc, device=history.device)
    if T > window:
        # windows[t - window] = mean of P[t - window : t] for t = window .. T - 1
        means = P.unfold(0, window, 1).mean(-1)[: T - window]
        out = torch.cat([out[:window], js_divergence(P[window:], means)])
    return out.to(history.dtype)
