"""Argument checks of the Python paths (reference, Triton, fake kernels); the C++ kernels check the same
things in csrc/checks.h. Each error names the argument and what was expected."""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Callable, Iterator, Sequence

import torch


def values_readable(t: torch.Tensor) -> bool:
    """Whether value checks may read t: not while tracing, and never on the meta device (no values there;
    devices and shapes are checked first, so a meta tensor mixed with real ones is refused by those)."""
    return not torch.compiler.is_compiling() and t.device.type != "meta"


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """value as an int; TypeError for a non-integer (1.5, True, a tensor), ValueError outside the range."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, torch.SymInt)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return value


def check_floating(t: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")


def check_same_device(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; move them to one device")


def check_same_dtype(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if t.dtype != ref.dtype:
        raise ValueError(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}; they must match")


# Value checks on GPU tensors: an immediate ValueError needs a host sync, so by default they are asynchronous
# device asserts (the error surfaces at the next sync). MEDNNS_FAST_DEBUG=1 or `set_debug_checks(True)`
# makes them immediate. CPU tensors are always checked at once (no sync to avoid).
_debug_checks = os.environ.get("MEDNNS_FAST_DEBUG", "0") == "1"


def set_debug_checks(enabled: bool) -> None:
    """Immediate (synchronising) value checks on GPU tensors instead of asynchronous device asserts."""
    global _debug_checks
    _debug_checks = bool(enabled)


@contextlib.contextmanager
def debug_checks(enabled: bool = True) -> Iterator[None]:
    """`set_debug_checks` for the duration of a `with` block."""
    previous = _debug_checks
    set_debug_checks(enabled)
    try:
        yield
    finally:
        set_debug_checks(previous)


def checks_are_immediate(t: torch.Tensor) -> bool:
    """Whether a value check on `t` raises at once (CPU, or debug mode) or becomes a device assert."""
    return t.device.type == "cpu" or _debug_checks


def has_no_values(t: torch.Tensor) -> bool:
    """True for meta and fake tensors and while tracing: there are no values to check."""
    from torch._subclasses.fake_tensor import is_fake

    return torch.compiler.is_compiling() or t.device.type == "meta" or is_fake(t)


def _autocasting(t: torch.Tensor) -> bool:
    return t.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(t.device.type)


def check_finite(t: torch.Tensor, name: str) -> None:
    """NaN/inf refused: at once on CPU (and on GPUs in debug mode), as an asynchronous assert on GPUs."""
    if has_no_values(t):
        return
    message = f"{name} must be finite but contains NaN or infinity"
    if not checks_are_immediate(t):
        torch._assert_async(torch.isfinite(t).all(), message)
    elif not bool(torch.isfinite(t).all()):
        raise ValueError(message)


def check_mixed_sum_args(xs: Sequence[torch.Tensor], weights: torch.Tensor) -> None:
    if len(xs) == 0:
        raise ValueError("mixed_sum: xs must hold at least one tensor")
    check_floating(weights, "mixed_sum: weights")
    if weights.dim() not in (1, 2):
        raise ValueError(f"mixed_sum: weights must be [K] or [B, K], got shape {tuple(weights.shape)}")
    if weights.shape[-1] != len(xs):
        raise ValueError(f"mixed_sum: weights has {weights.shape[-1]} entries in its last dim but xs holds "
                         f"{len(xs)} tensors (K mismatch)")
    check_floating(xs[0], "mixed_sum: xs[0]")
    check_same_device(weights, "mixed_sum: weights", xs[0], "xs[0]")
    for k, x in enumerate(xs[1:], start=1):
        check_same_dtype(x, f"mixed_sum: xs[{k}]", xs[0], "xs[0]")
        check_same_device(x, f"mixed_sum: xs[{k}]", xs[0], "xs[0]")
        if x.shape != xs[0].shape:
            raise ValueError(f"mixed_sum: xs[{k}] has shape {tuple(x.shape)} but xs[0] has shape "
                             f"{tuple(xs[0].shape)}; all candidates must have one shape")
    if weights.dim() == 2 and (xs[0].dim() < 1 or xs[0].shape[0] != weights.shape[0]):
        raise ValueError(f"mixed_sum: weights is [B, K] with B={weights.shape[0]} so xs must have B rows in "
                         f"dim 0, got shape {tuple(xs[0].shape)}")


def check_js_pair(p: torch.Tensor, q: torch.Tensor, op: str, same_shape: bool) -> None:
    """Types, devices and shapes of the two distributions' tensors (not their values)."""
    check_floating(p, f"{op}: p")
    check_floating(q, f"{op}: q")
    check_same_dtype(q, f"{op}: q", p, "p")
    check_same_device(q, f"{op}: q", p, "p")
    if same_shape:
        if p.shape != q.shape:
            raise ValueError(f"{op}: p has shape {tuple(p.shape)} but q has shape {tuple(q.shape)}; "
                             "they must match")
    else:
        for name, t in (("p", p), ("q", q)):
            if t.dim() != 2:
                raise ValueError(f"{op}: {name} must be 2-D, got shape {tuple(t.shape)}")
        if p.shape[1] != q.shape[1]:
            raise ValueError(f"{op}: p has K={p.shape[1]} entries per row but q has K={q.shape[1]}")
    if p.dim() == 0 or p.shape[-1] < 1:
        raise ValueError(f"{op}: distributions need K >= 1 entries, got shape {tuple(p.shape)}")


