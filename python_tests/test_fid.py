"""FID family: FeatureStats (C++ update kernel), frechet_distance, fid_matrix, fid_from_features.

Checked against float64 numpy/scipy computations of the textbook formula, against pytorch-fid's own
calculate_frechet_distance, and against the exact Gram-form value where covariances are singular.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import mednns_fast as mf
from mednns_fast.ops import fid, reference
from mednns_fast.ops.fid import FeatureStats, GaussianStats
from python_tests.support.on_device import assert_on
from python_tests.support.outside_fid import gram_fid, load_pytorch_fid, textbook_fid

F64 = torch.float64


def features(n: int, d: int, seed: int, offset: float = 0.0, dtype=F64, device="cpu") -> torch.Tensor:
    """Correlated rows with a non-trivial mean: x = z A + offset + shift (drawn on the CPU, moved to `device`)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=F64) / d**0.5 + torch.eye(d, dtype=F64)
    shift = torch.randn(d, generator=g, dtype=F64)
    return (torch.randn(n, d, generator=g, dtype=F64) @ mix + shift + offset).to(dtype).to(device)


def numpy_moments(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    a = x.double().cpu().numpy()
    return a.mean(0), np.atleast_2d(np.cov(a, rowvar=False))


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ---- FeatureStats --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_stats_match_numpy(backend, dtype, device):
    x = features(301, 37, seed=1, dtype=dtype, device=device)
    with mf.ops.use_backend(backend):
        stats = FeatureStats(37, device=device)
        for batch in torch.split(x, [1, 100, 0, 57, 143]):  # odd sizes, an empty and a one-row batch
            stats.update(batch)
        g = stats.finalize()
    mu, sigma = numpy_moments(x)
    assert_on(device, g.mu, g.sigma)
    assert g.n == 301 and g.mu.dtype == F64 and g.factor is None
    assert rel(g.mu.cpu(), mu) < 1e-13
    assert rel(g.sigma.cpu(), sigma) < 1e-12
    assert torch.equal(g.sigma, g.sigma.T)


def test_update_op_large_batch_uses_upper_blocks(device):
    # >= 256 rows and d > 256: the kernel computes the block upper triangle and mirrors it.
    x = features(700, 300, seed=2, device=device)
    stats = FeatureStats(300, device=device).update(x)
    _, sigma = numpy_moments(x)
    got = stats.finalize().sigma
    assert_on(device, got)
    assert rel(got.cpu(), sigma) < 1e-12


def test_update_op_matches_reference_op(device):
    x = features(260, 270, seed=3, dtype=torch.float32, device=device)
    strided = torch.cat([x, x], dim=1)[:, :270]  # rows at a wider stride, read in place
    outs = []
    for fn in (torch.ops.mednns_fast.feature_stats_update_, reference.feature_stats_update_):
        mean, m2 = torch.randn(270, dtype=F64, device=device), torch.randn(270, 270, dtype=F64, device=device)
        fn(mean, m2, strided[:100], 0)  # count == 0 overwrites whatever was there
        fn(mean, m2, strided[100:], 100)
        outs.append((mean, m2))
    assert_on(device, outs)
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-12, atol=1e-10)


def test_float32_large_offset_stays_accurate(device):
    # float32 features around 1e4: the covariance (of the float32 values) within 1e-6, as float64 would be.
    x = features(4000, 16, seed=4, offset=1e4, dtype=torch.float32, device=device)
    stats = FeatureStats(16, device=device)
    for batch in x.split(333):
        stats.update(batch)
    _, sigma = numpy_moments(x)
    got = stats.finalize().sigma
    assert_on(device, got)
    assert rel(got.cpu(), sigma) < 1e-6
    # The raw formula sum(x x^T) - n mu mu^T in float32 fails this bound: the test can fail.
    xf = x.clone()
    raw = (xf.T @ xf - len(xf) * torch.outer(xf.mean(0), xf.mean(0))) / (len(xf) - 1)
    assert rel(raw.cpu(), sigma) > 1e-3


