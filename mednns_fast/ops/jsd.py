"""Jensen-Shannon divergences: elementwise over rows, all pairs of two sets, and the stability of a
trajectory of distributions (IAC-LTH's criterion).

Conventions, shared by every backend: natural log; the divergence JS(p, q) = 1/2 KL(p || m) +
1/2 KL(q || m) with m = (p + q) / 2 (scipy's ``jensenshannon`` returns its square root); 0 log 0 = 0;
results clamped to [0, ln 2]. Rows are taken as given (not renormalised); probability entries above 2^64
(2^512 in float64) are refused, as their sums would overflow. With ``from_logits`` the
softmax is fused into the kernel and a -inf logit is a probability of exactly 0 (a masked candidate).

Gradients: dJS/dp_k = 1/2 log(2 p_k / (p_k + q_k)) where p_k > 0, and 0 where p_k == 0 (the true
one-sided derivative is -inf there: zero entries are treated as outside the support). Through logits
this changes nothing, as softmax multiplies that entry's gradient by p_k = 0 anyway. The reference
(``reference.js_divergence``) defines the same values. First derivatives only (no double backward).

The family's whole Python side is here: the public wrappers, their argument checks, the pure-PyTorch
references and each op's `OpSpec` (fake kernels, and the autograd formula shared by the C++ ops
torch.ops.mednns_fast.js_* and their Triton twins torch.ops.mednns_fast_triton.js_*).
"""

from __future__ import annotations

import math

import torch

from ._backend import kernel
from ._checks import check_floating, check_same_device, check_same_dtype, opmath, values_readable
from ._spec import OpSpec, define

__all__ = ["js_divergence", "js_pairwise", "js_stability"]


def js_divergence(p: torch.Tensor, q: torch.Tensor, dim: int = -1, from_logits: bool = False) -> torch.Tensor:
    """Jensen-Shannon divergence between p and q along ``dim``, batched over every other dim.

    Args:
        p, q: distributions (or logits) of one floating dtype and device whose shapes broadcast, with
            K >= 1 entries along ``dim``. Probabilities must be finite, >= 0 and at most 2^64 (2^512 in
            float64); logits may be -inf but not NaN/+inf, and every distribution needs one finite
            logit.
        dim: the dim holding the K entries of each distribution.
        from_logits: softmax p and q over ``dim`` first (fused in the kernel).

    Returns:
        The broadcast shape without ``dim``; values in [0, ln 2]. float32 accumulates in float32
        (a few ulps relative, also for near-identical p and q), float64 in float64, half types in float32.
    """
    check_floating(p, "js_divergence: p")
    check_floating(q, "js_divergence: q")
    check_same_dtype(q, "js_divergence: q", p, "p")
    check_same_device(q, "js_divergence: q", p, "p")
    try:
        p, q = torch.broadcast_tensors(p, q)
    except RuntimeError as exc:
        raise ValueError(f"js_divergence: p of shape {tuple(p.shape)} and q of shape {tuple(q.shape)} "
                         "do not broadcast") from exc
    check_js_entries(p, dim, "js_divergence")
    p, q = p.movedim(dim, -1), q.movedim(dim, -1)
    batch, K = p.shape[:-1], p.shape[-1]
    rows = batch.numel()  # not -1: K may be 0
    out = kernel("js_divergence", p.device)(p.reshape(rows, K), q.reshape(rows, K), from_logits)
    return out.reshape(batch)


