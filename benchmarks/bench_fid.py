"""FID family: per-pair cost of `fid_matrix` / `frechet_distance` / `fid_from_features` against pytorch-fid's
`calculate_frechet_distance` (scipy `sqrtm` of S1 S2) and the torchmetrics-style `eigvals(S1 @ S2)`
formula, plus the FeatureStats update kernel against plain ATen.

Groups: (a) full rank, N=8 datasets, d=512, n=2000; (b) the MedNNS regime, N=12, d=2048, n=64
(singular covariances); (c) one d=2048 pair with n=1000 and with n=5000; (d) N=6, d=256, n=1000, with
the floor (the factorisations and eigenvalue problems alone). In (a), (c) and (d) the baselines
compute the same pairs as ours (all 28 pairs of (a), all 15 of (d)); in (b) pytorch-fid runs on 1 of the 66 pairs, one
round (scipy's sqrtm at d=2048 takes tens of seconds per pair here: all pairs would take most of an hour
per run). Every entry declares how many pairs one call computes (`units`) and the summary compares time
per pair. Every result is
checked against a float64 reference (numpy, independent of torch); `rel_err` is the largest relative
error over the pairs an entry computed, and ours must stay within 1e-6.

Features are float32 (what a feature extractor gives); statistics are computed once (FeatureStats)
before timing, as in MedNNS, except in the `fid_from_features` entries, whose time includes them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import mednns_fast as mf
from benchmarks.conftest import mark_baseline, set_units
from mednns_fast.ops import fid
from python_tests.support.outside_fid import eigvals_fid, gram_fid, load_pytorch_fid, symmetric_fid

calculate_frechet_distance = load_pytorch_fid()  # raises when pytorch-fid is not installed
AGREEMENT = 1e-6


class Suite:
    """N datasets of float32 features [n, d], their statistics, and float64 reference FIDs per pair."""

    def __init__(self, N: int, n: int, d: int, seed: int, reference: str) -> None:
        g = torch.Generator().manual_seed(seed)
        self.features = []
        for i in range(N):
            mix = torch.eye(d) * (1 + 0.2 * i) + torch.randn(d, d, generator=g) * (0.5 / d**0.5)
            shift = torch.randn(d, generator=g) * 0.5
            self.features.append(torch.randn(n, d, generator=g) @ mix + shift)
        self.stats = [mf.ops.FeatureStats(d).update(x).finalize() for x in self.features]
        self.numpy = [(s.mu.numpy(), s.sigma.numpy()) for s in self.stats]
        self.pairs = list(itertools.combinations(range(N), 2))
        ref = {"gram": lambda i, j: gram_fid(self.features[i].numpy(), self.features[j].numpy()),
               "symmetric": lambda i, j: symmetric_fid(*self.numpy[i], *self.numpy[j])}[reference]
        self.reference = {p: ref(*p) for p in self.pairs}

    def rel_err(self, values: dict[tuple[int, int], float]) -> float:
        return max(abs(v - self.reference[p]) / abs(self.reference[p]) for p, v in values.items())

    def matrix_rel_err(self, m: torch.Tensor) -> float:
        return self.rel_err({(i, j): float(m[i, j]) for i, j in self.pairs})


_suites: dict[str, Suite] = {}


def suite(name: str) -> Suite:
    """Built on first use, shared by a group's entries."""
    if name not in _suites:
        _suites[name] = {
            "a": lambda: Suite(8, 2000, 512, seed=0, reference="symmetric"),
            "b": lambda: Suite(12, 64, 2048, seed=1, reference="gram"),
            "c1000": lambda: Suite(2, 1000, 2048, seed=2, reference="gram"),
            "c5000": lambda: Suite(2, 5000, 2048, seed=3, reference="symmetric"),
            "d": lambda: Suite(6, 1000, 256, seed=4, reference="symmetric"),
        }[name]()
    return _suites[name]


def record(benchmark, s: Suite, values: dict[tuple[int, int], float], units: int, ours: bool) -> None:
    set_units(benchmark, units)
    err = s.rel_err(values)
    benchmark.extra_info["rel_err"] = f"{err:.1e}"
    if ours:
        assert err <= AGREEMENT, f"disagrees with the float64 reference: {err:.2e}"


