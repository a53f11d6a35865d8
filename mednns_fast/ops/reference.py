"""Pure-PyTorch references of every op: the oracle the fast paths are tested against, never a fast path.

They compute in float64 (or float32 for half types) the plain textbook formula, so they are slow and
memory hungry on purpose: readable first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._checks import (
    check_depthwise_args,
    check_finite,
    check_floating,
    check_gaussian_pair,
    check_js_entries,
    check_js_history,
    check_js_pair,
    check_js_values,
    check_mixed_sum_args,
    check_pool_args,
    check_psd_eigenvalues,
    check_same_device,
    check_same_dtype,
    check_stats_update_args,
)
from ._geometry import strided_side
from ._moments import chan_merge_


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
    # A candidate whose weight is exactly zero (pruned) is not read: NaN or inf in it must not leak.
    terms = [torch.where(wk == 0, 0.0, wk * x.to(acc))
             for wk, x in zip(w.unbind(1 if w.dim() > 1 else 0), xs, strict=True)]
    return torch.stack(terms).sum(0).to(xs[0].dtype)


def multi_depthwise_conv2d(x: torch.Tensor, weights: Sequence[torch.Tensor], dilations: Sequence[int],
                           stride: int = 1, shared_input: bool = True) -> torch.Tensor:
    """J depthwise convolutions, "same" padding d*(k-1)/2, outputs concatenated candidate-major.

    x: [N, C, H, W] (shared_input) or [N, J*C, H, W]; weights[j]: [C, 1, k_j, k_j]. Returns [N, J*C, Ho, Wo],
    Ho = (H - 1) // stride + 1 (0 for an empty side, where conv2d itself would refuse the padding).
    """
    check_depthwise_args(x, weights, dilations, stride, shared_input)
    C = weights[0].shape[0]
    if x.shape[2] == 0 or x.shape[3] == 0:
        ho, wo = strided_side(x.shape[2], stride), strided_side(x.shape[3], stride)
        return x.new_zeros(x.shape[0], len(weights) * C, ho, wo)
    outs = []
    for j, (w, d) in enumerate(zip(weights, dilations)):
        xin = x if shared_input else x[:, j * C:(j + 1) * C]
        pad = d * (w.shape[-1] - 1) // 2
        outs.append(torch.nn.functional.conv2d(xin, w, stride=stride, padding=pad, dilation=d, groups=C))
    return torch.cat(outs, dim=1)


def max_avg_pool3x3(x: torch.Tensor, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 max pool and 3x3 average pool over the window's valid inputs (padding 1) of x [N, C, H, W].

    Returns (out [N, 2C, Ho, Wo]: max in channels [0, C), average in [C, 2C); argmax [N, C, Ho, Wo] uint8,
    the max's tap ky * 3 + kx in its window), Ho = (H - 1) // stride + 1.
    """
    check_pool_args(x, stride)
    N, C, H, W = x.shape
    ho, wo = strided_side(H, stride), strided_side(W, stride)
    if H == 0 or W == 0:
        return x.new_zeros(N, 2 * C, ho, wo), x.new_zeros(N, C, ho, wo, dtype=torch.uint8)
    mx, flat = torch.nn.functional.max_pool2d(x, 3, stride, 1, return_indices=True)
    avg = torch.nn.functional.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    # flat index iy * W + ix -> tap (iy - (oy * stride - 1)) * 3 + (ix - (ox * stride - 1))
    oy = (torch.arange(ho, device=x.device) * stride - 1).view(ho, 1)
    ox = (torch.arange(wo, device=x.device) * stride - 1).view(1, wo)
    tap = (flat.div(W, rounding_mode="floor") - oy) * 3 + (flat.remainder(W) - ox)
    return torch.cat([mx, avg], dim=1), tap.to(torch.uint8)


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
    check_js_entries(torch.broadcast_tensors(p, q)[0], dim, "js_divergence")
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
    check_js_values(p, "js_pairwise: p", from_logits=False)
    check_js_values(q, "js_pairwise: q", from_logits=False)
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
# ---- FID statistics and Frechet distances ----------------------------------------------------------


def feature_stats_update_(mean: torch.Tensor, m2: torch.Tensor, features: torch.Tensor, count: int) -> None:
    """Folds features [n, d] into running statistics of `count` rows in place: mean [d] and m2 [d, d] (sum
    of centred outer products). The batch's mean and centred products in float64 (two passes), then Chan's
    merge. count == 0 overwrites mean and m2."""
    check_stats_update_args(mean, m2, features, count)
    x = features.to(torch.float64)
    n_b = x.shape[0]
    if n_b == 0:
        return
    check_finite(x, "feature_stats_update_: features")
    mean_b = x.mean(0)
    chan_merge_(mean, m2, count, mean_b, (x - mean_b).T @ (x - mean_b), n_b)


def _sqrtm_psd(s: torch.Tensor, name: str) -> torch.Tensor:
    """The symmetric square root of a PSD matrix by its eigendecomposition (rounding negatives clamped)."""
    w, u = torch.linalg.eigh(s)
    check_psd_eigenvalues(w, s, name)
    return (u * w.clamp_min(0).sqrt()) @ u.T


def _trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor, name: str = "sigma1") -> torch.Tensor:
    """tr sqrt(S1 S2) = tr sqrt(R1 S2 R1), R1 = S1^(1/2): the symmetric form, never a complex sqrtm."""
    r1 = _sqrtm_psd(s1, name)
    m = r1 @ s2 @ r1
    return torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> torch.Tensor:
    """||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2) in float64 (a 0-d tensor), clamped at 0."""
    check_gaussian_pair(mu1, sigma1, mu2, sigma2)
    f64 = torch.float64
    s1, s2 = sigma1.to(f64), sigma2.to(f64)
    check_psd_eigenvalues(torch.linalg.eigvalsh(s2), s2, "sigma2")
    diff = mu1.to(f64) - mu2.to(f64)
    return (diff @ diff + s1.trace() + s2.trace() - 2 * _trace_sqrt_product(s1, s2)).clamp_min(0)


def fid_trace_sqrt_pairs(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """T[i, j] = tr sqrt(S_i S_j), S_i = factors[i] factors[i]^T; T[i, i] = tr S_i (factors[i]: [d, r_i])."""
    sigmas = [f.to(torch.float64) @ f.to(torch.float64).T for f in factors]
    n = len(sigmas)
    out = torch.zeros(n, n, dtype=torch.float64, device=factors[0].device)
    for i in range(n):
        out[i, i] = sigmas[i].trace()
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = _trace_sqrt_product(sigmas[i], sigmas[j], f"sigma[{i}]")
    return out


def fid_matrix(stats: Sequence) -> torch.Tensor:
    """D[i, j] = frechet_distance between stats[i] and stats[j] (anything with .mu and .sigma): [N, N].

    A statistic's `factor` (when set) stands for its covariance, sigma = factor @ factor.T, as in the fast
    path: its sigma is then not read."""
    n = len(stats)
    factors = [getattr(s, "factor", None) for s in stats]
    sigmas = [s.sigma if f is None else f.to(torch.float64) @ f.to(torch.float64).T for s, f in zip(stats, factors)]
    out = torch.zeros(n, n, dtype=torch.float64, device=stats[0].mu.device)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = frechet_distance(stats[i].mu, sigmas[i], stats[j].mu, sigmas[j])
    return out
