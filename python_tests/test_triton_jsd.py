"""Triton Jensen-Shannon kernels (torch.ops.mednns_fast_triton.js_*: the C++ ops' contracts) against the
plain formula, autograd of the plain formula and scipy. Runs on CPU under TRITON_INTERPRET=1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

import mednns_fast as mf
from python_tests.support.on_device import assert_on
from python_tests.support.triton_support import float_dtypes, needs_gpu, tolerances, triton_runs  # noqa: F401

pytestmark = [pytest.mark.triton, pytest.mark.usefixtures("triton_runs")]

tops = torch.ops.mednns_fast_triton
LN2 = math.log(2.0)


def js_formula(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The textbook divergence: KL of p and q to their mean, halved; 0 log 0 = 0; clamped to [0, ln 2]
    with the gradient passing straight through the clamp, and 0 where a probability is 0."""
    s = p + q
    log_p = torch.where(p > 0, torch.log(2 * p / s), 0.0).detach()  # the d log terms cancel exactly
    log_q = torch.where(q > 0, torch.log(2 * q / s), 0.0).detach()
    js = (0.5 * (p * log_p + q * log_q)).sum(dim)
    return js + (js.clamp(0, LN2) - js).detach()


def _rand(*shape, device, dtype=torch.float64, seed=0):
    """Seeded values on `device` (drawn on the CPU so every device sees the same values)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


def _grads(fn, *inputs):
    """Gradients of fn(*inputs) . g for a fixed random g, for each input."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    g = _rand(*out.shape, device=out.device, dtype=out.dtype, seed=99)
    finite = torch.isfinite(out)
    (out[finite] * g[finite]).sum().backward()
    return [x.grad for x in leaves]


# ------------------------------------------------------------------------------------- js_divergence
@pytest.mark.parametrize("dtype", float_dtypes(half=True))
@pytest.mark.parametrize("K", [1, 7, 301])  # 301: the K axis is walked in several chunks
@pytest.mark.parametrize("from_logits", [False, True])
def test_js_divergence_matches_formula(dtype, K, from_logits, device):
    a, b = _rand(37, K, device=device, dtype=dtype), _rand(37, K, device=device, dtype=dtype, seed=1)
    if from_logits:
        if K > 1:
            a[:3, 0] = -math.inf  # masked candidates: probability exactly 0
        p, q = a.double().softmax(-1), b.double().softmax(-1)
    else:
        p, q = a.softmax(-1), b.softmax(-1)
        if K > 1:  # exact zeros: 0 log 0 = 0
            p[:3, 0] = 0
            q[2:5, -1] = 0
        a, b = p, q
        p, q = p.double(), q.double()
    got = tops.js_divergence(a, b, from_logits)
    assert_on(device, got)
    torch.testing.assert_close(got, js_formula(p, q).to(dtype), **tolerances(dtype))
    assert got.dtype == dtype and got.shape == (37,)


def test_js_divergence_strided_rows(device):
    p = torch.rand(11, 6, dtype=torch.float64, device=device)
    q = torch.rand(6, 11, dtype=torch.float64, device=device).t()  # columns strided
    got = tops.js_divergence(p, q, False)
    assert_on(device, got)
    torch.testing.assert_close(got, js_formula(p, q))


def test_js_divergence_matches_scipy(device):
    p = torch.rand(9, 13, dtype=torch.float64, device=device)
    q = torch.rand(9, 13, dtype=torch.float64, device=device)
    p, q = p / p.sum(-1, keepdim=True), q / q.sum(-1, keepdim=True)
    want = jensenshannon(p.cpu().numpy(), q.cpu().numpy(), axis=-1) ** 2  # scipy: the square root
    got = tops.js_divergence(p, q, False)
    assert_on(device, got)
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-10)


