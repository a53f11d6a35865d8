"""Triton batch moments of FeatureStats (mean and centred second moment, float64) against float64 torch and
numpy, merged across batches with Chan's formula. Runs on CPU under TRITON_INTERPRET=1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mednns_fast as mf
from mednns_fast.triton.fid import feature_moments
from python_tests.support.on_device import assert_on
from python_tests.support.triton_support import float_dtypes, needs_gpu, triton_runs  # noqa: F401

pytestmark = [pytest.mark.triton, pytest.mark.usefixtures("triton_runs")]

tops = torch.ops.mednns_fast_triton


def moments_formula(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.double()
    mean = x.mean(0)
    c = x - mean
    return mean, c.T @ c


def chan_merge(a, b):
    """(n, mean, m2) of the union of two row sets (Chan, Golub and LeVeque)."""
    (na, ma, sa), (nb, mb, sb) = a, b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), sa + sb + torch.outer(delta, delta) * (na * nb / n)


def _features(n, d, dtype, device, seed=0, scale=1.0, offset=0.0):
    """Seeded rows on `device` (drawn on the CPU so every device sees the same values)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) * scale + offset).to(dtype).to(device)


@pytest.mark.parametrize("dtype", float_dtypes())
@pytest.mark.parametrize("n, d", [(1, 5), (37, 19), (301, 45)])
def test_moments_match_float64_formula(dtype, n, d, device):
    x = _features(n, d, dtype, device, offset=3.0)
    mean, m2 = feature_moments(x)
    assert_on(device, mean, m2)
    want_mean, want_m2 = moments_formula(x)
    assert mean.dtype == m2.dtype == torch.float64 and m2.shape == (d, d)
    torch.testing.assert_close(mean, want_mean, rtol=1e-12, atol=1e-12)
    # Every dtype is centred and multiplied in float64 (as in the C++ kernel): float64 accuracy throughout.
    torch.testing.assert_close(m2, want_m2, rtol=1e-12, atol=1e-12 * max(1.0, want_m2.abs().max().item()))
    assert torch.equal(m2, m2.T)  # symmetric to the bit


def test_moments_match_numpy_cov(device):
    x = _features(213, 23, torch.float64, device, seed=1)
    _, m2 = feature_moments(x)
    assert_on(device, m2)
    np.testing.assert_allclose(m2.cpu().numpy() / 212, np.cov(x.cpu().numpy(), rowvar=False), rtol=1e-10)


def test_float32_features_with_large_mean_stay_accurate(device):
    """Rows are centred and multiplied in float64: a mean 1e4 times the spread costs nothing (the
    textbook E[x^2] - E[x]^2 in float32 would lose every digit here; float32 products about 1e-7)."""
    x = _features(1500, 17, torch.float32, device, seed=2, scale=0.01, offset=100.0)
    mean, m2 = feature_moments(x)
    assert_on(device, mean, m2)
    want_mean, want_m2 = moments_formula(x)  # float64 on the same float32 values
    torch.testing.assert_close(mean, want_mean, rtol=1e-13, atol=0)
    assert ((m2 - want_m2).abs().max() / want_m2.abs().max()).item() < 1e-12


def test_strided_features(device):
    x = _features(40, 64, torch.float64, device, seed=3).t()  # [64, 40], column-major
    mean, m2 = feature_moments(x)
    assert_on(device, mean, m2)
    want_mean, want_m2 = moments_formula(x)
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(m2, want_m2)


def test_batches_merged_with_chan_equal_one_pass(device):
    x = _features(257, 21, torch.float32, device, seed=4, offset=-2.0)
    state = None
    for batch in (x[:100], x[100:101], x[101:]):
        mean, m2 = feature_moments(batch)
        assert_on(device, mean, m2)
        part = (batch.shape[0], mean, m2)
        state = part if state is None else chan_merge(state, part)
    n, mean, m2 = state
    want_mean, want_m2 = moments_formula(x)
    assert n == 257
    torch.testing.assert_close(mean, want_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m2, want_m2, rtol=1e-12, atol=1e-12 * want_m2.abs().max().item())