def test_float32_accumulator(device):
    x = features(500, 20, seed=5, offset=1e3, device=device)
    g = FeatureStats(20, dtype=torch.float32, device=device).update(x).finalize()
    assert_on(device, g.mu, g.sigma)
    assert g.sigma.dtype == torch.float32
    assert rel(g.sigma.cpu(), numpy_moments(x)[1]) < 1e-5


def test_merge_equals_single_pass(device):
    x = features(500, 23, seed=6, offset=50.0, device=device)
    single = FeatureStats(23, keep_rows=False, device=device).update(x)
    parts = [FeatureStats(23, keep_rows=False, device=device).update(p) for p in x.split([120, 1, 200, 179])]
    merged = FeatureStats(23, keep_rows=False, device=device)
    for p in parts:
        merged.merge(p)
    assert_on(device, merged.mean, merged.m2)
    assert merged.count == single.count
    torch.testing.assert_close(merged.mean, single.mean, rtol=1e-14, atol=1e-12)
    torch.testing.assert_close(merged.m2, single.m2, rtol=1e-12, atol=1e-9)


def test_kept_rows_give_exact_factor(device):
    x = features(30, 50, seed=7, device=device)
    a = FeatureStats(50, device=device).update(x[:10])
    g = a.merge(FeatureStats(50, device=device).update(x[10:])).finalize()
    assert_on(device, g.mu, g.sigma, g.factor)
    assert g.factor.shape == (50, 29)
    torch.testing.assert_close(g.factor @ g.factor.T, g.sigma, rtol=1e-12, atol=1e-12)
    # One row more than dim: the rows are dropped, the covariance is (generically) full rank.
    assert FeatureStats(50, device=device).update(features(51, 50, seed=8, device=device)).finalize().factor is None


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("n", [20, 80])  # with kept rows, without
def test_save_load_roundtrip(tmp_path, suffix, n, device):
    stats = FeatureStats(40, device=device).update(features(n, 40, seed=9, device=device))
    path = tmp_path / f"stats{suffix}"
    stats.save(path)
    loaded = FeatureStats.load(path, device=device)
    assert_on(device, loaded.mean, loaded.m2)
    assert loaded.count == n and torch.equal(loaded.mean, stats.mean) and torch.equal(loaded.m2, stats.m2)
    a, b = stats.finalize(), loaded.finalize()
    assert (a.factor is None) == (b.factor is None) == (n > 40)
    if a.factor is not None:
        assert torch.equal(a.factor, b.factor)
    loaded.update(features(5, 40, seed=10, device=device))  # still usable as a running state
    assert loaded.count == n + 5


ALL_REDUCE_CASES = (5, 40)  # rows per rank: kept and gathered (2 * 5 <= 12 dims); dropped


def _all_reduce_worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for n_per_rank in ALL_REDUCE_CASES:
            x = features(world * n_per_rank, 12, seed=11, offset=100.0)
            # Unequal shards: rank 0 gets one row fewer than rank 1.
            cut = n_per_rank - 1
            mine = x[:cut] if rank == 0 else x[cut:]
            g = FeatureStats(12).update(mine).all_reduce().finalize()
            # numpy arrays travel by value (tensors would be shared through file descriptors of a process
            # that is about to exit).
            factor = None if g.factor is None else g.factor.numpy()
            queue.put((n_per_rank, rank, g.mu.numpy(), g.sigma.numpy(), g.n, factor))
    finally:
        torch.distributed.destroy_process_group()


def test_all_reduce_across_ranks():
    # CPU only: two gloo ranks in spawned processes (gloo gathers CPU tensors; one GPU holds no two NCCL ranks).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_all_reduce_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in range(2 * len(ALL_REDUCE_CASES))]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for n_per_rank, _, r_mu, r_sigma, r_n, r_factor in results:
        mu, sigma = numpy_moments(features(2 * n_per_rank, 12, seed=11, offset=100.0))
        assert r_n == 2 * n_per_rank
        assert rel(r_mu, mu) < 1e-13 and rel(r_sigma, sigma) < 1e-11
        assert (r_factor is None) == (2 * n_per_rank > 12)
        if r_factor is not None:
            np.testing.assert_allclose(r_factor @ r_factor.T, r_sigma, rtol=1e-10, atol=1e-10)