def test_js_divergence_near_identical_rows_are_accurate_in_float32(device):
    """The series form keeps relative accuracy where the two logs would cancel."""
    p = torch.rand(5, 40, dtype=torch.float64, device=device) + 0.1
    p = p / p.sum(-1, keepdim=True)
    q = p * (1 + 1e-3 * torch.randn_like(p))
    q = q / q.sum(-1, keepdim=True)
    want = js_formula(p, q)  # float64, about 1e-7
    got = tops.js_divergence(p.float(), q.float(), False)
    assert_on(device, got)
    got = got.double()
    want32 = js_formula(p.float().double(), q.float().double())  # the same rounded inputs
    assert ((got - want32).abs() / want32).max().item() < 1e-4
    assert want.min().item() > 0


def test_js_divergence_bounds_exact(device):
    p = torch.tensor([[0.2, 0.8, 0.0], [1.0, 0.0, 0.0]], device=device)
    q = torch.tensor([[0.2, 0.8, 0.0], [0.0, 0.5, 0.5]], device=device)
    got = tops.js_divergence(p, q, False)
    assert_on(device, got)
    assert got[0].item() == 0.0  # identical
    assert got[1].item() == pytest.approx(LN2, abs=1e-7)  # disjoint supports
    logits = torch.tensor([[1e4, -1e4, 0.0]], device=device)  # softmax underflows to exact zeros
    from_logits = tops.js_divergence(logits, -logits, True)
    assert_on(device, from_logits)
    assert torch.isfinite(from_logits).all()


@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("K", [19, 300])
def test_js_divergence_backward_matches_autograd(dtype, from_logits, K, device):
    a, b = _rand(7, K, device=device, dtype=dtype), _rand(7, K, device=device, dtype=dtype, seed=1)
    if from_logits:
        a[0, 3] = -math.inf
        ref = _grads(lambda x, y: js_formula(x.softmax(-1), y.softmax(-1)), a, b)
    else:
        a, b = a.softmax(-1), b.softmax(-1)
        a[0, 3] = 0.0  # the gradient convention: 0 there
        ref = _grads(js_formula, a, b)
    got = _grads(lambda x, y: tops.js_divergence(x, y, from_logits), a, b)
    assert_on(device, got)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, **tolerances(dtype))
    only_q = tops.js_divergence_backward(torch.ones(7, dtype=dtype, device=device), a, b, from_logits, False,
                                         True)
    assert_on(device, only_q)
    assert only_q[0].numel() == 0 and only_q[1].shape == (7, K)


@pytest.mark.parametrize("from_logits", [False, True])
def test_js_divergence_gradcheck(from_logits, device):
    a, b = _rand(3, 5, device=device, seed=3), _rand(3, 5, device=device, seed=4)
    if not from_logits:
        a, b = a.softmax(-1), b.softmax(-1)
    a.requires_grad_()
    b.requires_grad_()
    js = tops.js_divergence
    assert_on(device, torch.autograd.grad(js(a, b, from_logits).sum(), (a, b)))
    assert torch.autograd.gradcheck(lambda x, y: js(x, y, from_logits), (a, b), fast_mode=True)