def loop(s: Suite, pairs, fn) -> dict[tuple[int, int], float]:
    return {(i, j): float(fn(*s.numpy[i], *s.numpy[j])) for i, j in pairs}


def bench_pytorch_fid(benchmark, s: Suite, pairs, rounds: int = 1) -> None:
    mark_baseline(benchmark)
    values = benchmark.pedantic(loop, (s, pairs, calculate_frechet_distance), rounds=rounds, iterations=1)
    record(benchmark, s, values, len(pairs), ours=False)


def bench_fid_matrix(benchmark, s: Suite, stats=None, rounds: int = 5) -> None:
    m = benchmark.pedantic(mf.ops.fid_matrix, (stats or s.stats,), rounds=rounds, iterations=1,
                           warmup_rounds=1)
    record(benchmark, s, {p: float(m[p]) for p in s.pairs}, len(s.pairs), ours=True)


# ---- (a) full rank: N=8, d=512, n=2000 -------------------------------------------------------------

A = "(a) full rank N=8 d=512 n=2000, per pair"


@pytest.mark.benchmark(group=A)
def test_a_pytorch_fid_all_pairs(benchmark):
    bench_pytorch_fid(benchmark, suite("a"), suite("a").pairs)


@pytest.mark.benchmark(group=A)
def test_a_eigvals_formula_all_pairs(benchmark):
    s = suite("a")
    values = benchmark.pedantic(loop, (s, s.pairs, eigvals_fid), rounds=1, iterations=1)
    record(benchmark, s, values, len(s.pairs), ours=False)


@pytest.mark.benchmark(group=A)
def test_a_frechet_distance_loop(benchmark):
    # Ours without the pair op: every pair factors both covariances again.
    s = suite("a")
    values = benchmark.pedantic(
        lambda: {(i, j): float(mf.ops.frechet_distance(s.stats[i].mu, s.stats[i].sigma, s.stats[j].mu,
                                                       s.stats[j].sigma)) for i, j in s.pairs},
        rounds=2, iterations=1)
    record(benchmark, s, values, len(s.pairs), ours=True)


@pytest.mark.benchmark(group=A)
def test_a_fid_matrix(benchmark):
    bench_fid_matrix(benchmark, suite("a"))


@pytest.mark.benchmark(group=A)
def test_a_pair_op_one_pair_per_call(benchmark):
    # The same factors and pair op, called once per pair: each pair then runs alone with threaded
    # BLAS/LAPACK instead of one pair per thread (what fid_matrix does with N*(N-1)/2 >= threads).
    s = suite("a")

    def pairs_in_turn():
        factors = [fid._psd_factor(st.sigma, "sigma") for st in s.stats]
        traces = [float(st.sigma.trace()) for st in s.stats]
        out = {}
        for i, j in s.pairs:
            t = float(fid.fid_trace_sqrt_pairs([factors[i], factors[j]])[0, 1])
            diff = s.stats[i].mu - s.stats[j].mu
            out[(i, j)] = float(diff @ diff) + traces[i] + traces[j] - 2 * t
        return out

    values = benchmark.pedantic(pairs_in_turn, rounds=3, iterations=1, warmup_rounds=1)
    record(benchmark, s, values, len(s.pairs), ours=True)


# ---- (d) N=6 datasets, d=256, n=1000: all 15 pairs against pytorch-fid, and the floor -----------------
# The floor is the linear algebra no exact route avoids, timed alone with plain torch calls on one thread:
# one factorisation per dataset and one symmetric eigenvalue problem of size d per pair (float64). Two
# floors: the eigen route as stated (6 eigh + 15 eigvalsh) and ours (6 Cholesky + 15 eigvalsh);
# fid_matrix adds the pair products L_i^T S_j L_i, the checks and the assembly, and runs the pairs one
# per thread (so with T threads its floor is about 1/T of the one-thread floor).

D = "(d) N=6 d=256 n=1000, per pair"


@pytest.mark.benchmark(group=D)
def test_d_pytorch_fid_all_pairs(benchmark):
    bench_pytorch_fid(benchmark, suite("d"), suite("d").pairs, rounds=3)


@pytest.mark.benchmark(group=D)
def test_d_fid_matrix(benchmark):
    bench_fid_matrix(benchmark, suite("d"), rounds=20)


