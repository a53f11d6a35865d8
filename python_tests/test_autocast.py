"""Autocast: bf16 activations with fp32 weights work in the fused MixedOp as in the naive edge (CPU autocast)."""

import copy

import pytest
import torch

import mednns_fast as mf
from mednns_fast.nas import DARTS_PRIMITIVES, MixedOp


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("stride", [1, 2])
def test_fused_mixed_op_under_bf16_autocast(stride, device):
    fused = MixedOp(4, stride, DARTS_PRIMITIVES).to(device)
    naive = copy.deepcopy(fused)
    x1 = torch.randn(2, 4, 9, 9, device=device, requires_grad=True)
    a1 = torch.randn(8, device=device, requires_grad=True)
    x2, a2 = (t.detach().clone().requires_grad_() for t in (x1, a1))
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = fused(x1, torch.softmax(a1, 0))
        ref = naive.forward_naive(x2, torch.softmax(a2, 0))
    assert out.device.type == device.type and out.dtype == ref.dtype == torch.float32  # identity keeps fp32
    assert _rel(out, ref) < 2e-2, _rel(out, ref)  # bf16 rounding of the conv candidates
    g = torch.linspace(-1, 1, out.numel(), device=device).view_as(out)
    out.backward(g)
    ref.backward(g)
    assert _rel(x1.grad, x2.grad) < 3e-2 and _rel(a1.grad, a2.grad) < 3e-2


def test_mixed_sum_autocast_promotes_candidates(device):
    xs = [torch.randn(3, 5, device=device), torch.randn(3, 5, device=device).bfloat16()]
    w = torch.tensor([0.25, 0.75], device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = mf.ops.mixed_sum(xs, w)
    assert out.dtype == torch.float32 and out.device.type == device.type
    torch.testing.assert_close(out, 0.25 * xs[0] + 0.75 * xs[1].float())
    with pytest.raises(ValueError, match="has dtype"):  # outside autocast, mixed dtypes stay an error
        mf.ops.mixed_sum(xs, w)
