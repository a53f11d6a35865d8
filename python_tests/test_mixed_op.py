"""The fused MixedOp equals the naive DARTS edge (outputs, every gradient, BN buffers) and skips pruned work."""

import copy

import pytest
import torch

import mednns_fast as mf
from mednns_fast.nas import DARTS_PRIMITIVES, MixedOp
from mednns_fast.ops._spec import SPECS
from python_tests.support.on_device import assert_on
from python_tests.support.op_calls import count_ops


def _run(op, x, alpha, naive):
    w = torch.softmax(alpha, 0)
    out = op.forward_naive(x, w) if naive else op(x, w)
    out.backward(torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out))
    return out


def _assert_rel_close(a, b, tol, what):
    # Gradients of BN-normalised stages are sums of many float32 terms: compare them relative to their size.
    err = ((a - b).norm() / b.norm().clamp_min(1e-30)).item()
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


def _pair(C, stride, device, primitives=DARTS_PRIMITIVES, affine=False):
    fused = MixedOp(C, stride, primitives, affine=affine).to(device)
    return fused, copy.deepcopy(fused)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(12, 12), (13, 9)])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_naive(stride, hw, affine, dtype, device):
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    fused, naive = _pair(6, stride, device, affine=affine)
    fused.to(dtype), naive.to(dtype)
    x1 = torch.randn(3, 6, *hw, requires_grad=True, dtype=dtype, device=device)
    x2 = x1.detach().clone().requires_grad_()
    a1 = torch.randn(len(DARTS_PRIMITIVES), requires_grad=True, dtype=dtype, device=device)
    a2 = a1.detach().clone().requires_grad_()
    for _ in range(2):  # twice: running statistics are updated the same way
        o1, o2 = _run(fused, x1, a1, False), _run(naive, x2, a2, True)
        assert_on(device, o1)
        torch.testing.assert_close(o1, o2, rtol=tol, atol=tol)
    assert_on(device, x1.grad, a1.grad, [p.grad for p in fused.parameters()], list(fused.buffers()))
    torch.testing.assert_close(x1.grad, x2.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(a1.grad, a2.grad, rtol=tol, atol=tol)
    for (name, p1), p2 in zip(fused.named_parameters(), naive.parameters()):
        _assert_rel_close(p1.grad, p2.grad, tol, name)
    for b1, b2 in zip(fused.buffers(), naive.buffers()):
        torch.testing.assert_close(b1, b2, rtol=tol, atol=tol)
    fused.eval(), naive.eval()
    w = torch.softmax(a1.detach(), 0)
    out = fused(x1, w)
    assert_on(device, out)
    torch.testing.assert_close(out, naive.forward_naive(x1, w), rtol=tol, atol=tol)


@pytest.mark.parametrize("primitives", [("sep_conv_3x3",), ("dil_conv_5x5", "max_pool_3x3"),
                                        ("skip_connect", "sep_conv_5x5", "none", "dil_conv_3x3")])
def test_subsets_of_primitives(primitives, device):
    fused, naive = _pair(4, 1, device, primitives)
    x = torch.randn(2, 4, 7, 7, device=device)
    w = torch.rand(len(primitives), device=device)
    out = fused(x, w)
    assert_on(device, out)
    torch.testing.assert_close(out, naive.forward_naive(x, w), rtol=1e-5, atol=1e-5)


def test_pruned_candidates_are_not_computed(device):
    op = MixedOp(4, 1, DARTS_PRIMITIVES).to(device)
    calls = {p: 0 for p in DARTS_PRIMITIVES}
    for name, cand in zip(DARTS_PRIMITIVES, op.candidates):
        cand.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    x = torch.randn(2, 4, 8, 8, device=device)
    w = torch.softmax(torch.randn(8, device=device), 0)
    op.set_active([p not in ("max_pool_3x3", "sep_conv_5x5") for p in DARTS_PRIMITIVES])
    w = w.clone().requires_grad_()
    out = op(x, w)
    out.sum().backward()
    assert_on(device, out, w.grad)
    assert calls["max_pool_3x3"] == 0 and calls["avg_pool_3x3"] == 1
    sep5 = op.candidates[DARTS_PRIMITIVES.index("sep_conv_5x5")]
    assert all(p.grad is None for p in sep5.parameters())  # its weights never entered the graph
    sep3 = op.candidates[DARTS_PRIMITIVES.index("sep_conv_3x3")]
    assert all(p.grad is not None for p in sep3.parameters())
    assert_on(device, [p.grad for p in sep3.parameters()])
    keep = op.active.clone()
    expected = sum(w[k] * c(x) for k, c in enumerate(op.candidates) if keep[k])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_forward_reads_no_values():
    # On the meta device every value read (.tolist(), .item(), a data-dependent branch) raises: the fused
    # forward decides what to run from the pruner's mask alone, so it runs there and gives the right shape.
    op = MixedOp(4, 2, DARTS_PRIMITIVES).to("meta")
    op.set_active([p != "sep_conv_5x5" for p in DARTS_PRIMITIVES])
    x = torch.empty(2, 4, 9, 9, device="meta")
    w = torch.empty(8, device="meta", requires_grad=True)
    out = op(x, w)
    assert out.device.type == "meta" and out.shape == (2, 4, 5, 5)
    out.sum().backward()
    assert w.grad.shape == (8,)


def test_mask_survives_state_dict(device):
    op = MixedOp(4, 2, DARTS_PRIMITIVES).to(device)
    op.set_active([True] * 7 + [False])
    clone = MixedOp(4, 2, DARTS_PRIMITIVES).to(device)
    clone.load_state_dict(op.state_dict())
    assert_on(device, clone.active)
    assert clone.active.tolist() == [True] * 7 + [False]
    assert clone.kept == op.kept and len(op.candidates) - 1 not in clone.kept  # the loaded mask is in effect


def test_bad_arguments(device):
    with pytest.raises(ValueError, match="unknown primitives"):
        MixedOp(4, 1, ("conv_7x7",))
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        MixedOp(4, 3, DARTS_PRIMITIVES)
    op = MixedOp(4, 1, DARTS_PRIMITIVES).to(device)
    with pytest.raises(ValueError, match=r"weights must be \[8\]"):
        op(torch.randn(1, 4, 5, 5, device=device), torch.randn(7, device=device))
    with pytest.raises(ValueError, match="mask must have 8 entries"):
        op.set_active([True])


def test_all_pruned_gives_zeros_of_strided_shape(device):
    op = MixedOp(4, 2, DARTS_PRIMITIVES).to(device)
    op.set_active([False] * 8)
    out = op(torch.randn(2, 4, 9, 9, device=device), torch.softmax(torch.randn(8, device=device), 0))
    assert_on(device, out)
    assert out.shape == (2, 4, 5, 5) and not out.any()


def test_compiles(device):
    op = MixedOp(4, 1, ("skip_connect", "sep_conv_3x3", "avg_pool_3x3")).to(device)
    x, w = torch.randn(2, 4, 6, 6, device=device), torch.softmax(torch.randn(3, device=device), 0)
    out = torch.compile(op)(x, w)
    assert_on(device, out)
    torch.testing.assert_close(out, op(x, w), rtol=1e-5, atol=1e-5)


def test_forward_uses_mixed_sum_once(monkeypatch, device):
    """The weighted sum is one mixed_sum call: the C++ op dispatched once (counted), and under the
    reference backend the reference mixed_sum called once (counted), with equal outputs."""
    op = MixedOp(4, 1, DARTS_PRIMITIVES).to(device)
    x, w = torch.randn(2, 4, 6, 6, device=device), torch.softmax(torch.randn(8, device=device), 0)
    with mf.ops.use_backend("cpp"):
        out, counts = count_ops(lambda: op(x, w))
    assert_on(device, out)
    assert counts["mednns_fast::mixed_sum"] == 1
    calls = []
    spec = SPECS["mixed_sum"]  # the reference backend runs the spec's reference
    original = spec.reference
    monkeypatch.setattr(spec, "reference", lambda xs, ws: calls.append(len(xs)) or original(xs, ws))
    with mf.ops.use_backend("reference"):
        ref = op(x, w)
    assert_on(device, ref)
    assert calls == [7]  # one call over every candidate but `none` (zeros add nothing)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
