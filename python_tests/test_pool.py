"""max_avg_pool3x3: against ATen's own pools (nn.MaxPool2d / nn.AvgPool2d, what DARTS code runs), the
reference, gradients, opcheck, compile, bad input, and its use by the fused MixedOp."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mednns_fast as mf
from mednns_fast.nas import DARTS_PRIMITIVES, MixedOp
from mednns_fast.ops import reference
from python_tests.support.on_device import assert_on
from python_tests.support.op_calls import count_ops

SIZES = [(11, 8), (1, 1), (32, 33), (2, 40), (7, 1)]


def _torch_pools(x: torch.Tensor, stride: int):
    """What a DARTS edge computes with torch's modules: (max, avg, max's flat input indices)."""
    mx, flat = F.max_pool2d(x, 3, stride, 1, return_indices=True)
    return mx, F.avg_pool2d(x, 3, stride, 1, count_include_pad=False), flat


def _flat_index(argmax: torch.Tensor, stride: int, W: int) -> torch.Tensor:
    """The op's window tap (ky * 3 + kx) as ATen's flat input index iy * W + ix."""
    ho, wo = argmax.shape[-2:]
    oy = (torch.arange(ho, device=argmax.device) * stride - 1).view(ho, 1)
    ox = (torch.arange(wo, device=argmax.device) * stride - 1).view(1, wo)
    tap = argmax.long()
    return (tap // 3 + oy) * W + tap % 3 + ox


def _with_hard_values(x: torch.Tensor) -> torch.Tensor:
    """Windows of -inf only (ATen then names the first valid input), a NaN, and ties of equal values."""
    x = x.clone()
    if x.shape[2] > 2 and x.shape[3] > 2 and x.shape[1] >= 3:
        x[0, 0, :2, :2] = float("-inf")
        x[0, 1, 1, 1] = float("nan")
        x[0, 2, :3, :3] = 1.0
    return x


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hw", SIZES)
def test_matches_torch_pools_exactly(stride, dtype, hw, device):
    x = _with_hard_values(torch.randn(2, 3, *hw, dtype=dtype)).to(device)
    out, argmax = mf.ops.max_avg_pool3x3(x, stride)
    assert_on(device, out, argmax)
    mx, avg, flat = _torch_pools(x, stride)
    torch.testing.assert_close(out, torch.cat([mx, avg], 1), rtol=0, atol=0, equal_nan=True)
    assert argmax.dtype == torch.uint8 and int(argmax.max()) <= 8
    assert torch.equal(_flat_index(argmax, stride, hw[1]), flat)
    ref_out, ref_argmax = reference.max_avg_pool3x3(x, stride)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(argmax, ref_argmax)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("hw", SIZES)
def test_backward_matches_torch_pools(stride, hw, device):
    x = torch.randn(2, 3, *hw, dtype=torch.float64).to(device).requires_grad_()
    out, _ = mf.ops.max_avg_pool3x3(x, stride)
    mx, avg, _ = _torch_pools(x, stride)
    g = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, x, g)
    (want,) = torch.autograd.grad(torch.cat([mx, avg], 1), x, g)
    assert_on(device, got)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_gradcheck_and_opcheck(stride, device):
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: mf.ops.max_avg_pool3x3(t, stride)[0], (x,))
    torch.library.opcheck(torch.ops.mednns_fast.max_avg_pool3x3.default, (x, stride))


def test_compiles_fullgraph_with_equal_gradients(device):
    x = torch.randn(2, 4, 9, 9, device=device, requires_grad=True)
    fn = lambda t: mf.ops.max_avg_pool3x3(torch.relu(t), 2)[0].square().sum()  # noqa: E731
    got = torch.compile(fn, fullgraph=True)(x)
    (g_got,) = torch.autograd.grad(got, x)
    want = fn(x)
    (g_want,) = torch.autograd.grad(want, x)
    assert_on(device, got, g_got)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_got, g_want)


def test_empty_sides(device):
    for shape in [(2, 3, 0, 5), (0, 3, 4, 4), (2, 3, 5, 0)]:
        x = torch.randn(*shape, device=device, requires_grad=True)
        out, argmax = mf.ops.max_avg_pool3x3(x, 2)
        assert out.shape == (shape[0], 6, (shape[2] - 1) // 2 + 1 if shape[2] else 0,
                             (shape[3] - 1) // 2 + 1 if shape[3] else 0)
        assert argmax.shape == (shape[0], 3, *out.shape[2:])
        (g,) = torch.autograd.grad(out.sum(), x)
        assert g.shape == x.shape and not g.any()


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 2), H=st.integers(1, 12), W=st.integers(1, 12), stride=st.integers(1, 3),
       seed=st.integers(0, 99))
def test_any_size_matches_torch(N, H, W, stride, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 2, H, W, generator=gen, dtype=torch.float64)
    x = torch.where(torch.rand(x.shape, generator=gen) < 0.2, torch.zeros(()), x.round())  # many ties
    out, argmax = mf.ops.max_avg_pool3x3(x, stride)
    mx, avg, flat = _torch_pools(x, stride)
    torch.testing.assert_close(out, torch.cat([mx, avg], 1), rtol=0, atol=0)
    assert torch.equal(_flat_index(argmax, stride, W), flat)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.randn(2, 3, 4), 1), ValueError, r"x must be \[N, C, H, W\]"),
        ((torch.randn(2, 3, 4, 4), 0), ValueError, "stride must be an int >= 1"),
        ((torch.randn(2, 3, 4, 4), 1.5), TypeError, "stride must be an int"),
        ((torch.ones(2, 3, 4, 4, dtype=torch.int64), 1), ValueError, "floating-point"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        mf.ops.max_avg_pool3x3(*args)


def test_backward_op_refuses_mismatched_arguments():
    grad, argmax = torch.randn(2, 6, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    backward = torch.ops.mednns_fast.max_avg_pool3x3_backward
    with pytest.raises(ValueError, match=r"grad must be \[2, 6, 2, 2\]"):
        backward(grad, argmax, [2, 3, 4, 4], 2)
    with pytest.raises(ValueError, match="argmax must be uint8"):
        backward(grad, argmax.long(), [2, 3, 4, 4], 1)
    with pytest.raises(ValueError, match="input_size must be"):
        backward(grad, argmax, [2, 3, 4], 1)


def test_fused_mixed_op_runs_both_pools_as_one_op(device):
    """The fused edge computes its max and avg pool candidates with one max_avg_pool3x3 call (no ATen pool),
    outputs and gradients equal to the naive edge; with a pool the op does not reproduce it keeps ATen's."""
    torch.manual_seed(0)
    op = MixedOp(4, 2, DARTS_PRIMITIVES).to(device)
    x = torch.randn(2, 4, 9, 9, device=device, requires_grad=True)
    w = torch.softmax(torch.randn(8, device=device), 0).requires_grad_()
    out, counts = count_ops(lambda: op(x, w))
    assert counts["mednns_fast::max_avg_pool3x3"] == 1
    assert counts["aten::max_pool2d_with_indices"] == 0 and counts["aten::avg_pool2d"] == 0
    ref = op.forward_naive(x, w)
    assert_on(device, out)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (x, w), g), torch.autograd.grad(ref, (x, w), g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    op.candidates[DARTS_PRIMITIVES.index("avg_pool_3x3")].pool.count_include_pad = True  # not what the op does
    out, counts = count_ops(lambda: op(x, w))
    assert counts["mednns_fast::max_avg_pool3x3"] == 0 and counts["aten::avg_pool2d"] == 1
    torch.testing.assert_close(out, op.forward_naive(x, w), rtol=1e-5, atol=1e-5)