@pytest.mark.parametrize("state_dtype", [torch.float64, torch.float32])
def test_update_in_place_streams_like_one_pass(state_dtype, device):
    """feature_stats_update_ (the C++ op's contract): batches folded in place equal one pass."""
    x = _features(301, 13, torch.float32, device, seed=6, offset=50.0)
    mean = torch.full((13,), 7.0, dtype=state_dtype, device=device)  # overwritten: count == 0
    m2 = torch.full((13, 13), 7.0, dtype=state_dtype, device=device)
    count = 0
    for batch in (x[:128], x[128:128], x[128:129], x[129:]):
        tops.feature_stats_update_(mean, m2, batch, count)
        count += batch.shape[0]
    assert_on(device, mean, m2)
    want_mean, want_m2 = moments_formula(x)
    tol = 1e-10 if state_dtype == torch.float64 else 1e-6
    torch.testing.assert_close(mean.double(), want_mean, rtol=tol, atol=tol)
    scale = want_m2.abs().max().item()
    torch.testing.assert_close(m2.double(), want_m2, rtol=tol, atol=tol * scale)


def test_update_opcheck_and_bad_inputs(device):
    mean, m2 = torch.zeros(6, dtype=torch.float64, device=device), torch.zeros(6, 6, dtype=torch.float64, device=device)
    torch.library.opcheck(tops.feature_stats_update_, (mean, m2, _features(9, 6, torch.float32, device), 4))
    with pytest.raises(ValueError, match=r"features must be \[n, 6\]"):
        tops.feature_stats_update_(mean, m2, torch.zeros(3, 5, device=device), 0)
    with pytest.raises(ValueError, match="count must be >= 0"):
        tops.feature_stats_update_(mean, m2, torch.zeros(3, 6, device=device), -1)


def test_empty_batch_adds_nothing(device):
    mean, m2 = feature_moments(torch.zeros(0, 7, device=device))
    assert_on(device, mean, m2)
    assert torch.equal(mean, torch.zeros(7, dtype=torch.float64, device=device))
    assert torch.equal(m2, torch.zeros(7, 7, dtype=torch.float64, device=device))


def test_torch_compile_fullgraph(device):
    x = _features(50, 20, torch.float32, device, seed=5)

    @torch.compile(fullgraph=True)
    def covariance(mean, m2, x):
        tops.feature_stats_update_(mean, m2, x * 2, 0)
        return mean * 1, m2 / (x.shape[0] - 1)

    zeros = torch.zeros(20, 21, dtype=torch.float64, device=device)
    mean, cov = covariance(zeros[:, 0].clone(), zeros[:, 1:].clone(), x)
    assert_on(device, mean, cov)
    want_mean, want_m2 = moments_formula(x * 2)
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(cov, want_m2 / 49, rtol=1e-6, atol=1e-6)


def test_bad_inputs_raise(device):
    with pytest.raises(ValueError, match=r"must be \[n, dim\]"):
        feature_moments(torch.zeros(5, device=device))
    with pytest.raises(ValueError, match="floating-point"):
        feature_moments(torch.zeros(5, 3, dtype=torch.long, device=device))
    x = _features(9, 4, torch.float32, device)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="features must be finite"), mf.ops.debug_checks():  # immediate on GPUs too
        feature_moments(x)


@pytest.mark.gpu
@needs_gpu
def test_inception_sized_batch_on_gpu():
    """A 2048-dim batch (Inception pool features) on the GPU, split reductions included."""
    x = torch.randn(5000, 2048, device="cuda") * 2 + 1
    mean, m2 = feature_moments(x)
    want_mean, want_m2 = moments_formula(x)
    torch.testing.assert_close(mean, want_mean, rtol=1e-10, atol=1e-10)
    assert ((m2 - want_m2).abs().max() / want_m2.abs().max()).item() < 1e-12


def test_feature_stats_on_triton_match_reference_backend(device):
    """mf.ops.FeatureStats.update with set_backend("triton") runs these kernels and equals "reference"."""
    x = _features(150, 12, torch.float32, device, seed=7, offset=20.0)

    def stream():
        stats = mf.ops.FeatureStats(12, keep_rows=False, device=device)
        for batch in (x[:64], x[64:65], x[65:]):
            stats.update(batch)
        return stats

    assert mf.ops.get_backend() == "triton"
    got = stream()
    with mf.ops.use_backend("reference"):
        want = stream()
    assert_on(device, got.mean, got.m2, want.mean, want.m2)
    assert got.count == want.count == 150
    torch.testing.assert_close(got.mean, want.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.m2, want.m2, rtol=1e-12, atol=1e-12 * want.m2.abs().max().item())
    sigma = want.finalize().sigma
    torch.testing.assert_close(got.finalize().sigma, sigma, rtol=1e-12, atol=1e-12 * sigma.abs().max().item())
