"""Jensen-Shannon family: js_divergence, js_pairwise, js_stability against scipy (the implementation users
trust), against the references, gradients, opcheck, torch.compile and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, jensenshannon

import mednns_fast as mf
from mednns_fast.ops import reference
from python_tests.support.on_device import assert_on

LN2 = math.log(2.0)
BACKENDS = ["cpp", "reference"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    with mf.ops.use_backend(request.param):
        yield request.param


def scipy_js(p: np.ndarray, q: np.ndarray) -> float:
    """scipy's distance, squared: the divergence (natural log)."""
    return float(jensenshannon(p, q) ** 2)


def random_dists(n: int, K: int, gen: torch.Generator, device: torch.device, zeros: float = 0.3,
                 one_hot: int = 2) -> torch.Tensor:
    """n float64 distributions over K entries on `device` (drawn on the CPU from `gen`), some entries exactly 0
    and `one_hot` one-hot rows."""
    x = torch.rand(n, K, generator=gen, dtype=torch.float64)
    x[torch.rand(n, K, generator=gen) < zeros] = 0.0
    x[torch.arange(n), torch.randint(0, K, (n,), generator=gen)] += 0.05  # no all-zero row
    for r in range(min(one_hot, n)):
        x[r] = 0.0
        x[r, (r * 3) % K] = 1.0
    return (x / x.sum(1, keepdim=True)).to(device)


# ---- values against scipy --------------------------------------------------------------------------

@pytest.mark.parametrize("K", [1, 2, 3, 8, 37])
def test_divergence_matches_scipy(backend, K, device):
    gen = torch.Generator().manual_seed(K)
    p, q = random_dists(23, K, gen, device), random_dists(23, K, gen, device)
    q[5] = p[5]  # identical rows: exactly 0
    expected = torch.tensor([scipy_js(a, b) for a, b in zip(p.cpu().numpy(), q.cpu().numpy(), strict=True)],
                            dtype=torch.float64)
    got = mf.ops.js_divergence(p, q)
    assert_on(device, got)
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-12, atol=1e-15)
    assert got[5] == 0.0
    got32 = mf.ops.js_divergence(p.float(), q.float())
    assert_on(device, got32)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double().cpu(), expected, rtol=1e-5, atol=1e-7)


def test_divergence_extremes(backend, device):
    """Disjoint supports give exactly ln 2; one-hot against itself 0; K=1 always 0."""
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64, device=device)
    q = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64, device=device)
    got = mf.ops.js_divergence(p, q)
    assert_on(device, got)
    expected = torch.tensor([LN2, 0.0, scipy_js(p[2].cpu().numpy(), q[2].cpu().numpy())], dtype=torch.float64)
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-14, atol=0)
    ones = torch.ones(4, 1, device=device)
    same = mf.ops.js_divergence(ones, ones)
    assert_on(device, same)
    assert torch.equal(same, torch.zeros(4, device=device))