def test_stats_bad_inputs(device):
    stats = FeatureStats(8, device=device)
    with pytest.raises(ValueError, match=r"features must be \[n, 8\]"):
        stats.update(torch.randn(4, 9, device=device))
    with pytest.raises(ValueError, match="2-D"):
        stats.update(torch.randn(8, device=device))
    with pytest.raises(ValueError, match="floating-point"):
        stats.update(torch.ones(3, 8, dtype=torch.int64, device=device))
    bad = torch.randn(5, 8, device=device)
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"), mf.ops.debug_checks():  # immediate on GPUs too
        stats.update(bad)
    assert stats.count == 0  # a refused batch leaves the state as it was
    with pytest.raises(ValueError, match="at least 2 rows"):
        stats.update(torch.randn(1, 8, device=device)).finalize()
    with pytest.raises(ValueError, match="dim=9"):
        stats.merge(FeatureStats(9, device=device))
    with pytest.raises(ValueError, match="dtype"):
        FeatureStats(8, dtype=torch.float16)


def test_update_op_bad_inputs(device):
    op = torch.ops.mednns_fast.feature_stats_update_
    mean, m2 = torch.zeros(6, dtype=F64, device=device), torch.zeros(6, 6, dtype=F64, device=device)
    with pytest.raises(ValueError, match=r"m2 must be \[6, 6\]"):
        op(mean, torch.zeros(5, 5, dtype=F64, device=device), torch.randn(3, 6, device=device), 0)
    with pytest.raises(ValueError, match="m2 has dtype"):
        op(mean, m2.float(), torch.randn(3, 6, device=device), 0)
    with pytest.raises(ValueError, match="count must be >= 0"):
        op(mean, m2, torch.randn(3, 6, device=device), -1)
    x = torch.randn(3, 6, device=device)
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        op(mean, m2, x, 0)


def test_update_op_opcheck(device):
    mean, m2 = torch.zeros(9, dtype=F64, device=device), torch.zeros(9, 9, dtype=F64, device=device)
    torch.library.opcheck(torch.ops.mednns_fast.feature_stats_update_,
                          (mean, m2, torch.randn(7, 9, device=device), 3))
    x64 = torch.randn(7, 9, dtype=F64, device=device)
    torch.library.opcheck(torch.ops.mednns_fast.feature_stats_update_, (mean, m2, x64, 0))
    assert_on(device, mean, m2)


# ---- frechet_distance -----------------------------------------------------------------------------


def gaussian(n: int, d: int, seed: int, offset: float = 0.0, device="cpu"):
    """Features x [n, d] and their numpy mean and covariance as float64 tensors, all on `device`."""
    x = features(n, d, seed, offset, device=device)
    mu, sigma = numpy_moments(x)
    return x, torch.from_numpy(mu).to(device), torch.from_numpy(sigma).to(device)


@pytest.mark.parametrize("d", [1, 7, 64, 200])
def test_frechet_matches_scipy_textbook(d, device):
    _, mu1, s1 = gaussian(4 * d + 20, d, seed=d, device=device)
    _, mu2, s2 = gaussian(3 * d + 20, d, seed=d + 1, offset=0.3, device=device)
    expected = textbook_fid(mu1.cpu().numpy(), s1.cpu().numpy(), mu2.cpu().numpy(), s2.cpu().numpy())
    got = mf.ops.frechet_distance(mu1, s1, mu2, s2)
    assert_on(device, got)
    assert got.dtype == F64 and got.dim() == 0
    assert abs(float(got) - expected) <= 1e-8 * expected
    # Symmetric in its two arguments, float32 inputs computed in float64.
    assert abs(float(mf.ops.frechet_distance(mu2, s2, mu1, s1)) - expected) <= 1e-8 * expected
    got32 = mf.ops.frechet_distance(mu1.float(), s1.float(), mu2.float(), s2.float())
    assert_on(device, got32)
    assert abs(float(got32) - expected) <= 1e-5 * expected


