"""Jensen-Shannon divergences: elementwise over rows, all pairs of two sets, and the stability of a
trajectory of distributions (IAC-LTH's criterion).

Conventions, shared by every backend: natural log; the divergence JS(p, q) = 1/2 KL(p || m) +
1/2 KL(q || m) with m = (p + q) / 2 (scipy's ``jensenshannon`` returns its square root); 0 log 0 = 0;
results clamped to [0, ln 2]. Rows are taken as given (not renormalised). With ``from_logits`` the
softmax is fused into the kernel and a -inf logit is a probability of exactly 0 (a masked candidate).

Gradients: dJS/dp_k = 1/2 log(2 p_k / (p_k + q_k)) where p_k > 0, and 0 where p_k == 0 (the true
one-sided derivative is -inf there: zero entries are treated as outside the support). Through logits
this changes nothing, as softmax multiplies that entry's gradient by p_k = 0 anyway. The reference
(``reference.js_divergence``) defines the same values. First derivatives only (no double backward).

Each op's `OpSpec` (fake kernels, and the autograd formula shared by the C++ ops torch.ops.mednns_fast.js_*
and their Triton twins torch.ops.mednns_fast_triton.js_*) sits beside the public wrappers.
"""

from __future__ import annotations

import torch

from . import reference
from ._backend import kernel
from ._checks import (
    check_floating,
    check_js_entries,
    check_js_history,
    check_js_pair,
    check_same_device,
    check_same_dtype,
)
from ._spec import OpSpec, define


def js_divergence(p: torch.Tensor, q: torch.Tensor, dim: int = -1, from_logits: bool = False) -> torch.Tensor:
    """Jensen-Shannon divergence between p and q along ``dim``, batched over every other dim.

    Args:
        p, q: distributions (or logits) of one floating dtype and device whose shapes broadcast, with
            K >= 1 entries along ``dim``. Probabilities must be finite and >= 0; logits may be -inf
            but not NaN/+inf, and every distribution needs one finite logit.
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
        K * eps (float32: ~1e-6; ``js_divergence`` is more accurate for near-identical rows).
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


def _check_rows(p: torch.Tensor, q: torch.Tensor, op: str) -> None:
    check_js_pair(p, q, op, same_shape=True)
    if p.dim() != 2:
        raise ValueError(f"{op}: p must be 2-D [rows, K], got shape {tuple(p.shape)}")


def _grad_or_empty(need: bool, like: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(like, memory_format=torch.contiguous_format) if need else like.new_empty(0)


def _js_divergence_fake(p, q, from_logits=False):
    _check_rows(p, q, "js_divergence")
    return p.new_empty(p.shape[0])


def _js_divergence_backward_fake(grad, p, q, from_logits, p_needs_grad, q_needs_grad):
    _check_rows(p, q, "js_divergence_backward")
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
    return reference.js_divergence(p, q, -1, from_logits)


SPECS = (
    define(OpSpec("js_divergence", _js_divergence_rows_reference, fake=_js_divergence_fake,
                  backward_with=_js_divergence_backward_with, setup_context=_js_divergence_setup,
                  backward_fake=_js_divergence_backward_fake)),
    define(OpSpec("js_pairwise", reference.js_pairwise, fake=_js_pairwise_fake,
                  backward_with=_js_pairwise_backward_with, setup_context=_js_pairwise_setup,
                  backward_fake=_js_pairwise_backward_fake)),
    define(OpSpec("js_stability", reference.js_stability, fake=_js_stability_fake,
                  backward_with=_js_stability_backward_with, setup_context=_js_stability_setup,
                  backward_fake=_js_stability_backward_fake)),
)
