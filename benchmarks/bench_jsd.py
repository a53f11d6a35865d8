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

import pytest
import torch
from conftest import mark_baseline
from scipy.spatial.distance import cdist

import mednns_fast as mf
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
