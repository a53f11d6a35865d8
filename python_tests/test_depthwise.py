"""multi_depthwise_conv2d: against J separate F.conv2d calls, gradients, opcheck, compile, bad input."""

import pytest
import torch

import mednns_fast as mf
from mednns_fast.ops import reference
from python_tests.support.on_device import assert_on

KERNELS, DILATIONS = [3, 5, 3, 5], [1, 1, 2, 2]  # the DARTS sep/dil conv first stages


def _inputs(shared, device, N=2, C=5, H=11, W=8, dtype=torch.float64, requires_grad=False):
    x = torch.randn(N, C if shared else len(KERNELS) * C, H, W, dtype=dtype, device=device,
                    requires_grad=requires_grad)
    ws = [torch.randn(C, 1, k, k, dtype=dtype, device=device, requires_grad=requires_grad) for k in KERNELS]
    return x, ws


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hw", [(11, 8), (1, 1), (32, 33)])
def test_forward_and_backward_match_reference(shared, stride, dtype, hw, device):
    x, ws = _inputs(shared, device, H=hw[0], W=hw[1], dtype=dtype, requires_grad=True)
    out = mf.ops.multi_depthwise_conv2d(x, ws, DILATIONS, stride, shared)
    ref = reference.multi_depthwise_conv2d(x, ws, DILATIONS, stride, shared)
    assert_on(device, out)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, *ws], g)
    assert_on(device, grads)
    for a, b in zip(grads, torch.autograd.grad(ref, [x, *ws], g)):
        torch.testing.assert_close(a, b, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("stride", [2, 3, 4])
@pytest.mark.parametrize("kernels, dilations", [((1, 7), (1, 3)), ((3,), (4,)), ((5, 1, 3), (2, 1, 3))])
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (7, 5), (12, 13)])
def test_strided_input_gradient_every_phase(stride, kernels, dilations, hw, device):
    """The strided input gradient gathers per phase of the input grid (csrc/cpu/depthwise.cpp): phases that
    no tap reads (dilation a multiple of the stride), planes smaller than the stride, k = 1."""
    C = 3
    x = torch.randn(2, C, *hw, dtype=torch.float64, device=device, requires_grad=True)
    ws = [torch.randn(C, 1, k, k, dtype=torch.float64, device=device, requires_grad=True) for k in kernels]
    out = mf.ops.multi_depthwise_conv2d(x, ws, dilations, stride)
    ref = reference.multi_depthwise_conv2d(x, ws, dilations, stride)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, [x, *ws], g), torch.autograd.grad(ref, [x, *ws], g)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("shared, stride", [(True, 1), (False, 2), (True, 2), (True, 3)])
def test_gradcheck(shared, stride, device):
    x, ws = _inputs(shared, device, N=2, C=2, H=6, W=5, requires_grad=True)
    fn = lambda x, *ws: mf.ops.multi_depthwise_conv2d(x, ws, DILATIONS, stride, shared)  # noqa: E731
    assert_on(device, fn(x, *ws))
    assert torch.autograd.gradcheck(fn, (x, *ws))


def test_opcheck_and_compile(device):
    x, ws = _inputs(True, device, dtype=torch.float32, requires_grad=True)
    torch.library.opcheck(torch.ops.mednns_fast.multi_depthwise_conv2d.default, (x, ws, DILATIONS, 1, True))
    fn = lambda x, ws: mf.ops.multi_depthwise_conv2d(torch.relu(x), ws, DILATIONS, 2, True).sum()  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)(x, ws)
    assert_on(device, compiled)
    torch.testing.assert_close(compiled, fn(x, ws))


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.randn(2, 5, 4), [torch.randn(5, 1, 3, 3)], [1], 1, True), r"x must be \[N, C, H, W\]"),
        ((torch.randn(2, 5, 4, 4), [torch.randn(5, 1, 4, 4)], [1], 1, True), "k odd"),
        ((torch.randn(2, 5, 4, 4), [torch.randn(5, 1, 3, 3)], [1, 2], 1, True), "dilations has 2"),
        ((torch.randn(2, 5, 4, 4), [torch.randn(5, 1, 3, 3)], [1], 0, True), "stride must be an int >= 1"),
        ((torch.randn(2, 6, 4, 4), [torch.randn(5, 1, 3, 3)], [1], 1, True), "expected 5"),
        ((torch.randn(2, 5, 4, 4), [torch.randn(5, 1, 3, 3).double()], [1], 1, True), "dtype"),
    ],
)
def test_bad_input(args, match, device):
    x, ws, *rest = args
    with pytest.raises(ValueError, match=match):
        mf.ops.multi_depthwise_conv2d(x.to(device), [w.to(device) for w in ws], *rest)
