"""multi_depthwise_conv2d: several candidates' depthwise convolutions from one read of the input.

It is the first stage of the fused DARTS MixedOp (sep_conv / dil_conv candidates share their ReLU'd input).
The family's Python side: the public wrapper, its argument checks, the pure-PyTorch reference and the
`OpSpec` (fake kernels and the autograd formula).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from ._backend import kernel
from ._checks import autocasting, check_floating, check_int, check_same_device, check_same_dtype
from ._geometry import strided_side
from ._spec import OpSpec, define

__all__ = ["multi_depthwise_conv2d"]


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
    if weights[0].dim() != 4:
        raise ValueError(f"{op}: weights[0] must be [C, 1, k, k], got shape {tuple(weights[0].shape)}")
    C, max_pad = weights[0].shape[0], 0
    for j, (w, d) in enumerate(zip(weights, dilations, strict=True)):
        name = f"{op}: weights[{j}]"
        check_floating(w, name)
        check_same_device(w, name, x, "x")
        if not autocasting(x):  # under autocast the op's spec casts both to the wider dtype first
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


def reference_multi_depthwise_conv2d(x: torch.Tensor, weights: Sequence[torch.Tensor], dilations: Sequence[int],
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


SPECS = (
    define(OpSpec("multi_depthwise_conv2d", reference_multi_depthwise_conv2d, fake=_fake,
                  backward_with=_backward_with, setup_context=_setup_context, backward_fake=_backward_fake,
                  autocast=_autocast)),
)
