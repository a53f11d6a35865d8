"""Pure-PyTorch references of every op: the oracle the fast paths are tested against, never a fast path.

They compute in float64 (or float32 for half types) the plain textbook formula, so they are slow and
memory hungry on purpose: readable first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._checks import (
    check_finite,
    check_gaussian_pair,
    check_mixed_sum_args,
    check_psd_eigenvalues,
    check_stats_update_args,
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
    m2_b = (x - mean_b).T @ (x - mean_b)
    if count == 0:
        mean.copy_(mean_b)
        m2.copy_(m2_b)
        return
    n = count + n_b
    delta = mean_b - mean.to(torch.float64)
    m2.copy_(m2.to(torch.float64) + m2_b + torch.outer(delta, delta) * (count * n_b / n))
    mean.copy_(mean.to(torch.float64) + delta * (n_b / n))


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
    """D[i, j] = frechet_distance between stats[i] and stats[j] (anything with .mu and .sigma): [N, N]."""
    n = len(stats)
    out = torch.zeros(n, n, dtype=torch.float64, device=stats[0].mu.device)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = frechet_distance(stats[i].mu, stats[i].sigma, stats[j].mu, stats[j].sigma)
    return out
