"""Jensen-Shannon family: the C++ kernels against the composed PyTorch reference and against scipy.

- js_pairwise, N = M = 4096, K = 8, float32: against `reference.js_pairwise` (composed PyTorch ops,
  applied to 512 rows of p at a time so its [rows, M, K] temporaries fit in memory; target >= 5x);
- js_pairwise against what a scipy user runs: the vectorised `cdist(p, q, "jensenshannon") ** 2` over the
  same 4096 x 4096 pairs (scipy computes in float64: ours in float64 and float32 beside it; target: the
  kernel >= 100x scipy per pair);
- js_stability over T = 200 epochs, E = 14 edges, K = 8 candidates, window 10 (a DARTS cell's search with
  the pruner's default window): against the
  reference (softmax, window means by unfold, js_divergence);
- js_divergence on 2^20 rows of K = 8 against the reference.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial.distance import cdist

import mednns_fast as mf
from benchmarks.conftest import mark_baseline
from mednns_fast.ops import _library, reference

pytestmark = pytest.mark.skipif(not _library.LOADED, reason="C++ extension not built")

N = M = 4096
K = 8


def dists(n: int, k: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(seed)), -1).to(dtype)


@pytest.fixture(scope="module")
def pq():
    return dists(N, K, 0), dists(M, K, 1)


def _per_pair(benchmark, pairs: int) -> None:
    benchmark.extra_info["ns_per_pair"] = round(benchmark.stats.stats.median / pairs * 1e9, 3)


def reference_pairwise_chunked(p: torch.Tensor, q: torch.Tensor, rows: int = 512) -> torch.Tensor:
    return torch.cat([reference.js_pairwise(p[i:i + rows], q) for i in range(0, p.shape[0], rows)])


def test_pairwise_reference(benchmark, pq):
    benchmark.group = "js_pairwise 4096x4096 K=8 float32"
    mark_baseline(benchmark)
    benchmark.pedantic(reference_pairwise_chunked, args=pq, rounds=3, iterations=1, warmup_rounds=0)
    _per_pair(benchmark, N * M)


def test_pairwise_cpp(benchmark, pq):
    benchmark.group = "js_pairwise 4096x4096 K=8 float32"
    p, q = pq
    out = benchmark(mf.ops.js_pairwise, p, q)
    torch.testing.assert_close(out[:64], reference.js_pairwise(p[:64], q), rtol=0, atol=3e-6)
    _per_pair(benchmark, N * M)


SCIPY = "js_pairwise 4096x4096 K=8 vs scipy cdist"


def scipy_cdist(p, q):
    return cdist(p, q, "jensenshannon") ** 2  # scipy returns the distance: its square is the divergence


@pytest.fixture(scope="module")
def pq64(pq):
    """The rows in float64, renormalised: scipy divides each row by its sum (ours takes rows as given)."""
    return tuple(x.double() / x.double().sum(1, keepdim=True) for x in pq)


def test_pairwise_scipy_cdist(benchmark, pq64):
    benchmark.group = SCIPY
    mark_baseline(benchmark)
    p, q = (x.numpy() for x in pq64)
    out = benchmark.pedantic(scipy_cdist, (p, q), rounds=3, iterations=1, warmup_rounds=0)
    want = reference.js_pairwise(pq64[0][:64], pq64[1])
    torch.testing.assert_close(torch.from_numpy(out[:64]), want, rtol=1e-9, atol=1e-12)
    _per_pair(benchmark, N * M)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pairwise_cpp_vs_scipy(benchmark, pq64, dtype):
    benchmark.group = SCIPY
    p, q = (x.to(dtype) for x in pq64)
    out = benchmark(mf.ops.js_pairwise, p, q)
    want = torch.from_numpy(scipy_cdist(p[:64].double().numpy(), q.double().numpy()))
    torch.testing.assert_close(out[:64].double(), want, rtol=0, atol=3e-6 if dtype == torch.float32 else 1e-12)
    _per_pair(benchmark, N * M)


@pytest.fixture(scope="module")
def history():
    return torch.randn(200, 14, 8, generator=torch.Generator().manual_seed(2)).cumsum(0) * 0.05


def test_stability_reference(benchmark, history):
    benchmark.group = "js_stability T=200 E=14 K=8 window=10"
    mark_baseline(benchmark)
    benchmark(reference.js_stability, history, 10)


def test_stability_cpp(benchmark, history):
    benchmark.group = "js_stability T=200 E=14 K=8 window=10"
    out = benchmark(mf.ops.js_stability, history, 10)
    torch.testing.assert_close(out, reference.js_stability(history, 10), rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def rows():
    return dists(1 << 20, K, 3), dists(1 << 20, K, 4)


def test_divergence_reference(benchmark, rows):
    benchmark.group = "js_divergence 2^20 rows K=8 float32"
    mark_baseline(benchmark)
    benchmark(reference.js_divergence, *rows)


def test_divergence_cpp(benchmark, rows):
    benchmark.group = "js_divergence 2^20 rows K=8 float32"
    benchmark(mf.ops.js_divergence, *rows)


# ---- rows of benchmarks/gpu_bench.py (C++ CUDA vs Triton vs eager and compiled PyTorch, on a GPU) -------
# Problem sizes; the GPU_SMALL ones only smoke-test the script's plumbing (their timings mean nothing).
GPU_SIZES = {
    "js_divergence": [(1 << 20, 10, True), (1 << 16, 1000, True), (1 << 20, 10, False)],
    "js_pairwise": [(2048, 2048, 64), (512, 512, 1000)],
    "js_stability": [(200, 112, 8, 5)],
}
GPU_SMALL = {
    "js_divergence": [(33, 7, True), (5, 300, False)],
    "js_pairwise": [(9, 13, 5)],
    "js_stability": [(9, 3, 5, 2)],
}


def gpu_cases(bench, mf, device: torch.device, dtype: torch.dtype, small: bool = False) -> list:
    """This family's `bench.Case`s for benchmarks/gpu_bench.py (`bench` is that script's module)."""
    T = torch.ops.mednns_fast_triton
    es = torch.empty(0, dtype=dtype).element_size()
    sizes = GPU_SMALL if small else GPU_SIZES
    cases = []

    # js_divergence: memory bound, rows of class probabilities (from logits: fused softmax).
    for R, K, logits in sizes["js_divergence"]:
        def make_js(R=R, K=K, logits=logits):
            a = torch.randn(R, K, device=device, dtype=dtype)
            b = torch.randn(R, K, device=device, dtype=dtype)
            return (a, b) if logits else (a.softmax(-1), b.softmax(-1))

        def js_eager(p, q, logits=logits):
            if logits:
                p, q = p.softmax(-1), q.softmax(-1)
            m = 0.5 * (p + q)
            kl = torch.xlogy(p, p / m).sum(-1) + torch.xlogy(q, q / m).sum(-1)
            return (0.5 * kl).clamp(0, math.log(2))

        cases.append(bench.Case(
            "js_divergence", f"R={R} K={K} {'logits' if logits else 'probs'}", make_js,
            reference=lambda p, q, js_eager=js_eager: js_eager(p.double(), q.double()),
            backends={"eager": js_eager,
                      "cpp": bench.public_on(mf, "js_divergence", "cpp", device, from_logits=logits)
                      if bench.cpp_cuda(mf, "js_divergence") else None,
                      "triton": bench.triton_call(mf, "js_divergence", lambda p, q, logits=logits: T.js_divergence(
                          p, q, logits), device, from_logits=logits)},
            nbytes=(2 * R * K + R) * es, tol=1e-5,
            why_missing={"cpp": "no C++ CUDA kernel registered for js_divergence"}))

    # js_pairwise: compute bound (one log per pair and class).
    for N, M, K in sizes["js_pairwise"]:
        def make_pair(N=N, M=M, K=K):
            return (torch.randn(N, K, device=device, dtype=dtype).softmax(-1),
                    torch.randn(M, K, device=device, dtype=dtype).softmax(-1))

        def pair_eager(p, q):
            m = 0.5 * (p[:, None] + q[None])
            return (0.5 * (torch.xlogy(p[:, None], p[:, None] / m).sum(-1)
                           + torch.xlogy(q[None], q[None] / m).sum(-1))).clamp(0, math.log(2))

        cases.append(bench.Case(
            "js_pairwise", f"N={N} M={M} K={K}", make_pair,
            reference=lambda p, q: pair_eager(p.double(), q.double()),
            backends={"eager": pair_eager,
                      "cpp": bench.public_on(mf, "js_pairwise", "cpp", device)
                      if bench.cpp_cuda(mf, "js_pairwise") else None,
                      "triton": bench.triton_call(mf, "js_pairwise", T.js_pairwise, device)},
            flops=5 * N * M * K, flop_dtype=dtype, tol=1e-4,
            why_missing={"cpp": "no C++ CUDA kernel registered for js_pairwise"}))

    # js_stability: a whole search's history, tiny and latency bound.
    for T_, E, K, window in sizes["js_stability"]:
        def make_hist(T_=T_, E=E, K=K, window=window):
            return torch.randn(T_, E, K, device=device, dtype=dtype), window

        def stab_eager(h, window):
            p = h.softmax(-1)
            c = torch.cat([torch.zeros_like(p[:1]), p.cumsum(0)])
            mean = (c[window:-1] - c[:-window - 1]) / window
            now = p[window:]
            m = 0.5 * (now + mean)
            js = 0.5 * (torch.xlogy(now, now / m).sum(-1) + torch.xlogy(mean, mean / m).sum(-1))
            return torch.cat([torch.full_like(p[:window, :, 0], math.inf), js.clamp(0, math.log(2))])

        cases.append(bench.Case(
            "js_stability", f"T={T_} E={E} K={K} window={window}", make_hist,
            reference=lambda h, window, stab_eager=stab_eager: stab_eager(h.double(), window),
            backends={"eager": stab_eager,
                      "cpp": bench.public_on(mf, "js_stability", "cpp", device)
                      if bench.cpp_cuda(mf, "js_stability") else None,
                      "triton": bench.triton_call(mf, "js_stability", T.js_stability, device)},
            nbytes=T_ * E * K * es, tol=1e-5,
            why_missing={"cpp": "no C++ CUDA kernel registered for js_stability"}))
    return cases