def js_pairwise(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """All pairwise divergences ``out[i, j] = JS(p[i], q[j])``.

    Args:
        p: ``[N, K]`` probabilities (finite, >= 0), q: ``[M, K]``, one floating dtype and device.

    Returns:
        ``[N, M]`` in p's dtype. The C++ kernel is tiled and computes ``a_i + b_j - 1/2 sum_k s log s``
        (s = p_ik + q_jk, a and b per-row constants): one log per entry and pair, absolute error about
        K * eps (float32: ~1e-6; ``js_divergence`` is more accurate for near-identical rows). Rows of
        mass m far from 1 (unnormalised) lose accuracy in proportion, about K eps m |log m|.
    """
    check_js_pair(p, q, "js_pairwise", same_shape=False)
    return kernel("js_pairwise", p.device)(p, q)


def js_stability(history: torch.Tensor, window: int, from_logits: bool = True) -> torch.Tensor:
    """Per epoch and edge, how far the distribution moved from its recent past.

    ``out[t, e] = JS(P[t, e], mean(P[t - window : t, e]))`` where P is the softmax of ``history`` over K
    (``from_logits``) or ``history`` itself. The first ``window`` epochs have no past: ``+inf``.

    Args:
        history: ``[T, E, K]`` architecture weights (logits; -inf marks a masked candidate) or
            probabilities of E edges over T epochs. Edges with fewer candidates pad with -inf logits
            (or 0 probabilities).
        window: number of previous epochs averaged, >= 1.
        from_logits: whether ``history`` holds logits (default) or probabilities.

    Returns:
        ``[T, E]`` in history's dtype, NaN-free. Cost O(T E K window).
    """
    check_js_history(history, window)
    return kernel("js_stability", history.device)(history, window, from_logits)


# ---- argument checks -------------------------------------------------------------------------------
# Probabilities above 2^64 (2^512 in float64) are refused: beyond, p + q and the s log s sums overflow the
# accumulation type (NaN, or a wrong 0 or ln 2). JS is homogeneous, so the caller can scale such rows down.
TOO_LARGE = ("(probabilities) must be at most 2^64 (2^512 in float64): larger entries overflow the sums; "
             "divide the inputs by one common factor c (JS(p / c, q / c) = JS(p, q) / c)")


def max_probability(dtype: torch.dtype) -> float:
    """The largest probability entry the kernels accept for inputs of `dtype` (csrc/jsd_common.h)."""
    return 2.0**512 if dtype == torch.float64 else 2.0**64


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


def check_js_rows(p: torch.Tensor, q: torch.Tensor, op: str) -> None:
    """Rows [R, K] of one shape, as the js_divergence op (and its backward) takes them."""
    check_js_pair(p, q, op, same_shape=True)
    if p.dim() != 2:
        raise ValueError(f"{op}: p must be 2-D [rows, K], got shape {tuple(p.shape)}")


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
        if bool((t > max_probability(t.dtype)).any()):
            raise ValueError(f"{name} {TOO_LARGE}")


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


# ---- references ------------------------------------------------------------------------------------

_LN2 = math.log(2.0)


def reference_js_divergence(p: torch.Tensor, q: torch.Tensor, dim: int = -1,
                            from_logits: bool = False) -> torch.Tensor:
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
    dtype, acc = p.dtype, opmath(p.dtype)
    p, q = p.to(acc), q.to(acc)
    if from_logits:
        p, q = torch.softmax(p, dim), torch.softmax(q, dim)
    s = p + q
    log_p = torch.where(p > 0, torch.log(2 * p / s), 0.0).detach()
    log_q = torch.where(q > 0, torch.log(2 * q / s), 0.0).detach()
    js = (0.5 * (p * log_p + q * log_q)).sum(dim)
    # The clamped value with the unclamped gradient. Not js + (clamped - js).detach(): where js is far
    # above ln 2 (unnormalised rows) that sum rounds to 0.
    js = js.clamp(0.0, _LN2).detach() + (js - js.detach())
    return js.to(dtype)


def reference_js_pairwise(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """out[i, j] = JS(p[i], q[j]) for p [N, K], q [M, K]. Builds [N, M, K]: the oracle, not a fast path."""
    check_js_pair(p, q, "js_pairwise", same_shape=False)
    check_js_values(p, "js_pairwise: p", from_logits=False)
    check_js_values(q, "js_pairwise: q", from_logits=False)
    return reference_js_divergence(p[:, None, :], q[None, :, :], dim=-1)


def reference_js_stability(history: torch.Tensor, window: int, from_logits: bool = True) -> torch.Tensor:
    """out[t, e] = JS(P[t, e], mean(P[t - window : t, e])) for history [T, E, K]; +inf for t < window.

    P is history's softmax over K when from_logits, else history itself (probabilities)."""
    check_js_history(history, window)
    check_js_values(history, "js_stability: history", from_logits)
    T, E, _ = history.shape
    acc = opmath(history.dtype)
    P = torch.softmax(history.to(acc), -1) if from_logits else history.to(acc)
    out = torch.full((T, E), math.inf, dtype=acc, device=history.device)
    if T > window:
        # windows[t - window] = mean of P[t - window : t] for t = window .. T - 1
        means = P.unfold(0, window, 1).mean(-1)[: T - window]
        out = torch.cat([out[:window], reference_js_divergence(P[window:], means)])
    return out.to(history.dtype)


# ---- autograd (C++ and Triton ops), fake kernels, specs ----------------------------------------------

def _js_divergence_setup(ctx, inputs, output) -> None:
    p, q, from_logits = inputs
    ctx.from_logits = from_logits
    ctx.save_for_backward(p, q)


def _js_divergence_backward_with(ops):
    def backward(ctx, grad: torch.Tensor):
        p, q = ctx.saved_tensors
        need_p, need_q = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gp, gq = ops.js_divergence_backward(grad, p, q, ctx.from_logits, need_p, need_q)
        return (gp if need_p else None), (gq if need_q else None), None

    return backward


def _js_pairwise_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _js_pairwise_backward_with(ops):
    def backward(ctx, grad: torch.Tensor):
        p, q = ctx.saved_tensors
        need_p, need_q = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gp, gq = ops.js_pairwise_backward(grad, p, q, need_p, need_q)
        return (gp if need_p else None), (gq if need_q else None)

    return backward


def _js_stability_setup(ctx, inputs, output) -> None:
    history, ctx.window, ctx.from_logits = inputs
    ctx.save_for_backward(history)


def _js_stability_backward_with(ops):
    def backward(ctx, grad: torch.Tensor):
        (history,) = ctx.saved_tensors
        return ops.js_stability_backward(grad, history, ctx.window, ctx.from_logits), None, None

    return backward


def _grad_or_empty(need: bool, like: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(like, memory_format=torch.contiguous_format) if need else like.new_empty(0)


def _js_divergence_fake(p, q, from_logits=False):
    check_js_rows(p, q, "js_divergence")
    return p.new_empty(p.shape[0])


def _js_divergence_backward_fake(grad, p, q, from_logits, p_needs_grad, q_needs_grad):
    check_js_rows(p, q, "js_divergence_backward")
    return _grad_or_empty(p_needs_grad, p), _grad_or_empty(q_needs_grad, q)


def _js_pairwise_fake(p, q):
    check_js_pair(p, q, "js_pairwise", same_shape=False)
    return p.new_empty(p.shape[0], q.shape[0])


def _js_pairwise_backward_fake(grad, p, q, p_needs_grad, q_needs_grad):
    check_js_pair(p, q, "js_pairwise_backward", same_shape=False)
    return _grad_or_empty(p_needs_grad, p), _grad_or_empty(q_needs_grad, q)


def _js_stability_fake(history, window, from_logits=True):
    check_js_history(history, window)
    return history.new_empty(history.shape[0], history.shape[1])


def _js_stability_backward_fake(grad, history, window, from_logits):
    check_js_history(history, window)
    return torch.empty_like(history, memory_format=torch.contiguous_format)


def _js_divergence_rows_reference(p, q, from_logits=False):
    """The reference with the C++ op's signature: rows [R, K] -> [R]."""
    return reference_js_divergence(p, q, -1, from_logits)


SPECS = (
    define(OpSpec("js_divergence", _js_divergence_rows_reference, fake=_js_divergence_fake,
                  backward_with=_js_divergence_backward_with, setup_context=_js_divergence_setup,
                  backward_fake=_js_divergence_backward_fake)),
    define(OpSpec("js_pairwise", reference_js_pairwise, fake=_js_pairwise_fake,
                  backward_with=_js_pairwise_backward_with, setup_context=_js_pairwise_setup,
                  backward_fake=_js_pairwise_backward_fake)),
    define(OpSpec("js_stability", reference_js_stability, fake=_js_stability_fake,
                  backward_with=_js_stability_backward_with, setup_context=_js_stability_setup,
                  backward_fake=_js_stability_backward_fake)),
)