@pytest.mark.parametrize("K", [1, 2, 8, 19])
def test_pairwise_matches_scipy(backend, K, device):
    gen = torch.Generator().manual_seed(100 + K)
    p, q = random_dists(13, K, gen, device), random_dists(9, K, gen, device)
    expected = torch.tensor([[scipy_js(a, b) for b in q.cpu().numpy()] for a in p.cpu().numpy()],
                            dtype=torch.float64)
    got = mf.ops.js_pairwise(p, q)
    assert_on(device, got)
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-10, atol=1e-14)
    got32 = mf.ops.js_pairwise(p.float(), q.float())
    assert_on(device, got32)
    torch.testing.assert_close(got32.double().cpu(), expected, rtol=0, atol=3e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_consistent_with_elementwise(backend, dtype, device):
    """The tiled kernel (several row and column tiles, ragged edges) equals the float64 reference on every
    pair (the oracle, not the op under test on the same backend)."""
    gen = torch.Generator().manual_seed(7)
    p, q = random_dists(70, 6, gen, device).to(dtype), random_dists(530, 6, gen, device).to(dtype)
    pairs = reference.js_divergence(p.double()[:, None, :], q.double()[None, :, :]).to(dtype)
    tol = dict(rtol=0, atol=3e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-14)
    got = mf.ops.js_pairwise(p, q)
    assert_on(device, got)
    torch.testing.assert_close(got, pairs, **tol)


def test_float32_near_identical_inputs(backend, device):
    """Rounding-level differences: never NaN, never negative; js_divergence stays accurate (relative)."""
    gen = torch.Generator().manual_seed(3)
    p64 = torch.softmax(torch.randn(64, 8, generator=gen, dtype=torch.float64), -1)
    q64 = p64 * (1 + 1e-6 * torch.randn(64, 8, generator=gen, dtype=torch.float64))
    q64 = q64 / q64.sum(1, keepdim=True)
    p, q = p64.float().to(device), q64.float().to(device)
    exact = reference.js_divergence(p.double(), q.double())  # of the float32 values themselves
    got = mf.ops.js_divergence(p, q)
    assert_on(device, got)
    assert torch.isfinite(got).all() and (got >= 0).all()
    if backend == "cpp":  # the kernel's series form; the textbook reference has only absolute accuracy
        torch.testing.assert_close(got.double(), exact, rtol=1e-3, atol=1e-18)
    else:
        torch.testing.assert_close(got.double(), exact, rtol=0, atol=1e-7)
    pw = mf.ops.js_pairwise(p, q)
    assert_on(device, pw)
    assert torch.isfinite(pw).all() and (pw >= 0).all() and (pw <= LN2).all()
    assert pw.diagonal().max() < 1e-5
    same = mf.ops.js_divergence(p, p)
    assert torch.equal(same, torch.zeros_like(same))


def test_logits_fused_softmax(backend, device):
    gen = torch.Generator().manual_seed(11)
    a, b = torch.randn(5, 4, 9, generator=gen).to(device), torch.randn(5, 4, 9, generator=gen).to(device)
    a[0, 0, :3] = -math.inf  # masked candidates: probability exactly 0
    got = mf.ops.js_divergence(a, b, from_logits=True)
    assert_on(device, got)
    expected = reference.js_divergence(torch.softmax(a.double(), -1), torch.softmax(b.double(), -1))
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-7)
    # extreme logits (one finite entry, huge spreads) in both precisions, against the float64 reference
    for dtype in (torch.float32, torch.float64):
        x, y = (a * 100).to(dtype), (b * 100).to(dtype)
        x[1, 2, 1:] = -math.inf
        y[2, 3] = torch.tensor([1e4, -1e4, 0.0, 3.0, -90.0, -700.0, 7.0, 1e-30, -5.0], dtype=dtype, device=device)
        exact = reference.js_divergence(x.double(), y.double(), from_logits=True)
        tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-15)
        out = mf.ops.js_divergence(x, y, from_logits=True)
        assert_on(device, out)
        torch.testing.assert_close(out.double(), exact, **tol)


def test_dim_and_broadcasting(backend, device):
    gen = torch.Generator().manual_seed(5)
    p = torch.softmax(torch.randn(3, 6, 5, generator=gen, dtype=torch.float64), 1).to(device)
    q = torch.softmax(torch.randn(1, 6, 5, generator=gen, dtype=torch.float64), 1).to(device)
    got = mf.ops.js_divergence(p, q, dim=1)
    assert_on(device, got)
    assert got.shape == (3, 5)
    for i in range(3):
        for j in range(5):
            expected = scipy_js(p[i, :, j].cpu().numpy(), q[0, :, j].cpu().numpy())
            assert got[i, j].item() == pytest.approx(expected, rel=1e-12)
    # non-contiguous inputs (transposed) give the same values
    torch.testing.assert_close(mf.ops.js_divergence(p.transpose(1, 2), q.transpose(1, 2)), got)


def test_half_types(backend, device):
    gen = torch.Generator().manual_seed(2)
    p, q = random_dists(10, 8, gen, device), random_dists(10, 8, gen, device)
    p_np, q_np = p.cpu().numpy(), q.cpu().numpy()
    exact = torch.tensor([scipy_js(a, b) for a, b in zip(p_np, q_np, strict=True)], dtype=torch.float64)
    exact_pairs = torch.from_numpy(cdist(p_np, q_np, "jensenshannon") ** 2)
    for dtype in (torch.bfloat16, torch.float16):
        got = mf.ops.js_divergence(p.to(dtype), q.to(dtype))
        pairs = mf.ops.js_pairwise(p.to(dtype), q.to(dtype))
        assert_on(device, got, pairs)
        assert got.dtype == dtype
        torch.testing.assert_close(got.double().cpu(), exact, rtol=2e-2, atol=2e-3)
        torch.testing.assert_close(pairs.double().cpu(), exact_pairs, rtol=2e-2, atol=2e-3)


