"""ATen computations behind an opaque custom-op boundary, where torch.compile (Inductor) mis-compiles them.

Inductor's CPU code for the backward of a 3x3 max pool and a 3x3 average pool of one tensor, fused into one
parallel kernel, gives wrong input gradients when it runs on several threads (docs/inductor_repros.md, repro
2). The DARTS edge has exactly that pair. Here the max pool is a custom op (namespace `mednns_fast_opaque`,
apart from the kernel library) whose forward and backward Inductor calls but does not generate code for, so
the pair is never fused. Eager calls skip the op layer
(no dispatch overhead): the wrapper calls ATen directly unless it is being traced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._geometry import strided_side


@torch.library.custom_op("mednns_fast_opaque::max_pool2d_3x3", mutates_args=())
def _max_pool(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    out, indices = F.max_pool2d(x, 3, stride, 1, return_indices=True)
    return out, indices


@_max_pool.register_fake
def _max_pool_fake(x, stride):
    H, W = x.shape[-2:]
    shape = (*x.shape[:-2], strided_side(H, stride), strided_side(W, stride))
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int64)


@torch.library.custom_op("mednns_fast_opaque::max_pool2d_3x3_backward", mutates_args=())
def _max_pool_backward(grad: torch.Tensor, x: torch.Tensor, indices: torch.Tensor, stride: int) -> torch.Tensor:
    return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [3, 3], [stride, stride], [1, 1], [1, 1],
                                                           False, indices)


@_max_pool_backward.register_fake
def _max_pool_backward_fake(grad, x, indices, stride):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output) -> None:
    x, ctx.stride = inputs
    ctx.save_for_backward(x, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad, _grad_indices):
    x, indices = ctx.saved_tensors
    return _max_pool_backward(grad, x, indices, ctx.stride), None


_max_pool.register_autograd(_backward, setup_context=_setup)


def max_pool2d_3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.max_pool2d(x, 3, stride, 1)`` [N, C, H, W] -> [N, C, Ho, Wo], opaque to torch.compile."""
    if not torch.compiler.is_compiling():
        return F.max_pool2d(x, 3, stride, 1)
    return _max_pool(x, stride)[0]