def test_frechet_matches_pytorch_fid(device):
    calculate_frechet_distance = load_pytorch_fid()
    for seed, d in [(0, 16), (1, 100)]:
        _, mu1, s1 = gaussian(500, d, seed=seed, device=device)
        _, mu2, s2 = gaussian(400, d, seed=seed + 10, offset=0.1, device=device)
        theirs = calculate_frechet_distance(mu1.cpu().numpy(), s1.cpu().numpy(), mu2.cpu().numpy(), s2.cpu().numpy())
        got = mf.ops.frechet_distance(mu1, s1, mu2, s2)
        assert_on(device, got)
        ours = float(got)
        assert abs(ours - theirs) <= 1e-8 * theirs


def test_frechet_of_identical_gaussians_is_zero(device):
    _, mu, s = gaussian(100, 30, seed=3, device=device)
    got = mf.ops.frechet_distance(mu, s, mu, s)
    assert_on(device, got)
    assert 0.0 <= float(got) < 1e-10 * float(s.trace())


def test_frechet_singular_covariances(device):
    # n < d: both covariances singular (rank n - 1); the Gram form of the features is the exact value.
    x, mu1, s1 = gaussian(20, 60, seed=4, device=device)
    y, mu2, s2 = gaussian(35, 60, seed=5, offset=0.5, device=device)
    expected = gram_fid(x.cpu().numpy(), y.cpu().numpy())
    got = mf.ops.frechet_distance(mu1, s1, mu2, s2)
    assert_on(device, got)
    assert abs(float(got) - expected) <= 1e-9 * expected
    # One singular, one full rank.
    z, mu3, s3 = gaussian(300, 60, seed=6, device=device)
    expected = gram_fid(x.cpu().numpy(), z.cpu().numpy())
    assert abs(float(mf.ops.frechet_distance(mu1, s1, mu3, s3)) - expected) <= 1e-9 * expected
    # Exact zero rows and columns (dead features) in one covariance.
    s4 = s3.clone()
    s4[:, :10] = 0
    s4[:10, :] = 0
    z4 = z.clone()
    z4[:, :10] = 0
    expected = gram_fid(z4.cpu().numpy(), z.cpu().numpy())
    got = mf.ops.frechet_distance(mu3 * (s4.diagonal() > 0), s4, mu3, s3)
    assert_on(device, got)
    assert abs(float(got) - expected) <= 1e-9 * expected


@pytest.mark.parametrize("d", [4, 6])
def test_frechet_gradcheck(d, device):
    # Well-separated spectra: distinct eigen- and singular values, no rank change under perturbation.
    g = torch.Generator().manual_seed(d)
    q1, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    q2, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    s1 = q1 @ torch.diag(torch.arange(1.0, d + 1, dtype=F64)) @ q1.T
    s2 = q2 @ torch.diag(torch.arange(1.0, d + 1, dtype=F64) * 1.7 + 0.5) @ q2.T
    mu1, mu2 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    inputs = [t.to(device, copy=True).requires_grad_() for t in (mu1, s1, mu2, s2)]
    assert_on(device, torch.autograd.grad(mf.ops.frechet_distance(*inputs), inputs))
    assert torch.autograd.gradcheck(mf.ops.frechet_distance, inputs)


def test_frechet_gradcheck_symmetric_route(monkeypatch, device):
    # With the SVD route switched off the eigenvalue route is differentiated (C C^T, eigvalsh).
    monkeypatch.setattr(fid, "_SVD_MAX_RANK", 0)
    x = features(12, 5, seed=12, device=device).requires_grad_()
    y = features(15, 5, seed=13, device=device).requires_grad_()
    assert_on(device, torch.autograd.grad(mf.ops.fid_from_features(x, y), (x, y)))
    assert torch.autograd.gradcheck(mf.ops.fid_from_features, (x, y))


