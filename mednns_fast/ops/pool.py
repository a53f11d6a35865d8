"""max_avg_pool3x3: the DARTS edge's two pooling candidates (3x3 max, 3x3 average) from one read of the input.

Its output puts both pools side by side in channels, so the fused MixedOp normalises them with one BatchNorm
call; the max pool's argmax is one byte per output (its tap in the 3x3 window), not ATen's int64 index.
The family's Python side: the public wrapper, its argument checks, the pure-PyTorch reference and the
`OpSpec` (fake kernels and the autograd formula).
"""

from __future__ import annotations

import torch

from ._backend import kernel
from ._checks import check_floating, check_int
from ._geometry import strided_side
from ._spec import OpSpec, define

__all__ = ["max_avg_pool3x3"]


def max_avg_pool3x3(x: torch.Tensor, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.max_pool2d(x, 3, stride, 1)`` and ``F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)`` in one pass.

    Args:
        x: ``[N, C, H, W]`` floating point. stride: >= 1, shared by both pools.

    Returns:
        ``(out, argmax)``: out ``[N, 2C, Ho, Wo]`` with the max pool in channels ``[0, C)`` and the average
        pool in ``[C, 2C)``; argmax ``[N, C, Ho, Wo]`` uint8, the max's tap ``ky * 3 + kx`` in its window
        (ATen's choice: the first largest value, or the last NaN). ``Ho = (H - 1) // stride + 1``.
        Differentiable in x (argmax is not).
    """
    check_pool_args(x, stride)
    return kernel("max_avg_pool3x3", x.device)(x, int(stride))


def check_pool_args(x: torch.Tensor, stride: int) -> None:
    op = "max_avg_pool3x3"
    check_floating(x, f"{op}: x")
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be [N, C, H, W], got shape {tuple(x.shape)}")
    check_int(stride, f"{op}: stride", minimum=1)


def reference_max_avg_pool3x3(x: torch.Tensor, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
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


def _setup_context(ctx, inputs, output) -> None:
    x, stride = inputs
    ctx.input_size, ctx.stride = list(x.shape), stride
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _backward_with(ops):
    def backward(ctx, grad: torch.Tensor, _grad_argmax):
        (argmax,) = ctx.saved_tensors
        return ops.max_avg_pool3x3_backward(grad.contiguous(), argmax, ctx.input_size, ctx.stride), None

    return backward


def _fake(x, stride):
    check_pool_args(x, stride)
    N, C, H, W = x.shape
    ho, wo = strided_side(H, stride), strided_side(W, stride)
    return x.new_empty(N, 2 * C, ho, wo), x.new_empty(N, C, ho, wo, dtype=torch.uint8)


def _backward_fake(grad, argmax, input_size, stride):
    return grad.new_empty(input_size)


SPECS = (
    define(OpSpec("max_avg_pool3x3", reference_max_avg_pool3x3, fake=_fake, backward_with=_backward_with,
                  setup_context=_setup_context, backward_fake=_backward_fake)),
)
