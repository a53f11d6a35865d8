"""Triton mixed_sum (forward and backward) against the reference, through the public op and the raw ops.

Runs on CPU under TRITON_INTERPRET=1 (see triton_support.py); sizes stay small and odd (masks).
"""

from __future__ import annotations

import pytest
import torch

import mednns_fast as mf
from mednns_fast.ops import reference
from mednns_fast.triton.mixed import _Layout
from python_tests.support.op_calls import copies, count_ops
from python_tests.support.triton_support import float_dtypes, needs_gpu, tolerances, triton_runs  # noqa: F401

pytestmark = [pytest.mark.triton, pytest.mark.usefixtures("triton_runs")]

tops = torch.ops.mednns_fast_triton


def _inputs(shape, K, dtype, device, per_row=False, seed=0):
    """Seeded inputs on `device` (drawn on the CPU so every device sees the same values)."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(shape, generator=g, dtype=dtype).to(device) for _ in range(K)]
    w = torch.randn((shape[0], K) if per_row else (K,), generator=g, dtype=dtype).to(device)
    assert all(t.device.type == torch.device(device).type for t in (*xs, w))
    return xs, w


@pytest.mark.parametrize("dtype", float_dtypes(half=True))
@pytest.mark.parametrize("K", [1, 5, 8, 11])  # 11: two launches, the running sum carried between them
@pytest.mark.parametrize("per_row", [False, True])
def test_forward_matches_reference(dtype, K, per_row, device):
    xs, w = _inputs((3, 7, 13, 5), K, dtype, device, per_row)  # 1365 elements: partial last block
    out = mf.ops.mixed_sum(xs, w)
    torch.testing.assert_close(out, reference.mixed_sum(xs, w), **tolerances(dtype))
    assert out.is_contiguous() and out.dtype == dtype and out.device == device


@pytest.mark.parametrize("per_row", [False, True])
def test_channel_slices_read_in_place(per_row, device):
    """Candidates that are channel slices of one wide tensor (the fused MixedOp's layout)."""
    K = 6
    wide = torch.randn(5, 3 * K, 9, 11, dtype=torch.float64, device=device)
    xs = [wide[:, 3 * k:3 * k + 2] for k in range(K)]
    assert not xs[0].is_contiguous()
    w = torch.randn((5, K) if per_row else (K,), dtype=torch.float64, device=device)
    # In place: the kernels' layout keeps every slice's own storage and row stride, with no copy made.
    lay, counts = count_ops(lambda: _Layout(xs, w))
    assert copies(counts) == 0
    assert [t.data_ptr() for t in lay.xs] == [x.data_ptr() for x in xs]
    assert lay.strides == [wide.stride(0)] * K
    torch.testing.assert_close(mf.ops.mixed_sum(xs, w), reference.mixed_sum(xs, w))
    g = torch.randn(5, 2, 9, 11, dtype=torch.float64, device=device)
    grad_xs, grad_w = tops.mixed_sum_backward(g, xs, w, [True] * K, True)
    ref_xs, ref_w = _reference_grads(xs, w, g)
    torch.testing.assert_close(grad_w, ref_w)
    for got, want in zip(grad_xs, ref_xs, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("K", [3, 11])  # 11: two launch groups share the one copy
def test_transposed_candidates_are_copied_once(K, device):
    xs = [torch.randn(9, 7, dtype=torch.float64, device=device).t() for _ in range(K)]  # rows not contiguous
    w = torch.randn(7, K, dtype=torch.float64, device=device)
    lay, counts = count_ops(lambda: _Layout(xs, w))
    assert copies(counts) == K  # one copy per candidate, made once for every launch group
    assert all(t.is_contiguous() for t in lay.xs)
    assert len({t.data_ptr() for t in lay.xs} & {x.data_ptr() for x in xs}) == 0
    for group in lay.groups():  # every launch reads those copies, not fresh ones
        slot_xs, _ = lay.slot_args(group)
        assert {t.data_ptr() for t in slot_xs} <= {t.data_ptr() for t in lay.xs}
    torch.testing.assert_close(mf.ops.mixed_sum(xs, w), reference.mixed_sum(xs, w))


def test_zero_weight_candidates_are_not_read(device):
    """A pruned candidate (weight exactly 0) is skipped: even its NaNs do not reach the output."""
    xs, w = _inputs((4, 301), 4, torch.float32, device)
    xs[2] = torch.full_like(xs[2], float("nan"))
    w[2] = 0.0
    expected = sum(w[k] * xs[k] for k in (0, 1, 3))
    torch.testing.assert_close(mf.ops.mixed_sum(xs, w), expected)
    wb = torch.randn(4, 4, device=device)
    wb[:, 2] = 0.0
    torch.testing.assert_close(mf.ops.mixed_sum(xs, wb),
                               sum(wb[:, k, None] * xs[k] for k in (0, 1, 3)))


def _reference_grads(xs, w, g):
    xs_r = [x.detach().clone().requires_grad_() for x in xs]
    w_r = w.detach().clone().requires_grad_()
    reference.mixed_sum(xs_r, w_r).backward(g)
    return [x.grad for x in xs_r], w_r.grad


@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("K", [3, 10])
@pytest.mark.parametrize("per_row", [False, True])
def test_backward_matches_reference(dtype, K, per_row, device):
    xs, w = _inputs((5, 3, 67), K, dtype, device, per_row, seed=1)
    xs = [x.requires_grad_() for x in xs]
    w.requires_grad_()
    g = torch.randn(5, 3, 67, dtype=dtype, device=device)
    mf.ops.mixed_sum(xs, w).backward(g)
    ref_xs, ref_w = _reference_grads(xs, w, g)
    assert w.grad.device == device and all(x.grad.device == device for x in xs)
    tol = tolerances(dtype)
    torch.testing.assert_close(w.grad, ref_w, **tol)
    for x, want in zip(xs, ref_xs, strict=True):
        torch.testing.assert_close(x.grad, want, **tol)


def test_backward_only_requested_gradients(device):
    xs, w = _inputs((3, 41), 4, torch.float64, device)
    g = torch.randn(3, 41, dtype=torch.float64, device=device)
    grad_xs, grad_w = tops.mixed_sum_backward(g, xs, w, [False, True, False, True], False)
    assert [t.numel() for t in grad_xs] == [0, g.numel(), 0, g.numel()]
    assert grad_w.numel() == 0
    torch.testing.assert_close(grad_xs[3], w[3] * g)
    grad_xs, grad_w = tops.mixed_sum_backward(g, xs, w, [False] * 4, True)
    torch.testing.assert_close(grad_w, torch.stack([(x * g).sum() for x in xs]))


def test_gradcheck(device):
    xs = [torch.randn(2, 5, dtype=torch.float64, device=device, requires_grad=True) for _ in range(3)]
    for w in (torch.randn(3, dtype=torch.float64, device=device, requires_grad=True),
              torch.randn(2, 3, dtype=torch.float64, device=device, requires_grad=True)):
        assert torch.autograd.gradcheck(lambda *a: tops.mixed_sum(list(a[:-1]), a[-1]), (*xs, w))


def test_opcheck(device):
    xs, w = _inputs((3, 17), 3, torch.float32, device)
    xs = [x.requires_grad_() for x in xs]
    w.requires_grad_()
    torch.library.opcheck(tops.mixed_sum, (xs, w))
    g = torch.randn(3, 17, device=device)
    xs, w = [x.detach() for x in xs], w.detach()  # the backward op has no autograd formula of its own
    torch.library.opcheck(tops.mixed_sum_backward, (g, xs, w, [True, False, True], True))


def test_torch_compile_fullgraph(device):
    """The public op traces without graph breaks (on CPU: the opaque op and its fake kernel)."""
    xs, w = _inputs((4, 33), 3, torch.float32, device)

    @torch.compile(fullgraph=True)
    def edge(xs, w):
        return mf.ops.mixed_sum(xs, torch.softmax(w, 0)) * 2

    torch.testing.assert_close(edge(xs, w), 2 * reference.mixed_sum(xs, torch.softmax(w, 0)))


def test_empty_input(device):
    xs = [torch.randn(0, 5, device=device) for _ in range(2)]
    w = torch.randn(2, device=device, requires_grad=True)
    out = mf.ops.mixed_sum(xs, w)
    assert out.shape == (0, 5)
    out.sum().backward()
    assert torch.equal(w.grad, torch.zeros(2, device=device))


def test_bad_inputs_raise(device):
    xs, w = _inputs((3, 5), 2, torch.float32, device)
    with pytest.raises(ValueError, match="K mismatch"):
        mf.ops.mixed_sum(xs, torch.ones(3, device=device))
    with pytest.raises(ValueError, match="must be finite"), mf.ops.debug_checks():  # immediate on GPUs too
        mf.ops.mixed_sum(xs, torch.tensor([1.0, float("nan")], device=device))
    with pytest.raises(ValueError, match="has dtype"):
        mf.ops.mixed_sum([xs[0], xs[1].double()], w)
    with pytest.raises(ValueError, match="B rows"):
        mf.ops.mixed_sum(xs, torch.ones(4, 2, device=device))
    with pytest.raises(ValueError, match="at least one tensor"):
        tops.mixed_sum([], w)


def test_backend_switch_routes_here(device):
    """"triton" runs these kernels: a mismatch error comes from the Triton launcher's checks."""
    xs, w = _inputs((3, 5), 2, torch.float32, device)
    assert mf.ops.get_backend() == "triton"
    with mf.ops.use_backend("reference"):
        ref = mf.ops.mixed_sum(xs, w)
    torch.testing.assert_close(mf.ops.mixed_sum(xs, w), ref)


@pytest.mark.gpu
@needs_gpu
def test_inductor_traces_into_the_kernels():
    """On a GPU the op is a triton_op: Inductor compiles the user kernels into its own graph (under the
    interpreter torch 2.13's wrap_triton cannot trace, see mednns_fast/triton/_common.py)."""
    xs, w = _inputs((16, 32, 19, 19), 8, torch.float32, "cuda")

    def loss(xs, w):
        return mf.ops.mixed_sum(xs, torch.softmax(w, 0)).square().sum()

    def grads(fn):
        leaves = [x.detach().clone().requires_grad_() for x in xs] + [w.detach().clone().requires_grad_()]
        fn(leaves[:-1], leaves[-1]).backward()
        return [t.grad for t in leaves]

    got = grads(torch.compile(loss, fullgraph=True))
    with mf.ops.use_backend("reference"):
        want = grads(loss)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