def test_frechet_bad_inputs(device):
    _, mu, s = gaussian(50, 6, seed=7, device=device)
    with pytest.raises(ValueError, match="symmetric"):
        mf.ops.frechet_distance(mu, s + torch.triu(torch.ones(6, 6, dtype=F64, device=device), 1), mu, s)
    not_psd = s - 2 * float(torch.linalg.eigvalsh(s)[-1]) * torch.full((6, 6), 1 / 6, dtype=F64, device=device)
    with pytest.raises(ValueError, match="sigma2 must be positive semi-definite"):
        mf.ops.frechet_distance(mu, s, mu, not_psd)
    with pytest.raises(ValueError, match="sigma1 must be positive semi-definite"):
        mf.ops.frechet_distance(mu, not_psd, mu, s)
    nan = s.clone()
    nan[1, 1] = float("nan")
    with pytest.raises(ValueError, match="sigma1 must be finite"):
        mf.ops.frechet_distance(mu, nan, mu, s)
    with pytest.raises(ValueError, match=r"sigma2 must be \[6, 6\]"):
        mf.ops.frechet_distance(mu, s, mu, s[:5, :5])
    with pytest.raises(ValueError, match="one dim d"):
        mf.ops.frechet_distance(mu, s, mu[:5], s[:5, :5])
    with pytest.raises(ValueError, match="1-D mean"):
        mf.ops.frechet_distance(mu[None], s, mu, s)
    with pytest.raises(ValueError, match="mu1 is empty"):
        mf.ops.frechet_distance(mu[:0], s[:0, :0], mu[:0], s[:0, :0])
    with pytest.raises(ValueError, match="positive semi-definite"), mf.ops.use_backend("reference"):
        mf.ops.frechet_distance(mu, s, mu, not_psd)


# ---- fid_from_features ----------------------------------------------------------------------------


@pytest.mark.parametrize("n1,n2,d", [(10, 13, 40), (30, 200, 40), (300, 250, 40), (2, 2, 3)])
def test_fid_from_features_matches_gram(n1, n2, d, device):
    x = features(n1, d, seed=n1, dtype=torch.float32, device=device)
    y = features(n2, d, seed=n2 + 1, offset=0.2, dtype=torch.float32, device=device)
    expected = gram_fid(x.cpu().numpy(), y.cpu().numpy())
    got = mf.ops.fid_from_features(x, y)
    assert_on(device, got)
    assert abs(float(got) - expected) <= 1e-9 * expected
    with mf.ops.use_backend("reference"):
        assert abs(float(mf.ops.fid_from_features(x, y)) - expected) <= 1e-6 * expected


def test_fid_from_features_duplicate_rows_fall_back_to_svd(monkeypatch, device):
    # Repeated rows make the pair matrix rank deficient: the eigenvalue route's error bound rejects it.
    monkeypatch.setattr(fid, "_SVD_MAX_RANK", 0)
    x = features(20, 50, seed=14, device=device).repeat(2, 1)
    y = features(25, 50, seed=15, device=device)
    expected = gram_fid(x.cpu().numpy(), y.cpu().numpy())
    got = mf.ops.fid_from_features(x, y)
    assert_on(device, got)
    assert abs(float(got) - expected) <= 1e-9 * expected


def test_fid_from_features_bad_inputs(device):
    with pytest.raises(ValueError, match="one feature dim"):
        mf.ops.fid_from_features(torch.randn(5, 3, device=device), torch.randn(5, 4, device=device))
    with pytest.raises(ValueError, match="n >= 2"):
        mf.ops.fid_from_features(torch.randn(1, 3, device=device), torch.randn(5, 3, device=device))
    y = torch.randn(5, 3, device=device)
    y[2, 1] = float("nan")
    with pytest.raises(ValueError, match="y must be finite"), mf.ops.debug_checks():  # immediate on GPUs too
        mf.ops.fid_from_features(torch.randn(5, 3, device=device), y)


# ---- fid_matrix -------------------------------------------------------------------------------------


def mixed_suite(d: int = 48, device="cpu") -> tuple[list[torch.Tensor], list[GaussianStats]]:
    """Datasets of every kind on `device`: full rank, rank n - 1 with kept rows, singular without a factor,
    and an exactly duplicated dataset (a zero distance off the diagonal)."""
    sizes = [200, 150, 20, 35, 300, 20]
    xs = [features(n, d, seed=20 + i, offset=0.1 * i, device=device) for i, n in enumerate(sizes)]
    xs.append(xs[1].clone())
    stats = [FeatureStats(d, device=device).update(x).finalize() for x in xs]
    stats[5] = stats[5]._replace(factor=None)  # singular sigma: factored by the rank-revealing eigh
    return xs, stats