def test_js_divergence_opcheck(device):
    a = _rand(4, 9, device=device, dtype=torch.float32).requires_grad_()
    b = _rand(4, 9, device=device, dtype=torch.float32, seed=1).requires_grad_()
    torch.library.opcheck(tops.js_divergence, (a, b, True))
    g = _rand(4, device=device, dtype=torch.float32, seed=2)
    torch.library.opcheck(tops.js_divergence_backward, (g, a.detach(), b.detach(), True, True, False))
    assert_on(device, tops.js_divergence(a, b, True),
              tops.js_divergence_backward(g, a.detach(), b.detach(), True, True, False)[0])


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the interpreter on +inf
def test_js_divergence_bad_inputs_name_the_argument(device):
    p = torch.full((3, 4), 0.25, device=device)
    neg = p.clone()
    neg[1, 2] = -0.1
    # debug_checks: the value checks raise at once on GPUs too (else an asynchronous device assert)
    with (pytest.raises(ValueError, match=r"js_divergence: q \(probabilities\) must be non-negative"),
          mf.ops.debug_checks()):
        tops.js_divergence(p, neg, False)
    nan = p.clone()
    nan[2, 0] = float("nan")
    with (pytest.raises(ValueError, match=r"js_divergence: p \(logits\) must not contain NaN or \+inf"),
          mf.ops.debug_checks()):
        tops.js_divergence(nan, p, True)
    with pytest.raises(ValueError, match=r"js_divergence: p \(probabilities\) must be finite"), mf.ops.debug_checks():
        tops.js_divergence(nan, p, False)
    empty = p.clone()
    empty[1] = -math.inf
    with (pytest.raises(ValueError, match=r"js_divergence: q \(logits\) has a row whose every entry is -inf"),
          mf.ops.debug_checks()):
        tops.js_divergence(p, empty, True)
    with pytest.raises(ValueError, match="they must match"):
        tops.js_divergence(p, p[:, :3], False)
    with pytest.raises(ValueError, match="2-D"):
        tops.js_divergence(p[0], p[0], False)
    with pytest.raises(ValueError, match="floating-point"):
        tops.js_divergence(p.long(), p.long(), False)


# -------------------------------------------------------------------------------------- js_pairwise
@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("K", [3, 19])
def test_js_pairwise_matches_formula(dtype, K, device):
    p = _rand(23, K, device=device, dtype=dtype).softmax(-1)
    q = _rand(41, K, device=device, dtype=dtype, seed=1).softmax(-1)
    q[3, :2] = 0
    q[3] /= q[3].sum()
    got = tops.js_pairwise(p, q)
    assert_on(device, got)
    assert got.shape == (23, 41)
    torch.testing.assert_close(got, js_formula(p[:, None], q[None]), **tolerances(dtype))


def test_js_pairwise_strided_and_self(device):
    p = torch.rand(19, 11, dtype=torch.float64, device=device).t()  # [11, 19], columns strided
    p = p / p.sum(-1, keepdim=True)
    got = tops.js_pairwise(p, p)
    assert_on(device, got)
    torch.testing.assert_close(got, js_formula(p[:, None], p[None]))
    assert got.diagonal().abs().max().item() < 1e-12


@pytest.mark.parametrize("dtype", float_dtypes())
def test_js_pairwise_backward_matches_autograd(dtype, device):
    p = _rand(13, 11, device=device, dtype=dtype).softmax(-1)
    q = _rand(21, 11, device=device, dtype=dtype, seed=1).softmax(-1)
    p[2, 4] = 0.0
    got = _grads(tops.js_pairwise, p, q)
    assert_on(device, got)
    ref = _grads(lambda x, y: js_formula(x[:, None], y[None]), p, q)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, **tolerances(dtype))
    assert got[0][2, 4].item() == 0.0


def test_js_pairwise_gradcheck_opcheck_and_bad_inputs(device):
    p = _rand(4, 5, device=device, seed=3).softmax(-1).requires_grad_()
    q = _rand(3, 5, device=device, seed=4).softmax(-1).requires_grad_()
    assert_on(device, tops.js_pairwise(p, q), torch.autograd.grad(tops.js_pairwise(p, q).sum(), (p, q)))
    assert torch.autograd.gradcheck(tops.js_pairwise, (p, q), fast_mode=True)
    torch.library.opcheck(tops.js_pairwise, (p.float(), q.float()))
    g = _rand(4, 3, device=device, seed=5)
    torch.library.opcheck(tops.js_pairwise_backward, (g, p.detach(), q.detach(), True, True))
    with pytest.raises(ValueError, match="entries per row"):
        tops.js_pairwise(p, q[:, :4])
    with (pytest.raises(ValueError, match=r"js_pairwise: p \(probabilities\) must be non-negative"),
          mf.ops.debug_checks()):  # immediate on GPUs too
        tops.js_pairwise(-p.detach(), q)