# ---- js_stability -----------------------------------------------------------------------------------

def test_stability_definition(backend, device):
    gen = torch.Generator().manual_seed(9)
    T, E, K, window = 17, 3, 5, 4
    h = torch.randn(T, E, K, generator=gen, dtype=torch.float64).to(device)
    h[:, 1, 3:] = -math.inf  # a ragged edge with 3 candidates, padded
    out = mf.ops.js_stability(h, window)
    assert_on(device, out)
    assert out.shape == (T, E) and torch.isinf(out[:window]).all() and (out[:window] > 0).all()
    P = torch.softmax(h, -1).cpu().numpy()
    for t in range(window, T):
        for e in range(E):
            mean = P[t - window:t, e].mean(0)
            assert out[t, e].item() == pytest.approx(scipy_js(P[t, e], mean), rel=1e-10, abs=1e-15)
    probs = mf.ops.js_stability(torch.softmax(h, -1), window, from_logits=False)
    assert_on(device, probs)
    torch.testing.assert_close(probs, out)
    assert torch.isinf(mf.ops.js_stability(h, T)).all()  # window >= T: no epoch has a past


def test_stability_nan_free_and_float32(backend, device):
    T, E, K = 30, 14, 8
    h = torch.zeros(T, E, K, device=device)  # constant weights: divergence exactly 0, no NaN
    out = mf.ops.js_stability(h, 5)
    assert_on(device, out)
    assert not torch.isnan(out).any() and torch.equal(out[5:], torch.zeros(T - 5, E, device=device))
    h = (torch.randn(T, E, K, generator=torch.Generator().manual_seed(1)) * 30).to(device)  # near one-hot rows
    out32 = mf.ops.js_stability(h, 5)
    assert_on(device, out32)
    out64 = reference.js_stability(h.double(), 5)  # the float64 oracle of the same float32 values
    assert not torch.isnan(out32).any()
    torch.testing.assert_close(out32[5:].double(), out64[5:], rtol=1e-4, atol=1e-7)