@pytest.mark.parametrize("svd_max_rank", [0, 128, 10**6])  # eigenvalue route first / the default / SVD only
def test_fid_matrix_matches_gram(monkeypatch, svd_max_rank, device):
    monkeypatch.setattr(fid, "_SVD_MAX_RANK", svd_max_rank)
    xs, stats = mixed_suite(device=device)
    got = mf.ops.fid_matrix(stats)
    assert_on(device, got)
    n = len(xs)
    expected = np.array([[0.0 if i == j else gram_fid(xs[i].cpu().numpy(), xs[j].cpu().numpy()) for j in range(n)]
                         for i in range(n)])
    assert got.shape == (n, n) and got.dtype == F64
    assert torch.equal(got, got.T) and torch.all(got.diagonal() == 0)
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=1e-9, atol=1e-9 * expected.max())
    assert float(got[1, 6]) < 1e-9 * expected.max()  # identical datasets


def test_fid_matrix_matches_pairwise_frechet_and_reference(device):
    _, stats = mixed_suite(20, device)
    got = mf.ops.fid_matrix(stats)
    with mf.ops.use_backend("reference"):
        ref = mf.ops.fid_matrix(stats)
    assert_on(device, got, ref)
    for i in range(len(stats)):
        for j in range(len(stats)):
            if i != j:
                f = mf.ops.frechet_distance(stats[i].mu, stats[i].sigma, stats[j].mu, stats[j].sigma)
                assert abs(float(got[i, j]) - float(f)) <= 1e-9 * float(got.max())
    # The reference takes sqrt of eigenvalues of singular products: accurate to about 1e-7 there.
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6 * float(got.max()))


def test_fid_matrix_one_dataset(device):
    _, stats = mixed_suite(10, device)
    got = mf.ops.fid_matrix(stats[:1])
    assert_on(device, got)
    assert torch.equal(got, torch.zeros(1, 1, dtype=F64, device=device))


def test_pair_op_matches_reference_and_opcheck(device):
    _, stats = mixed_suite(48, device)
    op = torch.ops.mednns_fast.fid_trace_sqrt_pairs
    fs = [fid.Factor(s.factor) if s.factor is not None else fid._psd_factor(s.sigma, "s") for s in stats]
    assert fs[0].lower and fs[0].sigma is not None and not fs[5].lower  # Cholesky and eigh factors
    factors, lower, sigmas = [f.l for f in fs], [f.lower for f in fs], [f.sigma for f in fs]
    expected = reference.fid_trace_sqrt_pairs(factors)
    for svd_max_rank in (0, 10**6):  # symmetric routes (congruence with sigmas, C C^T) / SVD only
        for given in (sigmas, [None] * len(fs)):
            got = op(factors, lower, given, svd_max_rank, 1e-10)
            assert_on(device, got)
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-8)
    torch.library.opcheck(op, (factors[:3], lower[:3], sigmas[:3], 2, 1e-10))
    with pytest.raises(ValueError, match="all factors need one dim d"):
        op([factors[0], factors[1][:5]], [False, False], [None, None], 2, 1e-10)
    with pytest.raises(ValueError, match="svd_max_rank must be >= 0"):
        op(factors, lower, sigmas, -1, 1e-10)
    with pytest.raises(ValueError, match="marked lower-triangular so it must be square"):
        op([factors[2], factors[3]], [True, False], [None, None], 2, 1e-10)
    with pytest.raises(ValueError, match="need one entry per factor"):
        op(factors[:2], [True], [None, None], 2, 1e-10)
    with pytest.raises(ValueError, match=r"sigmas\[1\] must be \[48, 48\]"):
        op(factors[:2], lower[:2], [None, sigmas[0][:5]], 2, 1e-10)


