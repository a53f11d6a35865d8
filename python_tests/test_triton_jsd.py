"""Triton Jensen-Shannon kernels (js_divergence and its backward, js_pairwise, js_stability) against the
plain formula and scipy. Runs on CPU under TRITON_INTERPRET=1 (see triton_support.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from triton_support import DEVICE, float_dtypes, needs_gpu, tolerances, triton_runs  # noqa: F401

pytestmark = [pytest.mark.triton, pytest.mark.usefixtures("triton_runs")]

tops = torch.ops.mednns_fast_triton
LN2 = math.log(2.0)


def js_formula(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The textbook divergence: KL of p and q to their mean, halved; 0 log 0 = 0; clamped to [0, ln 2]."""
    m = 0.5 * (p + q)

    def kl(a):
        return torch.where(a > 0, a * torch.log(a / m), torch.zeros_like(a)).sum(dim)

    return (0.5 * (kl(p) + kl(q))).clamp(0, LN2)


def _rand(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(DEVICE)


# ------------------------------------------------------------------------------------- js_divergence
@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("K", [1, 7, 301])  # 301: the K axis is walked in several chunks
@pytest.mark.parametrize("from_logits", [False, True])
def test_js_divergence_matches_formula(dtype, K, from_logits):
    a, b = _rand(37, K, dtype=dtype), _rand(37, K, dtype=dtype, seed=1)
    p, q = a.softmax(-1), b.softmax(-1)
    if K > 1:  # exact zeros: 0 log 0 = 0
        p[:3, 0] = 0
        q[2:5, -1] = 0
    got = tops.js_divergence(a, b, -1, True) if from_logits else tops.js_divergence(p, q, -1, False)
    want = js_formula(a.softmax(-1), b.softmax(-1)) if from_logits else js_formula(p, q)
    torch.testing.assert_close(got, want, **tolerances(dtype))
    assert got.dtype == dtype and got.shape == (37,)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_js_divergence_any_dim_and_layout(dim):
    p = torch.rand(5, 11, 6, dtype=torch.float64, device=DEVICE)
    q = torch.rand(6, 11, 5, dtype=torch.float64, device=DEVICE).transpose(0, 2)  # not contiguous
    torch.testing.assert_close(tops.js_divergence(p, q, dim, False), js_formula(p, q, dim))


def test_js_divergence_matches_scipy():
    p = torch.rand(9, 13, dtype=torch.float64, device=DEVICE)
    q = torch.rand(9, 13, dtype=torch.float64, device=DEVICE)
    p, q = p / p.sum(-1, keepdim=True), q / q.sum(-1, keepdim=True)
    want = jensenshannon(p.cpu().numpy(), q.cpu().numpy(), axis=-1) ** 2  # scipy: the square root
    np.testing.assert_allclose(tops.js_divergence(p, q, -1, False).cpu().numpy(), want, rtol=1e-10)


def test_js_divergence_bounds_exact():
    p = torch.tensor([[0.2, 0.8, 0.0], [1.0, 0.0, 0.0]], device=DEVICE)
    q = torch.tensor([[0.2, 0.8, 0.0], [0.0, 0.5, 0.5]], device=DEVICE)
    got = tops.js_divergence(p, q, -1, False)
    assert got[0].item() == 0.0  # identical
    assert got[1].item() == pytest.approx(LN2, abs=1e-7)  # disjoint supports
    logits = torch.tensor([[1e4, -1e4, 0.0]], device=DEVICE)  # softmax underflows to exact zeros
    assert torch.isfinite(tops.js_divergence(logits, -logits, -1, True)).all()


@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("from_logits", [False, True])
def test_js_divergence_backward_matches_autograd(dtype, from_logits):
    a = _rand(7, 3, 19, dtype=dtype)
    b = _rand(7, 3, 19, dtype=dtype, seed=1)
    if not from_logits:  # strictly positive probabilities: the formula is smooth there
        a, b = a.softmax(1), b.softmax(1)
    g = _rand(7, 19, dtype=dtype, seed=2)
    a_r, b_r = a.clone().requires_grad_(), b.clone().requires_grad_()
    ins = (a_r.softmax(1), b_r.softmax(1)) if from_logits else (a_r, b_r)
    js_formula(*ins, dim=1).backward(g)
    a_t, b_t = a.clone().requires_grad_(), b.clone().requires_grad_()
    tops.js_divergence(a_t, b_t, 1, from_logits).backward(g)
    torch.testing.assert_close(a_t.grad, a_r.grad, **tolerances(dtype))
    torch.testing.assert_close(b_t.grad, b_r.grad, **tolerances(dtype))


def test_js_divergence_zero_probability_gradient_is_finite():
    p = torch.tensor([[0.0, 0.5, 0.5]], device=DEVICE, requires_grad=True)
    q = torch.tensor([[0.3, 0.3, 0.4]], device=DEVICE, requires_grad=True)
    tops.js_divergence(p, q, -1, False).sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad[0, 0].item() == 0.0


@pytest.mark.parametrize("from_logits", [False, True])
def test_js_divergence_gradcheck(from_logits):
    a = _rand(3, 5, seed=3)
    b = _rand(3, 5, seed=4)
    if not from_logits:
        a, b = a.softmax(-1), b.softmax(-1)
    a.requires_grad_()
    b.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: tops.js_divergence(x, y, -1, from_logits), (a, b))