# ------------------------------------------------------------------------------------- js_stability
def stability_formula(history: torch.Tensor, window: int, from_logits: bool) -> torch.Tensor:
    probs = history.softmax(-1) if from_logits else history
    rows = [torch.full(history.shape[1:2], math.inf, dtype=history.dtype, device=history.device)] * window
    rows += [js_formula(probs[t], probs[t - window:t].mean(0)) for t in range(window, history.shape[0])]
    return torch.stack(rows)


@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("window", [1, 3])
@pytest.mark.parametrize("from_logits", [True, False])
def test_js_stability_matches_formula(dtype, window, from_logits, device):
    history = _rand(11, 5, 7, device=device, dtype=dtype)
    if from_logits:
        history[:, 2, 6] = -math.inf  # a masked candidate of edge 2
    else:
        history = history.softmax(-1)
    got = tops.js_stability(history, window, from_logits)
    want = stability_formula(history, window, from_logits)
    assert_on(device, got)
    assert torch.isinf(got[:window]).all() and (got[:window] > 0).all()
    torch.testing.assert_close(got[window:], want[window:], **tolerances(dtype))


def test_js_stability_strided_history_and_many_operations(device):
    history = _rand(5, 9, 300, device=device, dtype=torch.float64).transpose(0, 1)  # [9, 5, 300], not contiguous
    got = tops.js_stability(history, 2, True)
    assert_on(device, got)
    torch.testing.assert_close(got, stability_formula(history, 2, True))


def test_js_stability_settled_edge_is_zero_and_short_history_is_inf(device):
    history = torch.zeros(6, 2, 4, device=device)
    history[:, 1] = torch.arange(6.0, device=device)[:, None] * torch.tensor([1.0, 0, 0, 0], device=device)
    got = tops.js_stability(history, 2, True)
    assert_on(device, got)
    assert (got[2:, 0] == 0).all() and (got[2:, 1] > 0).all()
    assert torch.isinf(tops.js_stability(history, 6, True)).all()