def _pair_matrices(s: Suite) -> list[torch.Tensor]:
    """M_ij = L_i^T S_j L_i (eigenvalues those of S_i S_j) for every pair, formed before timing."""
    sigmas = [st.sigma.double() for st in s.stats]
    chol = [torch.linalg.cholesky(x) for x in sigmas]
    return [chol[i].T @ sigmas[j] @ chol[i] for i, j in s.pairs]


@pytest.mark.parametrize("factor", ["eigh", "cholesky"])
def test_d_floor_1thread(benchmark, factor):
    benchmark.group = D
    s = suite("d")
    sigmas = [st.sigma.double() for st in s.stats]
    pair_matrices = _pair_matrices(s)
    factorise = torch.linalg.eigh if factor == "eigh" else torch.linalg.cholesky_ex

    def floor():
        for x in sigmas:
            factorise(x)
        return [torch.linalg.eigvalsh(m) for m in pair_matrices]

    benchmark.extra_info["role"] = "floor"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lams = benchmark.pedantic(floor, rounds=20, iterations=1, warmup_rounds=1)
    finally:
        torch.set_num_threads(threads)
    set_units(benchmark, len(s.pairs))
    # The floor's eigenvalues give the pairs' FIDs too (what they leave out is cheap): a sanity check.
    values = {p: float((s.stats[p[0]].mu.double() - s.stats[p[1]].mu.double()).square().sum() + sigmas[p[0]].trace()
                       + sigmas[p[1]].trace() - 2 * lam.clamp_min(0).sqrt().sum()) for p, lam in zip(s.pairs, lams)}
    assert s.rel_err(values) <= AGREEMENT


# ---- (b) MedNNS: N=12, d=2048, n=64 ----------------------------------------------------------------

B = "(b) MedNNS N=12 d=2048 n=64, per pair"


@pytest.mark.benchmark(group=B)
def test_b_pytorch_fid_1_pair(benchmark):
    bench_pytorch_fid(benchmark, suite("b"), suite("b").pairs[:1])


@pytest.mark.benchmark(group=B)
def test_b_fid_matrix(benchmark):
    bench_fid_matrix(benchmark, suite("b"))


@pytest.mark.benchmark(group=B)
def test_b_fid_matrix_without_kept_rows(benchmark):
    # Statistics without their low-rank factor: each d x d covariance is factored (rank-revealing eigh).
    s = suite("b")
    bench_fid_matrix(benchmark, s, [st._replace(factor=None) for st in s.stats], rounds=1)


# ---- (c) one pair, d=2048, n=1000 and n=5000 -------------------------------------------------------


@pytest.mark.parametrize("n", [1000, 5000])
def test_c_pytorch_fid(benchmark, n):
    benchmark.group = f"(c) one pair d=2048 n={n}"
    bench_pytorch_fid(benchmark, suite(f"c{n}"), [(0, 1)])


@pytest.mark.parametrize("n", [1000, 5000])
def test_c_fid_matrix(benchmark, n):
    benchmark.group = f"(c) one pair d=2048 n={n}"
    bench_fid_matrix(benchmark, suite(f"c{n}"), rounds=3)


@pytest.mark.parametrize("n", [1000, 5000])
def test_c_frechet_distance(benchmark, n):
    # From mu and sigma alone (no kept rows), as pytorch-fid gets them.
    benchmark.group = f"(c) one pair d=2048 n={n}"
    s = suite(f"c{n}")
    (a, b) = s.stats
    value = benchmark.pedantic(mf.ops.frechet_distance, (a.mu, a.sigma, b.mu, b.sigma), rounds=3,
                               iterations=1)
    record(benchmark, s, {(0, 1): float(value)}, 1, ours=True)


@pytest.mark.parametrize("n", [1000, 5000])
def test_c_fid_from_features(benchmark, n):
    # From the float32 features: the time includes the statistics (or the Gram form when n < d).
    benchmark.group = f"(c) one pair d=2048 n={n}"
    s = suite(f"c{n}")
    value = benchmark.pedantic(mf.ops.fid_from_features, tuple(s.features), rounds=3, iterations=1)
    record(benchmark, s, {(0, 1): float(value)}, 1, ours=True)


# ---- the statistics update kernel against plain ATen -------------------------------------------------


def aten_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xd = x.double()
    mean = xd.mean(0)
    xc = xd - mean
    return mean, xc.T @ xc


