"""multi_depthwise_conv2d: several candidates' depthwise convolutions from one read of the input.

It is the first stage of the fused DARTS MixedOp (sep_conv / dil_conv candidates share their ReLU'd input).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from . import reference
from ._backend import kernel
from ._checks import check_depthwise_args
from ._geometry import strided_side
from ._spec import OpSpec, define


def multi_depthwise_conv2d(x: torch.Tensor, weights: Sequence[torch.Tensor], dilations: Sequence[int],
                           stride: int = 1, shared_input: bool = True) -> torch.Tensor:
    """Depthwise convolutions of J candidates with "same" padding ``d_j * (k_j - 1) // 2``.

    Args:
        x: ``[N, C, H, W]`` read by every candidate (``shared_input=True``), or ``[N, J*C, H, W]`` whose
            j-th C-channel slice candidate j reads.
        weights: J tensors ``[C, 1, k_j, k_j]`` (``nn.Conv2d(C, C, k, groups=C).weight``), k_j odd.
        dilations: J dilations. stride: shared by all candidates.

    Returns:
        ``[N, J*C, Ho, Wo]``, candidate-major (channels ``[j*C, (j+1)*C)`` are candidate j),
        ``Ho = (H - 1) // stride + 1`` (floor division: 0 for H = 0).

    Raises:
        TypeError: a non-integer dilation or stride. ValueError: shapes, dtypes or devices that do not
        match, a dilation < 1, or dilations so large that the padded plane exceeds 2^31 elements.
    """
    weights, dilations = list(weights), list(dilations)
    check_depthwise_args(x, weights, dilations, stride, shared_input)
    dilations = [int(d) for d in dilations]  # checked integers (numpy ints too) as the schema's int[]
    return kernel("multi_depthwise_conv2d", x.device)(x, weights, dilations, stride, shared_input)


def _setup_context(ctx, inputs, output) -> None:
    x, weights, dilations, stride, shared_input = inputs
    ctx.save_for_backward(x, *weights)
    ctx.args = (list(dilations), stride, shared_input)
    ctx.weights_need_grad = any(w.requires_grad for w in weights)


def _backward_with(ops):
    def backward(ctx, grad: torch.Tensor):
        x, *weights = ctx.saved_tensors
        dilations, stride, shared_input = ctx.args
        grad_x, grad_ws = ops.multi_depthwise_conv2d_backward(
            grad, x, weights, dilations, stride, shared_input, ctx.needs_input_grad[0], ctx.weights_need_grad)
        return (grad_x if ctx.needs_input_grad[0] else None,
                list(grad_ws) if ctx.weights_need_grad else None, None, None, None)

    return backward


def _output_shape(x, weights, stride, shared_input):
    J, C = len(weights), weights[0].shape[0]
    return (x.shape[0], J * C, strided_side(x.shape[2], stride), strided_side(x.shape[3], stride))


def _fake(x, weights, dilations, stride, shared_input):
    check_depthwise_args(x, weights, dilations, stride, shared_input)
    return x.new_empty(_output_shape(x, weights, stride, shared_input))


def _backward_fake(grad, x, weights, dilations, stride, shared_input, x_needs_grad, weights_need_grad):
    check_depthwise_args(x, weights, dilations, stride, shared_input)
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format) if x_needs_grad else x.new_empty(0)
    grad_ws = [torch.empty_like(w, memory_format=torch.contiguous_format) if weights_need_grad
               else x.new_empty(0) for w in weights]
    return grad_x, grad_ws


def _autocast(x, weights, dilations, stride, shared_input):
    """Under autocast the input may arrive in bfloat16/float16 while the weights stay float32 (or the other
    way round): run in the wider dtype of the two (the CPU kernel has no half types)."""
    dtype = functools.reduce(torch.promote_types, [w.dtype for w in weights], x.dtype)
    return x.to(dtype), [w.to(dtype) for w in weights], dilations, stride, shared_input


SPEC = define(OpSpec("multi_depthwise_conv2d", reference.multi_depthwise_conv2d, fake=_fake,
                     backward_with=_backward_with, setup_context=_setup_context, backward_fake=_backward_fake,
                     autocast=_autocast))
