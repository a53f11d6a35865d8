"""FID statistics and exact Fréchet distances.

- `FeatureStats`: streaming mean and covariance of feature rows (C++ kernel, float64, Chan's merge).
- `frechet_distance(mu1, sigma1, mu2, sigma2)`: one pair, exact, differentiable.
- `fid_matrix(stats)`: all pairs of N datasets, each factored once, pairs in parallel (C++ op).
- `fid_from_features(x, y)`: one pair from feature rows (the Gram form when n < dim), differentiable.

The trace term. With factors S1 = A A^T and S2 = B B^T (any A [d, r1], B [d, r2]), the non-zero
eigenvalues of S1 S2 are those of C C^T for C = A^T B, so tr sqrt(S1 S2) = sum of singular values of C:
exact, real, never a complex `sqrtm`. A factor is a Cholesky factor when S is positive definite, the
eigenvectors scaled by sqrt(eigenvalue) keeping eigenvalues above a relative tolerance when it is
singular (rank-revealing), or the centred feature rows themselves when there are fewer rows than dims.
Per pair, the SVD of C when its smaller side is at most `_SVD_MAX_RANK`; above that the cheaper
eigenvalues of the symmetric C C^T (the `R_i S_j R_i` route, formed as L_i^T S_j L_i when both are
Cholesky factors), kept only when their a-posteriori error bound is small (else the SVD decides).
Everything is float64; frechet_distance and fid_from_features take a differentiable torch path when a
gradient is needed, else the C++ pair op like fid_matrix.

The family's whole Python side is here: public API, argument checks, pure-PyTorch references (the
textbook formula through symmetric square roots) and each op's `OpSpec`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from ._backend import choose, kernel
from ._checks import check_finite, check_floating, check_same_device, check_same_dtype, values_readable
from ._moments import chan_merge_
from ._spec import OpSpec, define

__all__ = ["FeatureStats", "GaussianStats", "frechet_distance", "fid_matrix", "fid_from_features"]

F64 = torch.float64
# Smaller side of C = A^T B up to which the SVD route is taken (cheap there, and the most accurate).
_SVD_MAX_RANK = 128
# The symmetric route's error bound must stay below this times tr S1 + tr S2.
_SYM_RTOL = 1e-10
# Eigenvalues below this times d * eps * the largest are rounding noise: the factor drops them.
_RANK_NOISE = 16.0
# Up to this dim fid_matrix factors each covariance on one thread (see _one_thread).
_SERIAL_FACTOR_MAX_DIM = 512


class GaussianStats(NamedTuple):
    """A dataset's feature statistics.

    mu: [d] mean; sigma: [d, d] unbiased covariance (divided by n - 1); n: the number of rows;
    factor: optional [d, r] with factor @ factor.T == sigma (kept by `FeatureStats` when n <= d: the
    centred rows, r = n - 1), which lets `fid_matrix` skip factoring sigma.
    """

    mu: torch.Tensor
    sigma: torch.Tensor
    n: int
    factor: torch.Tensor | None = None


# ---- argument checks -------------------------------------------------------------------------------
# A covariance may be off symmetric or PSD by rounding (float32 storage: about 6e-8 relative per entry);
# beyond these tolerances it is refused as a mistake rather than silently repaired.
SYMMETRY_RTOL = 1e-5  # max |S - S^T| <= SYMMETRY_RTOL * max |S|
PSD_RTOL = 1e-6  # smallest eigenvalue >= -PSD_RTOL * ||S||_F


def check_stats_update_args(mean: torch.Tensor, m2: torch.Tensor, features: torch.Tensor, count: int) -> None:
    op = "feature_stats_update_"
    check_floating(features, f"{op}: features")
    if features.dim() != 2:
        raise ValueError(f"{op}: features must be 2-D, got shape {tuple(features.shape)}")
    if mean.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{op}: mean must be a float64 or float32 tensor")
    if mean.dim() != 1 or m2.dim() != 2:
        raise ValueError(f"{op}: mean must be 1-D and m2 2-D, got shapes {tuple(mean.shape)} and "
                         f"{tuple(m2.shape)}")
    check_same_dtype(m2, f"{op}: m2", mean, "mean")
    check_same_device(mean, f"{op}: mean", m2, "m2")
    check_same_device(features, f"{op}: features", m2, "m2")
    d = mean.shape[0]
    if tuple(m2.shape) != (d, d):
        raise ValueError(f"{op}: m2 must be [{d}, {d}] to match mean [{d}], got shape {tuple(m2.shape)}")
    if features.shape[1] != d:
        raise ValueError(f"{op}: features must be [n, {d}] (the statistics' dim), got shape "
                         f"{tuple(features.shape)}")
    if count < 0:
        raise ValueError(f"{op}: count must be >= 0, got {count}")


def check_pair_factors(factors: Sequence[torch.Tensor], lower: Sequence[bool],
                       sigmas: Sequence[torch.Tensor | None], svd_max_rank: int, sym_rtol: float) -> None:
    op = "fid_trace_sqrt_pairs"
    if len(factors) == 0:
        raise ValueError(f"{op}: factors must hold at least one tensor")
    if len(lower) != len(factors) or len(sigmas) != len(factors):
        raise ValueError(f"{op}: lower and sigmas need one entry per factor ({len(factors)}), got "
                         f"{len(lower)} and {len(sigmas)}")
    if svd_max_rank < 0 or sym_rtol < 0:
        raise ValueError(f"{op}: svd_max_rank and sym_rtol must be >= 0, got {svd_max_rank}, {sym_rtol}")
    for i, f in enumerate(factors):
        check_floating(f, f"{op}: factors[{i}]")
        if f.dim() != 2:
            raise ValueError(f"{op}: factors[{i}] must be 2-D, got shape {tuple(f.shape)}")
        check_same_device(f, f"{op}: factors[{i}]", factors[0], "factors[0]")
        if f.shape[0] != factors[0].shape[0]:
            raise ValueError(f"{op}: factors[{i}] is [{f.shape[0]}, r] but factors[0] is "
                             f"[{factors[0].shape[0]}, r]; all factors need one dim d")
        if lower[i] and f.shape[0] != f.shape[1]:
            raise ValueError(f"{op}: factors[{i}] is marked lower-triangular so it must be square, got shape "
                             f"{tuple(f.shape)}")
        if sigmas[i] is not None:
            check_floating(sigmas[i], f"{op}: sigmas[{i}]")
            check_same_device(sigmas[i], f"{op}: sigmas[{i}]", factors[0], "factors[0]")
            if tuple(sigmas[i].shape) != (f.shape[0], f.shape[0]):
                raise ValueError(f"{op}: sigmas[{i}] must be [{f.shape[0]}, {f.shape[0]}], got shape "
                                 f"{tuple(sigmas[i].shape)}")


def reference_fid_covariance_defects(sigma: torch.Tensor) -> torch.Tensor:
    """float64 [3]: (max |S_ij - S_ji|, max |S_ij|, number of non-finite entries), non-finite entries
    counting as 0 in the maxima. The plain-PyTorch form of the C++ op fid_covariance_defects."""
    finite = torch.isfinite(sigma)
    s = torch.where(finite, sigma, 0).double()
    return torch.stack([(s - s.T).abs().max(), s.abs().max(), (~finite).sum().double()])


def check_square(sigma: torch.Tensor, name: str) -> None:
    check_floating(sigma, name)
    if sigma.dim() != 2 or sigma.shape[0] != sigma.shape[1]:
        raise ValueError(f"{name} must be a square [d, d] matrix, got shape {tuple(sigma.shape)}")


def check_gaussian(mu: torch.Tensor, sigma: torch.Tensor, mu_name: str, sigma_name: str,
                   defects: Callable[[torch.Tensor], torch.Tensor] | None = reference_fid_covariance_defects) -> None:
    """mu [d] and sigma [d, d]: floating, one device, finite, sigma symmetric within SYMMETRY_RTOL.
    `defects` computes the covariance's defects (the fused C++ op where available; by default its plain
    PyTorch form); None checks shapes only."""
    check_floating(mu, mu_name)
    check_floating(sigma, sigma_name)
    check_same_device(sigma, sigma_name, mu, mu_name)
    if mu.dim() != 1:
        raise ValueError(f"{mu_name} must be a 1-D mean vector [d], got shape {tuple(mu.shape)}")
    d = mu.shape[0]
    if d == 0:
        raise ValueError(f"{mu_name} is empty: the feature dim d must be >= 1")
    if tuple(sigma.shape) != (d, d):
        raise ValueError(f"{sigma_name} must be [{d}, {d}] to match {mu_name} [{d}], got shape "
                         f"{tuple(sigma.shape)}")
    check_finite(mu, mu_name)
    if defects is None or not values_readable(sigma):
        return
    asym, top, bad = defects(sigma.detach()).tolist()
    if bad:
        raise ValueError(f"{sigma_name} must be finite but contains {int(bad)} NaN or infinite entries")
    if asym > SYMMETRY_RTOL * top:
        raise ValueError(f"{sigma_name} must be symmetric (a covariance): max |S - S^T| = {asym:.3g} "
                         f"exceeds {SYMMETRY_RTOL:g} * max |S|")


def check_gaussian_pair(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor,
                        defects: Callable[[torch.Tensor], torch.Tensor] = reference_fid_covariance_defects) -> None:
    # Every device first: a meta tensor among real ones is refused before any value is read.
    check_floating(mu1, "mu1")
    for t, name in ((sigma1, "sigma1"), (mu2, "mu2"), (sigma2, "sigma2")):
        check_floating(t, name)
        check_same_device(t, name, mu1, "mu1")
    check_gaussian(mu1, sigma1, "mu1", "sigma1", defects)
    check_gaussian(mu2, sigma2, "mu2", "sigma2", defects)
    check_same_device(mu2, "mu2", mu1, "mu1")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must have one dim d, got shapes {tuple(mu1.shape)} and "
                         f"{tuple(mu2.shape)}")


def check_psd_eigenvalues(w: torch.Tensor, sigma: torch.Tensor, name: str) -> None:
    """Refuses sigma whose eigenvalues w go below -PSD_RTOL * ||sigma||_F (beyond rounding)."""
    if not values_readable(w) or w.numel() == 0:
        return
    floor = -PSD_RTOL * float(torch.linalg.matrix_norm(sigma.detach()))
    smallest = float(w.detach().min())
    if smallest < floor:
        raise ValueError(f"{name} must be positive semi-definite (a covariance): its smallest eigenvalue is "
                         f"{smallest:.3g}, below the tolerance {floor:.3g} (= -{PSD_RTOL:g} * ||S||_F)")


# ---- references ------------------------------------------------------------------------------------


def reference_feature_stats_update_(mean: torch.Tensor, m2: torch.Tensor, features: torch.Tensor,
                                    count: int) -> None:
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


def reference_frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                               sigma2: torch.Tensor) -> torch.Tensor:
    """||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2) in float64 (a 0-d tensor), clamped at 0."""
    check_gaussian_pair(mu1, sigma1, mu2, sigma2)
    f64 = torch.float64
    s1, s2 = sigma1.to(f64), sigma2.to(f64)
    check_psd_eigenvalues(torch.linalg.eigvalsh(s2), s2, "sigma2")
    diff = mu1.to(f64) - mu2.to(f64)
    return (diff @ diff + s1.trace() + s2.trace() - 2 * _trace_sqrt_product(s1, s2)).clamp_min(0)


def reference_fid_trace_sqrt_pairs(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """T[i, j] = tr sqrt(S_i S_j), S_i = factors[i] factors[i]^T; T[i, i] = tr S_i (factors[i]: [d, r_i])."""
    sigmas = [f.to(torch.float64) @ f.to(torch.float64).T for f in factors]
    n = len(sigmas)
    out = torch.zeros(n, n, dtype=torch.float64, device=factors[0].device)
    for i in range(n):
        out[i, i] = sigmas[i].trace()
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = _trace_sqrt_product(sigmas[i], sigmas[j], f"sigma[{i}]")
    return out


def reference_fid_matrix(stats: Sequence) -> torch.Tensor:
    """D[i, j] = frechet_distance between stats[i] and stats[j] (anything with .mu and .sigma): [N, N].

    A statistic's `factor` (when set) stands for its covariance, sigma = factor @ factor.T, as in the fast
    path: its sigma is then not read."""
    n = len(stats)
    factors = [getattr(s, "factor", None) for s in stats]
    sigmas = [s.sigma if f is None else f.to(torch.float64) @ f.to(torch.float64).T for s, f in zip(stats, factors)]
    out = torch.zeros(n, n, dtype=torch.float64, device=stats[0].mu.device)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = reference_frechet_distance(stats[i].mu, sigmas[i], stats[j].mu, sigmas[j])
    return out


# ---- factors and the trace term -------------------------------------------------------------------


def _symmetrised(s: torch.Tensor) -> torch.Tensor:
    """(S + S^T) / 2 where a gradient will flow (so that it is symmetric too), else S itself: the
    factorisations read one triangle, and S was checked symmetric within rounding."""
    return (s + s.T) / 2 if s.requires_grad and torch.is_grad_enabled() else s


def _rank_rtol(d: int) -> float:
    return _RANK_NOISE * max(d, 1) * torch.finfo(F64).eps


class Factor(NamedTuple):
    """A factor l [d, r] of a covariance (l l^T = sigma); lower: l is its square lower-triangular Cholesky
    factor; sigma: the covariance itself where at hand (the pair op then skips work), else None."""

    l: torch.Tensor
    lower: bool = False
    sigma: torch.Tensor | None = None


def _psd_factor(sigma: torch.Tensor, name: str) -> Factor:
    """A Factor of sigma [d, d] (float64): the Cholesky factor when sigma is positive definite with healthy
    pivots, else the eigenvectors scaled by sqrt(eigenvalue), keeping eigenvalues above the rank
    tolerance (rank-revealing). Raises ValueError when sigma is not PSD beyond rounding."""
    d = sigma.shape[0]
    scale = sigma.diagonal().abs().max().detach()
    chol, info = torch.linalg.cholesky_ex(sigma)
    # A tiny pivot means sigma is numerically singular: its rank is better told by eigenvalues.
    if int(info) == 0 and bool(chol.diagonal().square().min() > _rank_rtol(d) * scale):
        return Factor(chol, True, sigma)
    w, u = torch.linalg.eigh(sigma)
    check_psd_eigenvalues(w, sigma, name)
    keep = w > _rank_rtol(d) * w.abs().max().detach()
    return Factor(u[:, keep] * w[keep].sqrt())


def _trace_sqrt_autograd(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """The differentiable form of the C++ op's pair rule (module docstring): SVD of C = a^T b, or the
    eigenvalues of C C^T when the smaller side exceeds _SVD_MAX_RANK and their error bound allows."""
    c = a.T @ b
    small = min(c.shape)
    if small == 0:
        return c.new_zeros(())
    if small > _SVD_MAX_RANK:
        m = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c
        lam = torch.linalg.eigvalsh(m).clamp_min(0)
        with torch.no_grad():
            err = small * torch.finfo(F64).eps * lam.max()
            bound = ((lam + err).sqrt() - (lam - err).clamp_min(0).sqrt()).sum()
        if float(bound) <= _SYM_RTOL * scale:
            return lam.sqrt().sum()
    return torch.linalg.svdvals(c).sum()


def _trace_sqrt(a: Factor, b: Factor, scale: torch.Tensor) -> torch.Tensor:
    """tr sqrt(S_a S_b) from two Factors (float64): the C++ op when no gradient is needed, else its
    differentiable form; scale = tr S_a + tr S_b."""
    if torch.is_grad_enabled() and (a.l.requires_grad or b.l.requires_grad or scale.requires_grad):
        return _trace_sqrt_autograd(a.l, b.l, float(scale.detach()))
    return fid_trace_sqrt_pairs([a, b])[0, 1]


def _centred_rows(x: torch.Tensor) -> torch.Tensor:
    """z [n - 1, d] with z^T z = sum_i (x_i - mean)(x_i - mean)^T, for x [n, d] float64.

    Centring leaves n rows spanning only n - 1 directions; reflecting them (Householder, the all-ones
    direction onto the last row) drops that direction exactly: z_i = c_i + c_n / (sqrt(n) - 1), i < n,
    with c the centred rows. So a factor from rows has no structurally zero singular value.
    """
    n = x.shape[0]
    c = x - x.mean(0)
    return c[:-1] + c[-1] / (math.sqrt(n) - 1)


def _feature_factor(x: torch.Tensor, name: str) -> tuple[torch.Tensor, Factor, torch.Tensor]:
    """(mean [d], Factor, tr sigma) of feature rows x [n, d]: the rows themselves when n - 1 <= d (Gram
    form), else a factor of the covariance."""
    x = x.to(F64)
    n, d = x.shape
    z = _centred_rows(x) / math.sqrt(n - 1)
    trace = z.square().sum()
    if n - 1 <= d:
        return x.mean(0), Factor(z.T), trace
    return x.mean(0), _psd_factor(_symmetrised(z.T @ z), name), trace


def _covariance_defects(sigma: torch.Tensor) -> torch.Tensor:
    """(max |S - S^T|, max |S|, non-finite count): one fused pass (C++ op) where available."""
    return kernel("fid_covariance_defects", sigma.device)(sigma)


def _assemble(diff: torch.Tensor, tr1: torch.Tensor, tr2: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (diff @ diff + tr1 + tr2 - 2 * t).clamp_min(0)


# ---- public distances ---------------------------------------------------------------------------


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> torch.Tensor:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), i.e. the FID of two datasets:
    ``||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)``.

    Args:
        mu1, mu2: [d] means; sigma1, sigma2: [d, d] covariances (symmetric, PSD within rounding; singular
            is fine). Any floating dtype, one device; computed in float64.

    Returns:
        A 0-d float64 tensor >= 0. Differentiable in all four inputs (through Cholesky, eigh and SVD);
        gradients are reliable where those are smooth: distinct eigen/singular values, away from rank
        changes (gradcheck passes on well-separated spectra; degenerate spectra give unstable gradients).

    Raises:
        ValueError: on shape mismatch, non-finite values, a non-symmetric or non-PSD covariance.
    """
    for t, name in ((mu1, "mu1"), (sigma1, "sigma1"), (mu2, "mu2"), (sigma2, "sigma2")):
        check_floating(t, name)  # a list or an integer tensor is refused before anything reads a device
    if choose("frechet_distance", mu1.device) == "reference":
        return reference_frechet_distance(mu1, sigma1, mu2, sigma2)
    check_gaussian_pair(mu1, sigma1, mu2, sigma2, defects=_covariance_defects)
    s1, s2 = _symmetrised(sigma1.to(F64)), _symmetrised(sigma2.to(F64))
    tr1, tr2 = s1.trace(), s2.trace()
    t = _trace_sqrt(_psd_factor(s1, "sigma1"), _psd_factor(s2, "sigma2"), tr1 + tr2)
    return _assemble(mu1.to(F64) - mu2.to(F64), tr1, tr2, t)