@pytest.mark.parametrize("scale", [1e4, 1e38])
def test_js_stability_large_float32_logits_are_exact(scale, device):
    """Large float32 logits: the softmax is exp(x - max) / sum, never exp(x - (max + log sum)), whose
    rounding at 1e4 was 1e-4 absolute (the prune threshold is 3e-4) and nonsense at 1e38. Ties give
    exactly 0; nearby logits match the float64 reference of the same float32 values."""
    tied = torch.full((8, 3, 5), scale, dtype=torch.float32, device=device)
    assert (tops.js_stability(tied, 2, True)[2:] == 0).all()
    steps = torch.tensor([0.0, -1.0, -2.5, -0.5, -4.0], device=device) * (scale * 1e-7 if scale > 1e30 else 1.0)
    history = (tied + steps * _rand(8, 3, 1, device=device, dtype=torch.float32).abs()).contiguous()
    got = tops.js_stability(history, 2, True)
    assert_on(device, got)
    want = stability_formula(history.double(), 2, True)
    assert torch.isfinite(got[2:]).all()
    torch.testing.assert_close(got[2:].double(), want[2:], rtol=1e-5, atol=1e-7)
    cpp = torch.ops.mednns_fast.js_stability(history.cpu(), 2, True)  # the C++ kernel, exact here
    torch.testing.assert_close(got[2:].cpu(), cpp[2:], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("K", [7, 300])
def test_js_stability_backward_matches_autograd(dtype, from_logits, K, device):
    history = _rand(9, 4, K, device=device, dtype=dtype)
    if not from_logits:
        history = history.softmax(-1)
    got = _grads(lambda h: tops.js_stability(h, 3, from_logits), history)
    assert_on(device, got)
    ref = _grads(lambda h: stability_formula(h, 3, from_logits), history)
    torch.testing.assert_close(got[0], ref[0], **tolerances(dtype))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the interpreter on +inf
def test_js_stability_gradcheck_opcheck_and_bad_inputs(device):
    history = _rand(6, 2, 3, device=device, seed=3).requires_grad_()
    assert_on(device, torch.autograd.grad(tops.js_stability(history, 2, True)[2:].sum(), (history,)))
    assert torch.autograd.gradcheck(lambda h: tops.js_stability(h, 2, True)[2:], (history,), fast_mode=True)
    torch.library.opcheck(tops.js_stability, (history.detach().float(), 2, True))
    g = _rand(6, 2, device=device, seed=4)
    torch.library.opcheck(tops.js_stability_backward, (g, history.detach(), 2, True))
    h = history.detach().float()
    with pytest.raises(ValueError, match=r"\[T, E, K\]"):
        tops.js_stability(h[0], 2, True)
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        tops.js_stability(h, 0, True)
    # debug_checks: the value checks raise at once on GPUs too (else an asynchronous device assert)
    with pytest.raises(ValueError, match=r"history \(probabilities\) must be non-negative"), mf.ops.debug_checks():
        tops.js_stability(h, 2, False)
    h[3, 1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"history \(logits\) must not contain NaN or \+inf"), mf.ops.debug_checks():
        tops.js_stability(h, 2, True)


# ------------------------------------------------------------------------------------------ compile
def test_torch_compile_fullgraph(device):
    """The three ops and their backwards trace without graph breaks (on CPU: opaque ops, fake kernels)."""
    a, b = _rand(6, 8, device=device, dtype=torch.float32), _rand(6, 8, device=device, dtype=torch.float32, seed=1)
    history = _rand(9, 4, 8, device=device, dtype=torch.float32, seed=2)

    def f(a, b, history):
        return (tops.js_divergence(a, b, True).sum() + tops.js_pairwise(a.softmax(-1), b.softmax(-1)),
                tops.js_stability(history * 2, 3, True))

    compiled = torch.compile(f, fullgraph=True)
    got = _grads(lambda *x: compiled(*x)[0], a, b, history)
    want = _grads(lambda *x: f(*x)[0], a, b, history)
    assert_on(device, got[:2])
    for g, w in zip(got[:2], want[:2], strict=True):
        torch.testing.assert_close(g, w)
    stability = compiled(a, b, history)[1]
    assert_on(device, stability)
    torch.testing.assert_close(stability, stability_formula(history * 2, 3, True), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@needs_gpu
def test_inductor_traces_into_the_kernels():
    """On a GPU the ops are triton_ops: Inductor compiles the user kernels with the graph."""
    a = torch.randn(4096, 10, device="cuda")
    b = torch.randn(4096, 10, device="cuda")
    got = _grads(torch.compile(lambda a, b: tops.js_divergence(a * 2, b, True), fullgraph=True), a, b)
    want = _grads(lambda a, b: js_formula((a * 2).softmax(-1), b.softmax(-1)), a, b)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------- the public ops on "triton"
def test_public_ops_on_triton_match_reference_backend(device):
    """mf.ops.js_* with set_backend("triton") (dims, broadcasting, logits, gradients) equal "reference"."""
    gen = torch.Generator().manual_seed(7)
    p = torch.randn(3, 6, 5, generator=gen, dtype=torch.float64).softmax(1).to(device)
    q = torch.randn(1, 6, 5, generator=gen, dtype=torch.float64).softmax(1).to(device)
    a = torch.randn(4, 2, 9, generator=gen, dtype=torch.float64).to(device)
    a[0, 0, :3] = -math.inf
    history = torch.randn(8, 3, 5, generator=gen, dtype=torch.float64).to(device)

    def values(p, q, a, h):
        return torch.cat([mf.ops.js_divergence(p, q, dim=1).flatten(),
                          mf.ops.js_divergence(a, a.flip(0), from_logits=True).flatten(),
                          mf.ops.js_pairwise(p[:, :, 0], q[:, :, 1]).flatten(),
                          mf.ops.js_stability(h, 3)[3:].flatten()])

    def run():
        return [values(p, q, a, history), *_grads(values, p, q, a, history)]

    assert mf.ops.get_backend() == "triton"
    got = run()
    with mf.ops.use_backend("reference"):
        want = run()
    assert_on(device, got)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