def test_js_divergence_opcheck():
    a = _rand(4, 9, dtype=torch.float32).requires_grad_()
    b = _rand(4, 9, dtype=torch.float32, seed=1).requires_grad_()
    torch.library.opcheck(tops.js_divergence, (a, b, -1, True))
    g = _rand(4, dtype=torch.float32, seed=2)
    torch.library.opcheck(tops.js_divergence_backward, (g, a.detach(), b.detach(), -1, True))


def test_js_divergence_bad_inputs_name_the_argument():
    p = torch.full((3, 4), 0.25, device=DEVICE)
    bad = p.clone()
    bad[1, 2] = -0.1
    with pytest.raises(ValueError, match=r"js_divergence: q must hold finite, non-negative probabilities"):
        tops.js_divergence(p, bad, -1, False)
    nan = p.clone()
    nan[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"js_divergence: p must hold finite logits"):
        tops.js_divergence(nan, p, -1, True)
    with pytest.raises(ValueError, match="p and js_divergence: q must hold"):
        tops.js_divergence(nan, bad, -1, False)
    with pytest.raises(ValueError, match="they must match"):
        tops.js_divergence(p, p[:, :3], -1, False)
    with pytest.raises(ValueError, match="out of range"):
        tops.js_divergence(p, p, 2, False)
    with pytest.raises(ValueError, match="floating-point"):
        tops.js_divergence(p.long(), p.long(), -1, False)


# -------------------------------------------------------------------------------------- js_pairwise
@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("K", [3, 19])
def test_js_pairwise_matches_formula(dtype, K):
    p = _rand(23, K, dtype=dtype).softmax(-1)
    q = _rand(41, K, dtype=dtype, seed=1).softmax(-1)
    q[3, :2] = 0
    q[3] /= q[3].sum()
    got = tops.js_pairwise(p, q)
    assert got.shape == (23, 41)
    torch.testing.assert_close(got, js_formula(p[:, None], q[None]), **tolerances(dtype))


def test_js_pairwise_strided_and_self():
    p = torch.rand(19, 11, dtype=torch.float64, device=DEVICE).t()  # [11, 19], columns strided
    p = p / p.sum(-1, keepdim=True)
    got = tops.js_pairwise(p, p)
    torch.testing.assert_close(got, js_formula(p[:, None], p[None]))
    assert got.diagonal().abs().max().item() < 1e-12


def test_js_pairwise_opcheck_and_bad_inputs():
    p = _rand(5, 7, dtype=torch.float32).softmax(-1)
    q = _rand(6, 7, dtype=torch.float32, seed=1).softmax(-1)
    torch.library.opcheck(tops.js_pairwise, (p, q))
    with pytest.raises(ValueError, match=r"\[N, K\] and q \[M, K\]"):
        tops.js_pairwise(p, q[:, :5])
    with pytest.raises(ValueError, match="js_pairwise: p must hold finite, non-negative"):
        tops.js_pairwise(-p, q)