def _check_features(x: torch.Tensor, name: str) -> None:
    check_floating(x, name)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be [n, d] feature rows with n >= 2, got shape {tuple(x.shape)}")
    check_finite(x, name)


def fid_from_features(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FID between the feature rows x [n1, d] and y [n2, d] (unbiased covariances), as a 0-d float64 tensor.

    When a set has fewer rows than dims its covariance is never formed: its centred rows are the factor
    (the Gram form), so the pair costs O(d n1 n2) plus an n1 x n2 SVD instead of d x d factorisations.
    Differentiable in x and y. Raises ValueError on shape mismatch or non-finite rows.
    """
    _check_features(x, "x")
    _check_features(y, "y")
    check_same_device(y, "y", x, "x")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have one feature dim, got shapes {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if choose("fid_from_features", x.device) == "reference":
        return reference_fid_from_features(x, y)
    mx, fx, trx = _feature_factor(x, "x")
    my, fy, try_ = _feature_factor(y, "y")
    return _assemble(mx - my, trx, try_, _trace_sqrt(fx, fy, trx + try_))


def _reference_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.to(F64)
    c = x - x.mean(0)
    return x.mean(0), c.T @ c / (x.shape[0] - 1)


def reference_fid_from_features(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    (mx, sx), (my, sy) = (_reference_moments(v) for v in (x, y))
    return reference_frechet_distance(mx, sx, my, sy)


def _check_stats(stats: Sequence[GaussianStats]) -> None:
    if len(stats) == 0:
        raise ValueError("fid_matrix: stats must hold at least one GaussianStats")
    d = None
    for i, s in enumerate(stats):
        if not isinstance(s, GaussianStats):
            raise ValueError(f"fid_matrix: stats[{i}] must be a GaussianStats, got {type(s).__name__}")
        # With a factor, sigma's values are not read (the factor stands for it): only its shape is checked.
        defects = _covariance_defects if s.factor is None else None
        check_gaussian(s.mu, s.sigma, f"stats[{i}].mu", f"stats[{i}].sigma", defects=defects)
        if s.factor is not None:
            if s.factor.dim() != 2 or s.factor.shape[0] != s.mu.shape[0]:
                raise ValueError(f"fid_matrix: stats[{i}].factor must be [d, r] with d={s.mu.shape[0]}, got "
                                 f"shape {tuple(s.factor.shape)}")
            check_same_device(s.factor, f"stats[{i}].factor", s.mu, f"stats[{i}].mu")
            # Its finiteness is checked through its norm, which fid_matrix computes anyway.
        check_same_device(s.mu, f"stats[{i}].mu", stats[0].mu, "stats[0].mu")
        d = s.mu.shape[0] if d is None else d
        if s.mu.shape[0] != d:
            raise ValueError(f"fid_matrix: stats[{i}] has dim {s.mu.shape[0]} but stats[0] has dim {d}")


def fid_matrix(stats: Sequence[GaussianStats]) -> torch.Tensor:
    """All pairwise FIDs of N datasets: a symmetric float64 [N, N] tensor with a zero diagonal.

    Each dataset is factored once (its `factor` when present, in which case its sigma is not read, else
    Cholesky or a rank-revealing eigendecomposition of sigma); then every pair's trace term is computed
    by the cheaper exact route (module docstring), pairs running in parallel in the C++ op
    `fid_trace_sqrt_pairs`. Not differentiable (use `frechet_distance` for gradients). Raises
    ValueError on bad statistics.
    """
    stats = list(stats)
    _check_stats(stats)
    if choose("fid_matrix", stats[0].mu.device) == "reference":
        return reference_fid_matrix(stats)
    with torch.no_grad():
        factors, traces = [], []
        with _one_thread(stats[0].mu):
            for i, s in enumerate(stats):
                if s.factor is None:
                    sigma = s.sigma.to(F64)
                    factors.append(_psd_factor(sigma, f"stats[{i}].sigma"))
                    traces.append(sigma.trace())
                else:
                    factors.append(Factor(s.factor.to(F64)))
                    traces.append(torch.linalg.vector_norm(factors[-1].l).square())
                    if not torch.isfinite(traces[-1]):
                        raise ValueError(f"stats[{i}].factor must be finite but contains NaN or infinity")
        t = fid_trace_sqrt_pairs(factors)
        mu = torch.stack([s.mu.to(F64) for s in stats])
        tr = torch.stack(traces)
        # ||mu_i - mu_j||^2 from the differences (exact where the Gram form cancels), one row at a time.
        sq = torch.stack([(mu - m).square().sum(1) for m in mu])
        upper = (sq + tr[:, None] + tr[None, :] - 2 * t).clamp_min(0).triu(1)
        return upper + upper.T  # exactly symmetric: the sum above rounds differently in its two halves


@contextlib.contextmanager
def _one_thread(like: torch.Tensor) -> Iterator[None]:
    """Intra-op threads set to 1 inside (restored after) for CPU tensors of dim <= _SERIAL_FACTOR_MAX_DIM.

    A Cholesky or eigh of a few hundred rows gains nothing from a second thread, and on a busy machine
    each threaded LAPACK call waits at its barriers for a descheduled thread: six Choleskys at d=256 took
    139 ms with 2 threads against 20 ms with one (2-core VM, load average 7; 3.3 ms quiet). The pairs
    after them run one per thread in the C++ op, which has a single barrier."""
    n = torch.get_num_threads()
    if n == 1 or like.device.type != "cpu" or like.shape[-1] > _SERIAL_FACTOR_MAX_DIM:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def fid_trace_sqrt_pairs(factors: Sequence[Factor]) -> torch.Tensor:
    """T [N, N] float64 with T[i, j] = tr sqrt(S_i S_j), T[i, i] = tr S_i, for S_i = f.l @ f.l.T of each
    Factor: the C++ op (pairs in parallel) or, where it is missing or the backend is "reference", the
    reference."""
    ls, lower, sigmas = [f.l for f in factors], [f.lower for f in factors], [f.sigma for f in factors]
    check_pair_factors(ls, lower, sigmas, _SVD_MAX_RANK, _SYM_RTOL)
    return kernel("fid_trace_sqrt_pairs", ls[0].device)(ls, lower, sigmas, _SVD_MAX_RANK, _SYM_RTOL)


# ---- streaming statistics -------------------------------------------------------------------------


class FeatureStats:
    """Streaming mean and covariance of feature rows [n, dim], accumulated in `dtype` (float64 by default;
    float32 allowed where float64 is slow, at reduced accuracy).

    `update(features)` folds in a batch of any size and floating dtype: its mean and centred products are
    computed in float64 by a C++ kernel (two passes over the batch), then merged by Chan's formula, so
    large offsets (features around 1e4 in float32) cost no accuracy. `merge` combines shards exactly as
    one pass over all rows would; `all_reduce` does it across torch.distributed ranks. While at most
    `dim` rows have been seen the rows themselves are kept too (float64, at most dim x dim values, like
    the covariance), so `finalize` can hand `fid_matrix` an exact low-rank factor.

    State: count (rows), mean [dim], m2 [dim, dim] (sum of centred outer products), rows (or None).
    """

    def __init__(self, dim: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None,
                 keep_rows: bool = True) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"FeatureStats: dim must be a positive int, got {dim!r}")
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"FeatureStats: dtype must be torch.float64 or torch.float32, got {dtype}")
        self.dim = dim
        self.dtype = dtype
        self.count = 0
        self.mean = torch.zeros(dim, dtype=dtype, device=device)
        self.m2 = torch.zeros(dim, dim, dtype=dtype, device=device)
        self.rows: list[torch.Tensor] | None = [] if keep_rows else None

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def update(self, features: torch.Tensor) -> FeatureStats:
        """Fold in features [n, dim] (float32/float64/half, on this statistics' device). Returns self."""
        if not isinstance(features, torch.Tensor):
            raise ValueError(f"FeatureStats.update: features must be a tensor, got {type(features).__name__}")
        features = features.detach()
        kernel("feature_stats_update_", self.device)(self.mean, self.m2, features, self.count)
        self.count += features.shape[0]
        self._keep_rows([features])
        return self

    def _keep_rows(self, new_rows: list[torch.Tensor]) -> None:
        if self.rows is None:
            return
        if self.count > self.dim:
            self.rows = None  # enough rows for a full-rank covariance: the factor comes from sigma instead
        else:
            # Copies: the caller may reuse its feature buffer.
            self.rows.extend([r.to(device=self.device, dtype=F64, copy=True) for r in new_rows if r.shape[0]])

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold in another FeatureStats of the same dim, dtype and device (Chan's parallel formula: the
        result equals one pass over both sets of rows). Returns self."""
        if not isinstance(other, FeatureStats):
            raise ValueError(f"FeatureStats.merge: other must be a FeatureStats, got {type(other).__name__}")
        if other.dim != self.dim or other.dtype != self.dtype or other.device != self.device:
            raise ValueError(f"FeatureStats.merge: other has dim={other.dim}, dtype={other.dtype}, "
                             f"device={other.device} but self has dim={self.dim}, dtype={self.dtype}, "
                             f"device={self.device}")
        if other.count == 0:
            return self
        kept = self.rows is not None and other.rows is not None
        chan_merge_(self.mean, self.m2, self.count, other.mean, other.m2, other.count)
        self.count += other.count
        if not kept:
            self.rows = None
        self._keep_rows(list(other.rows or []))
        return self

    def all_reduce(self, group=None) -> FeatureStats:
        """Combine the statistics of every rank of a torch.distributed group in place (every rank ends with
        the statistics of all rows). Two all-reduces of sums: first sum(count * mean) and the counts give
        the global mean; then each rank's m2 + count (mean - global mean)(mean - global mean)^T sums to
        the global m2 (Chan's formula for many parts). Kept rows are all-gathered while they fit."""
        import torch.distributed as dist

        dev = self.device
        world = dist.get_world_size(group)
        head = torch.cat([self.mean.to(F64) * self.count,
                          torch.tensor([self.count, self.rows is not None], dtype=F64, device=dev)])
        dist.all_reduce(head, group=group)
        n, ranks_keeping = int(round(float(head[-2]))), int(round(float(head[-1])))
        if n == 0:
            return self
        mean = head[:-2] / n
        delta = self.mean.to(F64) - mean
        m2 = self.m2.to(F64) + torch.outer(delta, delta) * self.count
        dist.all_reduce(m2, group=group)
        rows = self._gathered_rows(group, world) if ranks_keeping == world and n <= self.dim else None
        self.mean, self.m2, self.count, self.rows = mean.to(self.dtype), m2.to(self.dtype), n, rows
        return self

    def _gathered_rows(self, group, world: int) -> list[torch.Tensor]:
        import torch.distributed as dist

        counts = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(world)]
        mine = torch.tensor([self.count], dtype=torch.int64, device=self.device)
        dist.all_gather(counts, mine, group=group)
        sizes = [int(c) for c in counts]
        local = torch.zeros(max(sizes), self.dim, dtype=F64, device=self.device)
        if self.count:
            local[: self.count] = torch.cat(self.rows)
        gathered = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(gathered, local, group=group)
        return [g[:s] for g, s in zip(gathered, sizes, strict=True) if s]

    def finalize(self) -> GaussianStats:
        """The statistics so far: GaussianStats(mu, sigma = m2 / (count - 1), count, factor) in this dtype;
        factor [dim, count - 1] when rows were kept (count <= dim), else None. Needs count >= 2."""
        if self.count < 2:
            raise ValueError(f"FeatureStats.finalize needs at least 2 rows for a covariance, got "
                             f"{self.count}")
        sigma = (self.m2 + self.m2.T) * (0.5 / (self.count - 1))
        factor = None
        if self.rows is not None:
            z = _centred_rows(torch.cat(self.rows)) / math.sqrt(self.count - 1)
            factor = z.T.to(self.dtype)
        return GaussianStats(self.mean.clone(), sigma, self.count, factor)

    # ---- persistence ----

    def state_dict(self) -> dict[str, torch.Tensor]:
        """count (int64 scalar), mean, m2 and, when kept, rows [count, dim] (float64)."""
        state = {"count": torch.tensor(self.count, dtype=torch.int64), "mean": self.mean, "m2": self.m2}
        if self.rows is not None:
            state["rows"] = torch.cat(self.rows) if self.rows else torch.zeros(0, self.dim, dtype=F64)
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor],
                        device: torch.device | str | None = None) -> FeatureStats:
        missing = {"count", "mean", "m2"} - set(state)
        if missing:
            raise ValueError(f"FeatureStats state is missing {sorted(missing)}")
        mean, m2 = state["mean"], state["m2"]
        if not isinstance(mean, torch.Tensor) or not isinstance(m2, torch.Tensor):
            raise ValueError(f"FeatureStats state: mean and m2 must be tensors, got {type(mean).__name__} and "
                             f"{type(m2).__name__}")
        if mean.dim() != 1 or tuple(m2.shape) != (mean.shape[0], mean.shape[0]) or m2.dtype != mean.dtype:
            raise ValueError(f"FeatureStats state has mean {tuple(mean.shape)} {mean.dtype} and m2 "
                             f"{tuple(m2.shape)} {m2.dtype}: expected [d] and [d, d] of one dtype")
        count = state["count"]
        if isinstance(count, torch.Tensor):
            if count.numel() != 1 or count.is_floating_point() or count.dtype == torch.bool:
                raise ValueError(f"FeatureStats state: count must be an integer scalar, got {count!r}")
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"FeatureStats state: count must be an int >= 0 (rows seen), got {count!r}")
        if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(m2).all())):
            raise ValueError("FeatureStats state: mean and m2 must be finite but contain NaN or infinity")
        if bool((m2.diagonal() < 0).any()):
            raise ValueError("FeatureStats state: m2 (a sum of centred squares) must have a non-negative "
                             "diagonal, got negative entries")
        out = cls(mean.shape[0], dtype=mean.dtype, device=device, keep_rows="rows" in state)
        out.count = count
        out.mean.copy_(mean)
        out.m2.copy_(m2)
        if "rows" in state:
            rows = state["rows"]
            if tuple(rows.shape) != (out.count, out.dim):
                raise ValueError(f"FeatureStats state has rows {tuple(rows.shape)}, expected "
                                 f"[{out.count}, {out.dim}]")
            out.rows = [rows.to(device=out.device, dtype=F64)] if out.count else []
        return out

    def save(self, path: str | Path) -> None:
        """Write the state to `path`: a `.safetensors` file (needs the `safetensors` package; the tensors
        count, mean, m2 and optionally rows, with metadata format=mednns_fast.FeatureStats/1), or any
        other suffix via torch.save (a dict of the same tensors, loadable with weights_only=True)."""
        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(path), metadata={"format": "mednns_fast.FeatureStats/1"})
        else:
            torch.save(state, path)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> FeatureStats:
        """Read statistics written by `save` (the format is chosen by the suffix, as there)."""
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        return cls.from_state_dict(state, device=device)