def check_js_values(t: torch.Tensor, name: str, from_logits: bool, dim: int = -1) -> None:
    """Probabilities: finite and >= 0. Logits: no NaN or +inf, and a finite entry in every row along `dim`.

    Reads the values (a device sync on CUDA); skipped while tracing."""
    if not values_readable(t) or t.numel() == 0:
        return
    if from_logits:
        if bool((torch.isnan(t) | torch.isposinf(t)).any()):
            raise ValueError(f"{name} (logits) must not contain NaN or +inf")
        if bool(torch.isneginf(t).all(dim).any()):
            raise ValueError(f"{name} (logits) has a row whose every entry is -inf (an empty distribution)")
    else:
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} (probabilities) must be finite but contains NaN or infinity")
        if bool((t < 0).any()):
            raise ValueError(f"{name} (probabilities) must be non-negative but has negative entries")


def check_js_entries(p: torch.Tensor, dim: int, op: str) -> None:
    """p (already broadcast) has at least one dim, `dim` is in range and holds K >= 1 entries."""
    if p.dim() == 0:
        raise ValueError(f"{op}: p and q must have at least one dim (the distribution's entries)")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -p.dim() <= dim < p.dim():
        raise ValueError(f"{op}: dim={dim!r} is out of range for {p.dim()}-D inputs")
    if p.shape[dim] < 1:
        raise ValueError(f"{op}: distributions need K >= 1 entries along dim={dim}, got shape {tuple(p.shape)}")


def check_js_history(history: torch.Tensor, window: int) -> None:
    check_floating(history, "js_stability: history")
    if history.dim() != 3:
        raise ValueError(f"js_stability: history must be 3-D [T, E, K], got shape {tuple(history.shape)}")
    if history.shape[2] < 1:
        raise ValueError(f"js_stability: history must be [T, E, K] with K >= 1, got shape "
                         f"{tuple(history.shape)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"js_stability: window must be an int >= 1, got {window!r}")


# ---- multi_depthwise_conv2d ---------------------------------------------------------------------------
# The kernels zero-pad each input plane once; a larger padded plane (huge dilations) is refused
# (csrc/depthwise_common.h checks the same).
MAX_PADDED_PLANE = 2**31


def check_depthwise_args(x: torch.Tensor, weights: Sequence[torch.Tensor], dilations: Sequence[int],
                         stride: int, shared_input: bool) -> None:
    op = "multi_depthwise_conv2d"
    check_floating(x, f"{op}: x")
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if len(weights) == 0:
        raise ValueError(f"{op}: weights must hold at least one tensor")
    if len(dilations) != len(weights):
        raise ValueError(f"{op}: dilations has {len(dilations)} entries but weights holds {len(weights)}")
    check_int(stride, f"{op}: stride", minimum=1)
    check_floating(weights[0], f"{op}: weights[0]")
    C, max_pad = weights[0].shape[0], 0
    for j, (w, d) in enumerate(zip(weights, dilations, strict=True)):
        name = f"{op}: weights[{j}]"
        check_floating(w, name)
        check_same_device(w, name, x, "x")
        if not _autocasting(x):  # under autocast the op's spec casts both to the wider dtype first
            check_same_dtype(w, name, x, "x")
        if w.dim() != 4 or w.shape[0] != C or w.shape[1] != 1 or w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0:
            raise ValueError(f"{name} must be [C, 1, k, k] with C={C} and k odd, got shape {tuple(w.shape)}")
        check_int(d, f"{op}: dilations[{j}]", minimum=1, maximum=MAX_PADDED_PLANE)
        max_pad = max(max_pad, d * (w.shape[2] - 1) // 2)
    expected = C if shared_input else len(weights) * C
    if x.shape[1] != expected:
        raise ValueError(f"{op}: x has {x.shape[1]} channels, expected {expected}"
                         + (" (C, shared by every candidate)" if shared_input else " (J*C, one C-slice per candidate)"))
    plane = (x.shape[2] + 2 * max_pad) * (x.shape[3] + 2 * max_pad)
    if plane > MAX_PADDED_PLANE:
        raise ValueError(f"{op}: dilations too large for x of shape {tuple(x.shape)}: the zero-padded plane would "
                         f"hold {plane} elements (at most 2^31); padding is {max_pad}")


def check_pool_args(x: torch.Tensor, stride: int) -> None:
    op = "max_avg_pool3x3"
    check_floating(x, f"{op}: x")
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be [N, C, H, W], got shape {tuple(x.shape)}")
    check_int(stride, f"{op}: stride", minimum=1)


# ---- FID statistics and Frechet distances ----------------------------------------------------------
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


def covariance_defects(sigma: torch.Tensor) -> torch.Tensor:
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
                   defects: Callable[[torch.Tensor], torch.Tensor] | None = covariance_defects) -> None:
    """mu [d] and sigma [d, d]: floating, one device, finite, sigma symmetric within SYMMETRY_RTOL.
    `defects` computes covariance_defects (the fused C++ op where available); None checks shapes only."""
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
                        defects: Callable[[torch.Tensor], torch.Tensor] = covariance_defects) -> None:
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