# ------------------------------------------------------------------------------------- js_stability
def stability_formula(history: torch.Tensor, window: int, from_logits: bool) -> torch.Tensor:
    probs = history.softmax(-1) if from_logits else history
    out = torch.full(history.shape[:2], math.inf, dtype=history.dtype, device=history.device)
    for t in range(window, history.shape[0]):
        out[t] = js_formula(probs[t], probs[t - window:t].mean(0))
    return out


@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("window", [1, 3])
@pytest.mark.parametrize("from_logits", [True, False])
def test_js_stability_matches_formula(dtype, window, from_logits):
    history = _rand(11, 5, 7, dtype=dtype)
    if not from_logits:
        history = history.softmax(-1)
    got = tops.js_stability(history, window, from_logits)
    want = stability_formula(history, window, from_logits)
    assert torch.isinf(got[:window]).all() and (got[:window] > 0).all()
    torch.testing.assert_close(got[window:], want[window:], **tolerances(dtype))


def test_js_stability_strided_history_and_many_operations():
    history = _rand(5, 9, 300, dtype=torch.float64).transpose(0, 1)  # [9, 5, 300], not contiguous
    torch.testing.assert_close(tops.js_stability(history, 2, True), stability_formula(history, 2, True))


def test_js_stability_settled_edge_is_zero_and_short_history_is_inf():
    history = torch.zeros(6, 2, 4, device=DEVICE)
    history[:, 1] = torch.arange(6.0, device=DEVICE)[:, None] * torch.tensor([1.0, 0, 0, 0], device=DEVICE)
    got = tops.js_stability(history, 2, True)
    assert (got[2:, 0] == 0).all() and (got[2:, 1] > 0).all()
    assert torch.isinf(tops.js_stability(history, 6, True)).all()


def test_js_stability_opcheck_and_bad_inputs():
    history = _rand(7, 3, 5, dtype=torch.float32)
    torch.library.opcheck(tops.js_stability, (history, 2, True))
    with pytest.raises(ValueError, match=r"\[T, E, K\]"):
        tops.js_stability(history[0], 2, True)
    with pytest.raises(ValueError, match="window must be >= 1"):
        tops.js_stability(history, 0, True)
    with pytest.raises(ValueError, match="non-negative"):
        tops.js_stability(history, 2, False)
    history[3, 1, 2] = float("inf")
    with pytest.raises(ValueError, match="must be finite"):
        tops.js_stability(history, 2, True)


# ------------------------------------------------------------------------------------------ compile
def test_torch_compile_fullgraph():
    """The three ops trace without graph breaks (on CPU: opaque ops with fake kernels)."""
    a, b = _rand(6, 8, dtype=torch.float32), _rand(6, 8, dtype=torch.float32, seed=1)
    history = _rand(9, 4, 8, dtype=torch.float32, seed=2)

    @torch.compile(fullgraph=True)
    def f(a, b, history):
        return (tops.js_divergence(a, b, -1, True).sum() + tops.js_pairwise(a.softmax(-1), b.softmax(-1)),
                tops.js_stability(history * 2, 3, True))

    pair, stab = f(a, b, history)
    want = js_formula(a.softmax(-1), b.softmax(-1)).sum() + js_formula(a.softmax(-1)[:, None],
                                                                        b.softmax(-1)[None])
    torch.testing.assert_close(pair, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stab, stability_formula(history * 2, 3, True), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@needs_gpu
def test_inductor_traces_into_the_kernels():
    """On a GPU the ops are triton_ops: Inductor compiles the user kernels with the graph."""
    a = torch.randn(4096, 10, device="cuda", requires_grad=True)
    b = torch.randn(4096, 10, device="cuda")
    f = torch.compile(lambda a, b: tops.js_divergence(a * 2, b, -1, True).sum(), fullgraph=True)
    f(a, b).backward()
    a_r = a.detach().clone().requires_grad_()
    js_formula((a_r * 2).softmax(-1), b.softmax(-1)).sum().backward()
    torch.testing.assert_close(a.grad, a_r.grad, rtol=1e-4, atol=1e-6)