def test_backends_agree(device):
    gen = torch.Generator().manual_seed(4)
    h = torch.randn(40, 6, 7, generator=gen, dtype=torch.float64).to(device)
    p, q = random_dists(31, 7, gen, device), random_dists(17, 7, gen, device)
    results = {}
    for name in BACKENDS:
        with mf.ops.use_backend(name):
            results[name] = (mf.ops.js_stability(h, 6), mf.ops.js_pairwise(p, q),
                             mf.ops.js_divergence(p[:17], q, from_logits=True))
        assert_on(device, results[name])
    for a, b in zip(results["cpp"], results["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-15)


# ---- gradients --------------------------------------------------------------------------------------

def positive(shape, gen, device):
    x = torch.rand(*shape, generator=gen, dtype=torch.float64) + 0.05
    return (x / x.sum(-1, keepdim=True)).to(device).requires_grad_()


def test_gradcheck_divergence(backend, device):
    gen = torch.Generator().manual_seed(21)
    p, q = positive((6, 5), gen, device), positive((6, 5), gen, device)
    assert_on(device, torch.autograd.grad(mf.ops.js_divergence(p, q).sum(), (p, q)))
    assert torch.autograd.gradcheck(mf.ops.js_divergence, (p, q))
    a = torch.randn(4, 3, 7, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    b = torch.randn(4, 3, 7, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: mf.ops.js_divergence(a, b, dim=1, from_logits=True), (a, b))
    # one side only
    assert torch.autograd.gradcheck(lambda a: mf.ops.js_divergence(a, b.detach(), from_logits=True), (a,))


def test_gradcheck_pairwise(backend, device):
    gen = torch.Generator().manual_seed(22)
    p, q = positive((5, 4), gen, device), positive((7, 4), gen, device)
    assert_on(device, torch.autograd.grad(mf.ops.js_pairwise(p, q).sum(), (p, q)))
    assert torch.autograd.gradcheck(mf.ops.js_pairwise, (p, q))
    assert torch.autograd.gradcheck(lambda q: mf.ops.js_pairwise(p.detach(), q), (q,))


@pytest.mark.parametrize("from_logits", [True, False])
def test_gradcheck_stability(backend, from_logits, device):
    gen = torch.Generator().manual_seed(23)
    window = 3
    h = torch.randn(11, 2, 4, generator=gen, dtype=torch.float64).to(device)
    h = (h if from_logits else torch.softmax(h, -1) + 0.01).requires_grad_()
    assert_on(device, torch.autograd.grad(mf.ops.js_stability(h, window, from_logits)[window:].sum(), (h,)))
    # the first `window` rows are +inf constants: check the rest
    assert torch.autograd.gradcheck(lambda h: mf.ops.js_stability(h, window, from_logits)[window:], (h,))


def test_gradient_convention_at_zeros(device):
    """Where p_k == 0 the gradient is defined (0 for p_k, 1/2 log 2 for q_k > 0): kernel == reference."""
    gen = torch.Generator().manual_seed(24)
    p, q = random_dists(12, 6, gen, device), random_dists(12, 6, gen, device)
    g = torch.randn(12, generator=gen, dtype=torch.float64).to(device)

    def grads(fn, *xs):
        xs = [x.clone().requires_grad_() for x in xs]
        out = fn(*xs)
        return torch.autograd.grad((out * g[: out.shape[0], None] if out.dim() == 2 else out * g).sum(), xs)

    for fn in (mf.ops.js_divergence, lambda p, q: mf.ops.js_pairwise(p, q[:5])):
        with mf.ops.use_backend("cpp"):
            fast = grads(fn, p, q)
        with mf.ops.use_backend("reference"):
            ref = grads(fn, p, q)
        assert_on(device, fast, ref)
        for a, b in zip(fast, ref, strict=True):
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # explicit values on one row: p = (1, 0), q = (0, 1) -> dJS/dp = (1/2 log 2, 0)
    p1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64, device=device, requires_grad=True)
    q1 = torch.tensor([[0.0, 1.0]], dtype=torch.float64, device=device)
    (gp,) = torch.autograd.grad(mf.ops.js_divergence(p1, q1).sum(), (p1,))
    assert_on(device, gp)
    torch.testing.assert_close(gp, torch.tensor([[0.5 * LN2, 0.0]], dtype=torch.float64, device=device))
    # masked (-inf) logits get exactly zero gradient
    h = torch.randn(9, 2, 5, generator=gen, dtype=torch.float64).to(device)
    h[:, 0, 4] = -math.inf
    h.requires_grad_()
    (gh,) = torch.autograd.grad(mf.ops.js_stability(h, 2)[2:].sum(), (h,))
    assert_on(device, gh)
    assert torch.isfinite(gh).all() and torch.equal(gh[:, 0, 4], torch.zeros(9, dtype=torch.float64, device=device))


# ---- opcheck and torch.compile -----------------------------------------------------------------------

def test_opcheck(device):
    gen = torch.Generator().manual_seed(30)
    p, q = positive((6, 5), gen, device), positive((4, 5), gen, device)
    ops = torch.ops.mednns_fast
    q_rows = q[:1].detach().expand(6, 5).contiguous().requires_grad_()  # leaves: no non-leaf .grad warnings
    torch.library.opcheck(ops.js_divergence.default, (p, q_rows, False))
    logits = torch.randn(3, 5, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(ops.js_divergence.default,
                          (logits, torch.randn(3, 5, dtype=torch.float64, device=device), True))
    torch.library.opcheck(ops.js_pairwise.default, (p, q))
    h = torch.randn(8, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(ops.js_stability.default, (h, 3, True))
    g = torch.rand(6, dtype=torch.float64, device=device)
    torch.library.opcheck(ops.js_divergence_backward.default,
                          (g, p.detach(), p.detach().flip(0), False, True, True))
    torch.library.opcheck(ops.js_pairwise_backward.default,
                          (torch.rand(6, 4, dtype=torch.float64, device=device), p.detach(), q.detach(), True, False))
    torch.library.opcheck(ops.js_stability_backward.default,
                          (torch.rand(8, 3, dtype=torch.float64, device=device), h.detach(), 3, True))
    assert_on(device, ops.js_divergence(p, q_rows, False), ops.js_pairwise(p, q), ops.js_stability(h, 3, True),
              ops.js_divergence_backward(g, p.detach(), p.detach().flip(0), False, True, True))


def test_torch_compile_fullgraph(device):
    def loss(alphas: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        stab = mf.ops.js_stability(alphas, 2)[2:].sum()
        return stab + mf.ops.js_pairwise(p, q).mean() + mf.ops.js_divergence(p, p.flip(0)).sum()

    gen = torch.Generator().manual_seed(31)
    alphas = torch.randn(6, 3, 4, generator=gen).to(device).requires_grad_()
    p, q = positive((5, 4), gen, device).detach().float(), positive((3, 4), gen, device).detach().float()
    with mf.ops.use_backend("cpp"):
        compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
        got = compiled(alphas, p, q)
        (g_got,) = torch.autograd.grad(got, (alphas,))
        assert_on(device, got, g_got)
        expected = loss(alphas, p, q)
        (g_exp,) = torch.autograd.grad(expected, (alphas,))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(g_got, g_exp)


# ---- bad input --------------------------------------------------------------------------------------

def test_bad_input(backend, device):
    p = torch.full((3, 4), 0.25, device=device)
    with pytest.raises(ValueError, match="non-negative"):
        mf.ops.js_divergence(p - 0.5, p)
    with pytest.raises(ValueError, match="finite"):
        mf.ops.js_divergence(p, p.clone().fill_(math.nan))
    with pytest.raises(ValueError, match="finite"):
        mf.ops.js_pairwise(p, torch.full((2, 4), math.inf, device=device))
    with pytest.raises(ValueError, match="dtype"):
        mf.ops.js_divergence(p, p.double())
    with pytest.raises(ValueError, match="broadcast"):
        mf.ops.js_divergence(p, torch.full((3, 5), 0.2, device=device))
    with pytest.raises(ValueError, match="K=4 entries per row but q has K=5"):
        mf.ops.js_pairwise(p, torch.full((3, 5), 0.2, device=device))
    with pytest.raises(ValueError, match="2-D"):
        mf.ops.js_pairwise(p[0], p)
    with pytest.raises(ValueError, match="floating-point"):
        mf.ops.js_divergence(p.long(), p.long())
    with pytest.raises(ValueError, match="K >= 1"):
        mf.ops.js_pairwise(torch.empty(2, 0, device=device), torch.empty(3, 0, device=device))
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        mf.ops.js_divergence(p, p.clone().fill_(math.inf), from_logits=True)
    with pytest.raises(ValueError, match="every entry is -inf"):
        mf.ops.js_stability(torch.full((4, 2, 3), -math.inf, device=device), 2)
    with pytest.raises(ValueError, match="window"):
        mf.ops.js_stability(torch.zeros(4, 2, 3, device=device), 0)
    with pytest.raises(ValueError, match="3-D"):
        mf.ops.js_stability(torch.zeros(4, 3, device=device), 1)
    with pytest.raises(ValueError, match="non-negative"):
        mf.ops.js_stability(-torch.ones(4, 2, 3, device=device), 1, from_logits=False)


def test_bad_input_reaches_the_kernel_checks(device):
    """The C++ ops check too (callers of torch.ops.mednns_fast.* bypass the Python wrapper)."""
    ops = torch.ops.mednns_fast
    p = torch.full((3, 4), 0.25, device=device)
    with pytest.raises(ValueError, match="non-negative"):
        ops.js_pairwise(p, -p)
    with pytest.raises(ValueError, match="p has shape"):
        ops.js_divergence(p, p[:2])
    with pytest.raises(ValueError, match="grad has shape"):
        ops.js_divergence_backward(torch.ones(2, device=device), p, p, False, True, True)
    with pytest.raises(ValueError, match="window must be >= 1"):
        ops.js_stability(torch.zeros(3, 2, 2, device=device), -1, True)
