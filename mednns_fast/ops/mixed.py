"""mixed_sum: the weighted sum of a DARTS edge's candidate outputs, in one pass.

The whole Python side of the family: the public wrapper, its argument checks, the pure-PyTorch reference
and the `OpSpec` (fake kernels and the autograd formula shared by the C++ and Triton ops).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from ._backend import kernel
from ._checks import (
    check_finite,
    check_floating,
    check_same_device,
    check_same_dtype,
    checks_are_immediate,
    opmath,
)
from ._spec import OpSpec, define

__all__ = ["mixed_sum"]


def mixed_sum(xs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Return ``sum_k weights[..., k] * xs[k]`` without stacking the inputs.

    Args:
        xs: K tensors of one shape ``[B, ...]``, one dtype (float32/float64/bfloat16/float16), one device.
            Non-contiguous inputs are accepted (channel slices are read in place).
        weights: ``[K]`` (one weight per candidate) or ``[B, K]`` (one row per sample), floating point,
            finite. Candidates whose weight is exactly zero are not read.

    Returns:
        A contiguous tensor of the inputs' shape and dtype; half types accumulate in float32.
    """
    xs = list(xs)
    if not isinstance(weights, torch.Tensor):
        raise ValueError(f"mixed_sum: weights must be a tensor, got {type(weights).__name__}")
    for k, x in enumerate(xs):  # the schema's Tensor[] would refuse them with a TypeError naming no entry
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"mixed_sum: xs[{k}] must be a tensor, got {type(x).__name__}")
    device = xs[0].device if xs and isinstance(xs[0], torch.Tensor) else weights.device
    if device.type != "cpu" and checks_are_immediate(weights):  # debug mode: the kernels assert asynchronously
        check_finite(weights, "mixed_sum: weights")
    return kernel("mixed_sum", device)(xs, weights)


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
        check_floating(x, f"mixed_sum: xs[{k}]")
        check_same_dtype(x, f"mixed_sum: xs[{k}]", xs[0], "xs[0]")
        check_same_device(x, f"mixed_sum: xs[{k}]", xs[0], "xs[0]")
        if x.shape != xs[0].shape:
            raise ValueError(f"mixed_sum: xs[{k}] has shape {tuple(x.shape)} but xs[0] has shape "
                             f"{tuple(xs[0].shape)}; all candidates must have one shape")
    if weights.dim() == 2 and (xs[0].dim() < 1 or xs[0].shape[0] != weights.shape[0]):
        raise ValueError(f"mixed_sum: weights is [B, K] with B={weights.shape[0]} so xs must have B rows in "
                         f"dim 0, got shape {tuple(xs[0].shape)}")


def reference_mixed_sum(xs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """sum_k weights[..., k] * xs[k]. xs: K tensors of one shape [B, ...]; weights: [K] or [B, K]."""
    check_mixed_sum_args(xs, weights)
    check_finite(weights, "mixed_sum: weights")
    acc = opmath(xs[0].dtype)
    w = weights.to(acc)
    if w.dim() == 2:  # one weight row per sample: broadcast over the sample's remaining dims
        w = w.reshape(w.shape + (1,) * (xs[0].dim() - 1))
    # A candidate whose weight is exactly zero (pruned) is not read: NaN or inf in it must not leak.
    terms = [torch.where(wk == 0, 0.0, wk * x.to(acc))
             for wk, x in zip(w.unbind(1 if w.dim() > 1 else 0), xs, strict=True)]
    return torch.stack(terms).sum(0).to(xs[0].dtype)


def _setup_context(ctx, inputs, output) -> None:
    xs, weights = inputs
    ctx.xs_need_grad = [x.requires_grad for x in xs]
    ctx.weights_need_grad = weights.requires_grad
    # xs are needed only for the weights' gradient: don't keep them alive otherwise.
    ctx.save_for_backward(weights, *(xs if weights.requires_grad else ()))
    ctx.num_xs = len(xs)


def _backward_with(ops):
    """The autograd formula of the mixed_sum op of namespace `ops` (C++ or Triton)."""

    def backward(ctx, grad: torch.Tensor):
        weights, *saved = ctx.saved_tensors
        # Without a weights gradient the inputs' values are unused: pass the gradient as a stand-in.
        xs = saved if saved else [grad] * ctx.num_xs
        grad_xs, grad_w = ops.mixed_sum_backward(grad, xs, weights, ctx.xs_need_grad, ctx.weights_need_grad)
        grad_xs = [g if need else None for g, need in zip(grad_xs, ctx.xs_need_grad, strict=True)]
        return grad_xs, (grad_w if ctx.weights_need_grad else None)

    return backward


def _fake(xs, weights):
    check_mixed_sum_args(xs, weights)
    return torch.empty(xs[0].shape, dtype=xs[0].dtype, device=xs[0].device)


def _backward_fake(grad, xs, weights, xs_need_grad, weights_need_grad):
    check_mixed_sum_args(xs, weights)
    grad_xs = [torch.empty_like(grad, memory_format=torch.contiguous_format) if need
               else grad.new_empty(0) for need in xs_need_grad]
    grad_w = torch.empty_like(weights) if weights_need_grad else weights.new_empty(0)
    return grad_xs, grad_w


def _autocast(xs, weights):
    """Under autocast a DARTS edge's candidates come out in different dtypes (an identity keeps float32,
    a conv gives bfloat16): sum them in the widest one, as the naive ``sum(w[k] * x_k)`` promotes."""
    dtype = functools.reduce(torch.promote_types, [x.dtype for x in xs])
    return [x.to(dtype) for x in xs], weights


SPECS = (
    define(OpSpec("mixed_sum", reference_mixed_sum, fake=_fake, backward_with=_backward_with,
                  setup_context=_setup_context, backward_fake=_backward_fake, autocast=_autocast)),
)