def test_ops_under_torch_compile(device):
    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(mean, m2, x, a, b):
        torch.ops.mednns_fast.feature_stats_update_(mean, m2, x, 0)
        return torch.ops.mednns_fast.fid_trace_sqrt_pairs([a, b], [False, False], [None, None], 2, 1e-10) * 2

    mean, m2 = torch.zeros(6, dtype=F64, device=device), torch.zeros(6, 6, dtype=F64, device=device)
    x = torch.randn(10, 6, dtype=F64, device=device)
    a, b = torch.randn(6, 3, dtype=F64, device=device), torch.randn(6, 4, dtype=F64, device=device)
    t = step(mean, m2, x, a, b)
    assert_on(device, t, mean, m2)
    expected = torch.ops.mednns_fast.fid_trace_sqrt_pairs([a, b], [False, False], [None, None], 2, 1e-10)
    torch.testing.assert_close(t, 2 * expected)
    torch.testing.assert_close(m2, (x - x.mean(0)).T @ (x - x.mean(0)))


def test_fid_matrix_bad_inputs(device):
    _, stats = mixed_suite(8, device)
    with pytest.raises(ValueError, match="at least one"):
        mf.ops.fid_matrix([])
    with pytest.raises(ValueError, match="has dim 7"):
        mf.ops.fid_matrix([stats[0], GaussianStats(stats[1].mu[:7], stats[1].sigma[:7, :7], 5)])
    with pytest.raises(ValueError, match="must be a GaussianStats"):
        mf.ops.fid_matrix([stats[0], (stats[1].mu, stats[1].sigma)])
    nan_factor = torch.randn(8, 3, dtype=F64, device=device)
    nan_factor[1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"stats\[1\].factor must be finite"):
        mf.ops.fid_matrix([stats[0], stats[1]._replace(factor=nan_factor)])
    with pytest.raises(ValueError, match=r"factor must be \[d, r\]"):
        mf.ops.fid_matrix([stats[0], stats[1]._replace(factor=torch.randn(3, 2, dtype=F64, device=device))])
    bad = stats[0].sigma.clone()
    bad[0, 1] += 1.0
    with pytest.raises(ValueError, match=r"stats\[1\].sigma must be symmetric"):
        mf.ops.fid_matrix([stats[0], stats[0]._replace(sigma=bad)])
    neg = stats[0].sigma - 2 * float(torch.linalg.eigvalsh(stats[0].sigma)[-1]) * torch.eye(8, dtype=F64, device=device)
    with pytest.raises(ValueError, match=r"stats\[1\].sigma must be positive semi-definite"):
        mf.ops.fid_matrix([stats[0], stats[0]._replace(sigma=neg)])


def test_covariance_defects_op(device):
    from mednns_fast.ops.reference import fid_covariance_defects as covariance_defects

    s = features(100, 70, seed=30, device=device)
    s = s.T @ s
    s[3, 60] += 0.5  # asymmetric entry
    s[10, 2] = float("nan")
    s[69, 69] = float("inf")
    got = torch.ops.mednns_fast.fid_covariance_defects(s)
    assert_on(device, got)
    torch.testing.assert_close(got, covariance_defects(s))
    assert got[2] == 2 and got[0] >= 0.5
    s32 = s.float()
    got32 = torch.ops.mednns_fast.fid_covariance_defects(s32)
    assert_on(device, got32)
    torch.testing.assert_close(got32, covariance_defects(s32))
    torch.library.opcheck(torch.ops.mednns_fast.fid_covariance_defects, (s,))
    with pytest.raises(ValueError, match="square"):
        torch.ops.mednns_fast.fid_covariance_defects(s[:5])


def test_fid_matrix_with_factor_does_not_read_sigma(device):
    _, stats = mixed_suite(48, device)
    poisoned = stats[2]._replace(sigma=torch.full_like(stats[2].sigma, float("nan")))
    want = mf.ops.fid_matrix(stats[:3:2])
    got = mf.ops.fid_matrix([stats[0], poisoned])
    assert_on(device, want, got)
    torch.testing.assert_close(got, want)
    with mf.ops.use_backend("reference"):  # the reference honours the factor too (sigma = L L^T)
        torch.testing.assert_close(mf.ops.fid_matrix([stats[0], poisoned]), want, rtol=1e-7, atol=0)