# ---- specs ----------------------------------------------------------------------------------------


def _feature_stats_update_fake(mean, m2, features, count):
    check_stats_update_args(mean, m2, features, count)


def _fid_covariance_defects_fake(sigma):
    check_square(sigma, "fid_covariance_defects: sigma")
    return sigma.new_empty(3, dtype=F64)


def _fid_trace_sqrt_pairs_fake(factors, lower, sigmas, svd_max_rank, sym_rtol):
    check_pair_factors(factors, lower, sigmas, svd_max_rank, sym_rtol)
    return factors[0].new_empty(len(factors), len(factors), dtype=F64)


def _fid_trace_sqrt_pairs_reference(factors, lower, sigmas, svd_max_rank, sym_rtol):
    return reference_fid_trace_sqrt_pairs(factors)


SPECS = (
    define(OpSpec("feature_stats_update_", reference_feature_stats_update_, fake=_feature_stats_update_fake,
                  mutates=("mean", "m2"))),
    define(OpSpec("fid_covariance_defects", reference_fid_covariance_defects, fake=_fid_covariance_defects_fake)),
    define(OpSpec("fid_trace_sqrt_pairs", _fid_trace_sqrt_pairs_reference, fake=_fid_trace_sqrt_pairs_fake)),
    # Compositions of the kernels above (their inner ops choose their own backends).
    define(OpSpec("frechet_distance", reference_frechet_distance, composite=True)),
    define(OpSpec("fid_from_features", reference_fid_from_features, composite=True)),
    define(OpSpec("fid_matrix", reference_fid_matrix, composite=True)),
)