@pytest.mark.parametrize("n,d", [(64, 2048), (2000, 512), (5000, 2048)])
def test_update_aten(benchmark, n, d):
    benchmark.group = f"FeatureStats.update n={n} d={d} float32"
    mark_baseline(benchmark)
    x = torch.randn(n, d) + 1e4
    benchmark.pedantic(aten_moments, (x,), rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("n,d", [(64, 2048), (2000, 512), (5000, 2048)])
def test_update_kernel(benchmark, n, d):
    benchmark.group = f"FeatureStats.update n={n} d={d} float32"
    x = torch.randn(n, d) + 1e4
    stats = benchmark.pedantic(lambda: mf.ops.FeatureStats(d, keep_rows=False).update(x), rounds=3,
                               iterations=1, warmup_rounds=1)
    _, m2 = aten_moments(x)
    err = float((stats.m2 - m2).abs().max() / m2.abs().max())
    benchmark.extra_info["rel_err"] = f"{err:.1e}"
    assert err <= 1e-12
    np.testing.assert_allclose(stats.m2.numpy(), stats.m2.numpy().T)


# ---- the covariance check (symmetry and finiteness of sigma, run by every distance) -----------------


@pytest.fixture(scope="module")
def sigma_2048() -> torch.Tensor:
    x = torch.randn(3000, 2048, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return torch.cov(x.T)


def test_covariance_defects_aten(benchmark, sigma_2048):
    benchmark.group = "covariance check d=2048 float64"
    mark_baseline(benchmark)
    benchmark(mf.ops.reference.fid_covariance_defects, sigma_2048)


def test_covariance_defects_op(benchmark, sigma_2048):
    benchmark.group = "covariance check d=2048 float64"
    got = benchmark(torch.ops.mednns_fast.fid_covariance_defects, sigma_2048)
    torch.testing.assert_close(got, mf.ops.reference.fid_covariance_defects(sigma_2048), rtol=0, atol=0)


# ---- rows of benchmarks/gpu_bench.py (C++ CUDA vs Triton vs eager and compiled PyTorch, on a GPU) -------
# Problem sizes; the GPU_SMALL ones only smoke-test the script's plumbing (their timings mean nothing).
GPU_SIZES = {"feature_stats_update_": [(4096, 2048), (50000, 64)]}
GPU_SMALL = {"feature_stats_update_": [(41, 19)]}


def gpu_cases(bench, mf, device: torch.device, dtype: torch.dtype, small: bool = False) -> list:
    """This family's `bench.Case`s for benchmarks/gpu_bench.py (`bench` is that script's module)."""
    T = torch.ops.mednns_fast_triton
    sizes = GPU_SMALL if small else GPU_SIZES
    cases = []

    # FeatureStats.update: a batch's moments (compute bound: a symmetric rank-n update, float64
    # accumulation) merged into running statistics of 1000 rows, in place.
    for n, d in sizes["feature_stats_update_"]:
        def make_feat(n=n, d=d):
            return (torch.randn(d, device=device, dtype=torch.float64),
                    torch.eye(d, device=device, dtype=torch.float64) * 1000,
                    torch.randn(n, d, device=device, dtype=dtype) * 2 + 1)

        def update_eager(mean, m2, x, count=1000):
            x = x.double()
            mean_b = x.mean(0)
            c = x - mean_b
            delta = mean_b - mean
            m2 += c.T @ c + torch.outer(delta, delta) * (count * x.shape[0] / (count + x.shape[0]))
            mean += delta * (x.shape[0] / (count + x.shape[0]))
            return mean, m2

        def in_place(op):
            def update(mean, m2, x):
                op(mean, m2, x, 1000)
                return mean, m2
            return update

        cases.append(bench.Case(
            "feature_stats_update_", f"n={n} d={d}", make_feat, reference=update_eager,
            backends={"eager": update_eager,
                      "cpp": in_place(torch.ops.mednns_fast.feature_stats_update_)
                      if bench.cpp_cuda(mf, "feature_stats_update_") else None,
                      "triton": in_place(T.feature_stats_update_)},
            flops=2 * n * d * d, flop_dtype=dtype, tol=1e-4, mutates=True,
            why_missing={"cpp": "no C++ CUDA kernel registered for feature_stats_update_"}))
    return cases