def test_fid_matrix_large_ranks(device):
    # Ranks above 256: the symmetric route forms only the upper block triangle of C C^T.
    from python_tests.support.outside_fid import symmetric_fid

    xs = [features(n, 300, seed=40 + n, offset=0.05 * k, device=device) for k, n in enumerate([400, 500, 280, 290])]
    stats = [FeatureStats(300, device=device).update(x).finalize() for x in xs]
    assert stats[2].factor.shape == (300, 279) and stats[0].factor is None
    got = mf.ops.fid_matrix(stats)
    assert_on(device, got)
    for i, j in [(0, 1), (0, 2), (2, 3), (1, 3)]:
        if stats[i].factor is None and stats[j].factor is None:
            expected = symmetric_fid(stats[i].mu.cpu(), stats[i].sigma.cpu(), stats[j].mu.cpu(), stats[j].sigma.cpu())
        else:
            expected = gram_fid(xs[i].cpu().numpy(), xs[j].cpu().numpy())
        assert abs(float(got[i, j]) - expected) <= 1e-9 * expected


def test_fid_matrix_full_rank_blocked_congruence(device):
    # Full-rank covariances of a dim that is no multiple of the pair products' 64-column blocks: every pair
    # takes the Cholesky congruence L_i^T S_j L_i in blocks, then its eigenvalues.
    from python_tests.support.outside_fid import symmetric_fid

    d = 200
    xs = [features(500 + 50 * k, d, seed=60 + k, offset=0.03 * k, device=device) for k in range(4)]
    stats = [FeatureStats(d, device=device).update(x).finalize() for x in xs]
    assert all(s.factor is None for s in stats)
    assert all(fid._psd_factor(s.sigma, "s").lower for s in stats)
    got = mf.ops.fid_matrix(stats)
    assert_on(device, got)
    for i in range(4):
        for j in range(i + 1, 4):
            expected = symmetric_fid(stats[i].mu.cpu(), stats[i].sigma.cpu(), stats[j].mu.cpu(), stats[j].sigma.cpu())
            assert abs(float(got[i, j]) - expected) <= 1e-10 * expected


def test_fid_matrix_restores_thread_count(device):
    # fid_matrix factors small covariances on one thread and gives the caller its thread count back, also
    # when it raises.
    _, stats = mixed_suite(16, device)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        mf.ops.fid_matrix(stats)
        assert torch.get_num_threads() == 2
        neg = stats[0].sigma.clone()
        neg[0, 0] = -50.0
        with pytest.raises(ValueError, match="positive semi-definite"):
            mf.ops.fid_matrix([stats[0]._replace(factor=None), stats[0]._replace(sigma=neg, factor=None)])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_kernels_match_cpu():
    x = features(300, 40, seed=50, offset=1e3, dtype=torch.float32)
    cpu = FeatureStats(40).update(x[:100]).update(x[100:]).finalize()
    gpu = FeatureStats(40, device="cuda").update(x[:100].cuda()).update(x[100:].cuda()).finalize()
    torch.testing.assert_close(gpu.mu.cpu(), cpu.mu, rtol=1e-13, atol=1e-10)
    torch.testing.assert_close(gpu.sigma.cpu(), cpu.sigma, rtol=1e-11, atol=1e-9)
    _, stats = mixed_suite(48)
    on_gpu = [GaussianStats(s.mu.cuda(), s.sigma.cuda(), s.n, None if s.factor is None else s.factor.cuda())
              for s in stats]
    expected = mf.ops.fid_matrix(stats)
    torch.testing.assert_close(mf.ops.fid_matrix(on_gpu).cpu(), expected, rtol=1e-9, atol=1e-9)
    s = stats[0].sigma.clone()
    s[1, 2] = float("nan")
    torch.testing.assert_close(torch.ops.mednns_fast.fid_covariance_defects(s.cuda()).cpu(),
                               torch.ops.mednns_fast.fid_covariance_defects(s))
