"""Edge-case and bad inputs, property-based (hypothesis), across ops x backends: empty dims, non-finite
values, meta tensors among real ones, non-integer or huge integer arguments, large logits; then the
persistence paths (FeatureStats state, MedMNIST files, pruner checkpoints).

Every bad input must raise ValueError/TypeError naming the argument, never crash, hang or return garbage;
every edge-case input must give the reference's answer. Kept fast: few examples, small shapes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mednns_fast as mf
from mednns_fast.iac import ProgressivePruner
from mednns_fast.ops import reference
from python_tests.support.triton_support import DEVICE, triton_runs  # noqa: F401  (the fixture of the Triton tests below)

BACKENDS = ["cpp", "reference"]
FAST = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

dims = st.integers(0, 4)
small = st.integers(1, 4)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _depthwise_out_side(n: int, stride: int) -> int:
    return (n - 1) // stride + 1  # the documented floor formula: 0 for an empty side


# ---- empty dims: the answer of the reference, the documented shape, no crash ---------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(T=dims, E=dims, K=small, window=st.integers(1, 5), from_logits=st.booleans(), seed=st.integers(0, 99))
def test_js_stability_any_shape(backend, T, E, K, window, from_logits, seed):
    h = torch.randn(T, E, K, generator=_gen(seed), dtype=torch.float64)
    if not from_logits:
        h = h.softmax(-1)
    with mf.ops.use_backend(backend):
        out = mf.ops.js_stability(h, window, from_logits)
    assert out.shape == (T, E)
    torch.testing.assert_close(out, reference.js_stability(h, window, from_logits))


@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(N=dims, M=dims, K=small, seed=st.integers(0, 99))
def test_js_pairwise_and_divergence_any_rows(backend, N, M, K, seed):
    p = torch.rand(N, K, generator=_gen(seed), dtype=torch.float64)
    q = torch.rand(M, K, generator=_gen(seed + 1), dtype=torch.float64)
    with mf.ops.use_backend(backend):
        pw = mf.ops.js_pairwise(p, q)
        rows = mf.ops.js_divergence(p, p.flip(0))
    assert pw.shape == (N, M) and rows.shape == (N,)
    torch.testing.assert_close(pw, reference.js_pairwise(p, q))
    torch.testing.assert_close(rows, reference.js_divergence(p, p.flip(0)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_js_divergence_without_entries_is_refused(backend):
    with mf.ops.use_backend(backend), pytest.raises(ValueError, match="K >= 1"):
        mf.ops.js_divergence(torch.zeros(3, 0), torch.zeros(3, 0))


@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(N=st.integers(0, 2), H=dims, W=dims, stride=st.integers(1, 3), shared=st.booleans(),
       seed=st.integers(0, 99))
def test_multi_depthwise_any_size(backend, N, H, W, stride, shared, seed):
    C, ks, dil = 2, (3, 5), (1, 2)
    ws = [torch.randn(C, 1, k, k, generator=_gen(seed + k), dtype=torch.float64) for k in ks]
    x = torch.randn(N, C if shared else 2 * C, H, W, generator=_gen(seed), dtype=torch.float64)
    with mf.ops.use_backend(backend):
        out = mf.ops.multi_depthwise_conv2d(x, ws, dil, stride, shared)
    assert out.shape == (N, 2 * C, _depthwise_out_side(H, stride), _depthwise_out_side(W, stride))
    if out.numel():
        torch.testing.assert_close(out, reference.multi_depthwise_conv2d(x, ws, dil, stride, shared))
    # the C++ op itself (what torch.compile calls) and its fake kernel agree on the shape
    fake_mode = torch._subclasses.fake_tensor.FakeTensorMode()
    with fake_mode:
        fx, fws = fake_mode.from_tensor(x), [fake_mode.from_tensor(w) for w in ws]
        fake = torch.ops.mednns_fast.multi_depthwise_conv2d(fx, fws, list(dil), stride, shared)
    assert fake.shape == out.shape


@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(shape=st.lists(st.integers(0, 3), min_size=1, max_size=3), K=small, seed=st.integers(0, 99))
def test_mixed_sum_any_shape(backend, shape, K, seed):
    xs = [torch.randn(*shape, generator=_gen(seed + k), dtype=torch.float64) for k in range(K)]
    w = torch.randn(K, generator=_gen(seed), dtype=torch.float64)
    with mf.ops.use_backend(backend):
        out = mf.ops.mixed_sum(xs, w)
    assert out.shape == tuple(shape)
    torch.testing.assert_close(out, sum(w[k] * xs[k] for k in range(K)) if out.numel() else out)


# ---- non-finite values ------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(K=st.integers(2, 5), per_row=st.booleans(), bad=st.sampled_from([math.nan, math.inf, -math.inf]),
       seed=st.integers(0, 99))
def test_mixed_sum_zero_weight_candidates_never_leak(backend, K, per_row, bad, seed):
    """A candidate whose weight is exactly 0 is not read: its NaN/inf never reach the output."""
    xs = [torch.randn(3, 5, generator=_gen(seed + k), dtype=torch.float64) for k in range(K)]
    w = torch.randn((3, K) if per_row else (K,), generator=_gen(seed), dtype=torch.float64)
    xs[1] = torch.full_like(xs[1], bad)
    w[..., 1] = 0.0
    with mf.ops.use_backend(backend):
        out = mf.ops.mixed_sum(xs, w)
    wk = (lambda k: w[:, k, None]) if per_row else (lambda k: w[k])
    torch.testing.assert_close(out, sum(wk(k) * xs[k] for k in range(K) if k != 1))


@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(bad=st.sampled_from([math.nan, math.inf, -1.0]), where=st.integers(0, 11))
def test_bad_values_are_refused_with_the_argument_named(backend, bad, where):
    p = torch.full((3, 4), 0.25, dtype=torch.float64)
    p.view(-1)[where] = bad
    q = torch.full((3, 4), 0.25, dtype=torch.float64)
    with mf.ops.use_backend(backend):
        with pytest.raises(ValueError, match="p"):
            mf.ops.js_divergence(p, q)
        with pytest.raises(ValueError, match="js_pairwise: p"):
            mf.ops.js_pairwise(p, q)
        with pytest.raises(ValueError, match="history"):
            mf.ops.js_stability(p[None], 1, from_logits=False)
        if bad != -1.0:  # negative weights are fine; non-finite ones are not
            with pytest.raises(ValueError, match="weights"):
                mf.ops.mixed_sum([q, q, q], torch.tensor([0.5, bad, 0.5], dtype=torch.float64))


# ---- unnormalised probabilities beyond the accumulation's range; arguments of the wrong type ------------

LN2 = math.log(2.0)
JS_CALLS = {  # each op on probability rows p and q
    "js_divergence": lambda p, q: mf.ops.js_divergence(p, q),
    "js_pairwise": lambda p, q: mf.ops.js_pairwise(p, q),
    "js_stability": lambda p, q: mf.ops.js_stability(torch.stack([p, q]), 1, from_logits=False),
}


def _refuses_huge_probabilities(op: str, where: str, device) -> None:
    """3e38 in float32: p + q overflows (NaN, or 0 where ln 2 is right): refused, naming the input."""
    small = torch.full((2, 2), 0.5, device=device)
    big = torch.tensor([[3e38, 0.0], [0.5, 0.5]], device=device)
    p, q = (big, small) if where == "p" else (small, big)
    name = "history" if op == "js_stability" else where
    with pytest.raises(ValueError, match=rf"{op}: {name} \(probabilities\) must be at most 2\^64"):
        JS_CALLS[op](p, q)


def _large_rows_give_the_clamped_value(dtype: torch.dtype, big: float, device) -> None:
    """Rows of mass far above 1 (up to the refusal bound): disjoint ones and a light row against a heavy one
    are ln 2 (the clamp of a huge divergence), identical ones 0."""
    p = torch.tensor([[big, 0.0], [big, big], [1.0, 0.0]], dtype=dtype, device=device)
    q = torch.tensor([[0.0, big], [big, big], [big, 0.0]], dtype=dtype, device=device)
    want = torch.tensor([LN2, 0.0, LN2], dtype=dtype)
    torch.testing.assert_close(mf.ops.js_divergence(p, q).cpu(), want)
    torch.testing.assert_close(mf.ops.js_stability(torch.stack([p, q]), 1, from_logits=False)[1].cpu(), want)
    disjoint = torch.tensor([[big, 0.0], [1.0, 0.0]], dtype=dtype, device=device)
    torch.testing.assert_close(mf.ops.js_pairwise(disjoint, disjoint.flip(1)).cpu(),
                               torch.full((2, 2), LN2, dtype=dtype))
    torch.testing.assert_close(mf.ops.js_pairwise(p[2:], q[2:]).cpu(), torch.full((1, 1), LN2, dtype=dtype))


def _wrong_types_are_named(device) -> None:
    eye = torch.eye(2, device=device)
    with pytest.raises(ValueError, match=r"^mu1 must be a tensor, got list$"):
        mf.ops.frechet_distance([0.0, 1.0], eye, torch.zeros(2, device=device), eye)
    with pytest.raises(ValueError, match=r"^sigma2 must be a tensor, got list$"):
        mf.ops.frechet_distance(torch.zeros(2, device=device), eye, torch.zeros(2, device=device), [[1.0]])
    with pytest.raises(ValueError, match=r"weights\[0\] must be \[C, 1, k, k\], got shape \(\)"):
        mf.ops.multi_depthwise_conv2d(torch.randn(1, 2, 4, 4, device=device), [torch.tensor(1.0, device=device)], [1])
    with pytest.raises(ValueError, match=r"^mixed_sum: xs\[1\] must be a tensor, got float$"):
        mf.ops.mixed_sum([torch.ones(3, device=device), 1.5], torch.tensor([0.5, 0.5], device=device))


HUGE_CASES = [("js_divergence", "p"), ("js_divergence", "q"), ("js_pairwise", "p"), ("js_pairwise", "q"),
              ("js_stability", "p")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op, where", HUGE_CASES)
def test_js_huge_probabilities_are_refused(backend, op, where):
    with mf.ops.use_backend(backend):
        _refuses_huge_probabilities(op, where, "cpu")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, big", [(torch.float32, 2.0**64), (torch.float64, 3e38), (torch.float64, 2.0**512)])
def test_js_large_unnormalised_rows_give_the_clamped_value(backend, dtype, big):
    with mf.ops.use_backend(backend):
        _large_rows_give_the_clamped_value(dtype, big, "cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_arguments_of_the_wrong_type_are_named(backend):
    with mf.ops.use_backend(backend):
        _wrong_types_are_named("cpu")


def test_reference_mixed_sum_names_a_non_tensor_candidate():
    with pytest.raises(ValueError, match=r"^mixed_sum: xs\[1\] must be a tensor, got float$"):
        reference.mixed_sum([torch.ones(3), 1.5], torch.tensor([0.5, 0.5]))


# ---- meta tensors: devices are checked before any value is read ----------------------------------------

META_CASES = {
    "mixed_sum": lambda m: mf.ops.mixed_sum([torch.ones(3)], torch.ones(1, device=m)),
    "multi_depthwise_conv2d": lambda m: mf.ops.multi_depthwise_conv2d(
        torch.randn(1, 2, 5, 5), [torch.randn(2, 1, 3, 3, device=m)], [1]),
    "js_divergence": lambda m: mf.ops.js_divergence(torch.full((2, 3), 0.3), torch.full((2, 3), 0.3, device=m)),
    "js_pairwise": lambda m: mf.ops.js_pairwise(torch.full((2, 3), 0.3, device=m), torch.full((2, 3), 0.3)),
    "frechet_distance": lambda m: mf.ops.frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(2),
                                                          torch.eye(2, device=m)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", sorted(META_CASES))
def test_meta_tensor_among_cpu_tensors_is_a_device_error(backend, op):
    with mf.ops.use_backend(backend), pytest.raises(ValueError, match="meta"):
        META_CASES[op]("meta")


def test_all_meta_inputs_give_shapes_without_reading_values():
    """On the meta device (no values) the value checks stand aside: shapes come out, nothing is read."""
    m = torch.device("meta")
    assert mf.ops.js_divergence(torch.empty(4, 3, device=m), torch.empty(4, 3, device=m)).shape == (4,)
    assert mf.ops.js_stability(torch.empty(6, 2, 3, device=m), 2).shape == (6, 2)
    assert mf.ops.mixed_sum([torch.empty(2, 3, device=m)] * 2, torch.empty(2, device=m)).shape == (2, 3)
    out = mf.ops.multi_depthwise_conv2d(torch.empty(1, 2, 7, 7, device=m), [torch.empty(2, 1, 3, 3, device=m)],
                                        [2], 2)
    assert out.shape == (1, 2, 4, 4) and out.device == m


# ---- integer arguments: non-integers refused, not truncated; huge ones refused, not overflowed -----------

@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(d=st.one_of(st.floats(1.01, 5.0), st.just(True), st.just("2")))
def test_depthwise_non_integer_dilation_is_a_type_error(backend, d):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 1, 3, 3)
    with mf.ops.use_backend(backend), pytest.raises(TypeError, match=r"dilations\[0\] must be an int"):
        mf.ops.multi_depthwise_conv2d(x, [w], [d])


@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(exp=st.integers(16, 62))
def test_depthwise_huge_dilation_is_refused(backend, exp):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 1, 3, 3)
    with mf.ops.use_backend(backend), pytest.raises(ValueError, match="dilations"):
        mf.ops.multi_depthwise_conv2d(x, [w], [2**exp])


@pytest.mark.parametrize("exp", [16, 31, 40, 62])
def test_depthwise_huge_dilation_is_refused_by_the_cpp_op_itself(exp):
    """The C++ kernel checks too (a caller of torch.ops.mednns_fast.* skips the Python wrapper)."""
    with pytest.raises(ValueError, match="dilations"):
        torch.ops.mednns_fast.multi_depthwise_conv2d(torch.randn(1, 2, 5, 5), [torch.randn(2, 1, 3, 3)],
                                                     [2**exp], 1, True)


def test_depthwise_empty_side_with_stride_in_the_cpp_op_itself():
    out = torch.ops.mednns_fast.multi_depthwise_conv2d(torch.randn(1, 2, 0, 5), [torch.randn(2, 1, 3, 3)],
                                                       [1], 2, True)
    assert out.shape == (1, 2, 0, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(window=st.one_of(st.integers(2**40, 2**62), st.floats(1.5, 3.0), st.just(0)))
def test_js_stability_window_edge_values(backend, window):
    h = torch.randn(5, 0, 3, dtype=torch.float64)  # zero edges: no row to read, whatever the window
    with mf.ops.use_backend(backend):
        if isinstance(window, int) and window >= 1:
            assert torch.isinf(mf.ops.js_stability(torch.randn(5, 2, 3), window)).all()
            assert mf.ops.js_stability(h, window).shape == (5, 0)
        else:
            with pytest.raises(ValueError, match="window"):
                mf.ops.js_stability(h, window)


# ---- large logits: exact where they tie, the float64 answer elsewhere -------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(scale=st.sampled_from([1.0, 1e4, 1e20, 1e38]), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_js_stability_tied_large_logits_are_exactly_zero(backend, scale, dtype):
    h = torch.full((7, 3, 5), scale, dtype=dtype)
    with mf.ops.use_backend(backend):
        out = mf.ops.js_stability(h, 2)
    assert (out[2:] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@FAST
@given(offset=st.sampled_from([0.0, 1e3, 1e4, -1e4]), seed=st.integers(0, 99))
def test_js_stability_large_float32_logits_match_float64(backend, offset, seed):
    h = (torch.randn(9, 3, 6, generator=_gen(seed)) + offset).float()
    with mf.ops.use_backend(backend):
        got = mf.ops.js_stability(h, 3)
    want = reference.js_stability(h.double(), 3)  # of the same float32 values
    torch.testing.assert_close(got[3:].double(), want[3:], rtol=1e-4, atol=1e-6)


# ---- persistence: FeatureStats state, MedMNIST files, pruner checkpoints -------------------------------

@FAST
@given(count=st.one_of(st.integers(-10**6, -1), st.just(1.5), st.just(True)))
def test_feature_stats_state_rejects_bad_counts(count):
    state = mf.ops.FeatureStats(3).update(torch.randn(5, 3)).state_dict()
    state.pop("rows", None)
    state["count"] = torch.tensor(count) if not isinstance(count, bool) else count
    with pytest.raises(ValueError, match="count"):
        mf.ops.FeatureStats.from_state_dict(state)


@pytest.mark.parametrize("key, bad", [("mean", math.nan), ("m2", math.inf), ("m2", -1.0)])
def test_feature_stats_state_rejects_bad_moments(key, bad):
    state = mf.ops.FeatureStats(3).update(torch.randn(5, 3)).state_dict()
    state.pop("rows", None)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = bad
    with pytest.raises(ValueError, match="mean and m2 must be finite|non-negative diagonal"):
        mf.ops.FeatureStats.from_state_dict(state)


def _npz(path, labels, n=3):
    arrays = {f"{s}_images": np.zeros((n, 28, 28), np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": labels for s in ("train", "val", "test")})
    np.savez(path, **arrays)


def test_load_medmnist_empty_file_is_a_clear_error(tmp_path):
    (tmp_path / "pathmnist.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        mf.data.load_medmnist("pathmnist", tmp_path)


@FAST
@given(bad=st.sampled_from([1.7, 0.5, math.nan, -0.2]))
def test_load_medmnist_refuses_non_integer_labels(tmp_path_factory, bad):
    root = tmp_path_factory.mktemp("npz")
    _npz(root / "octmnist.npz", np.array([[0.0], [bad], [1.0]]))
    with pytest.raises(ValueError, match="integer class indices"):
        mf.data.load_medmnist("octmnist", root)


def test_load_medmnist_accepts_integral_float_labels(tmp_path):
    _npz(tmp_path / "octmnist.npz", np.array([[0.0], [3.0], [1.0]]))
    assert mf.data.load_medmnist("octmnist", tmp_path).labels.tolist() == [0, 3, 1]


def _pruner_state():
    pruner = ProgressivePruner(torch.zeros(2, 3), window=2)
    pruner.step(0)
    return pruner, pruner.state_dict()


def test_pruner_state_without_masks_is_a_clear_error():
    pruner, state = _pruner_state()
    del state["masks"]
    with pytest.raises(ValueError, match=r"lacks \['masks'\]"):
        pruner.load_state_dict(state)


@FAST
@given(lengths=st.lists(st.integers(0, 5), min_size=1, max_size=3).filter(lambda v: v != [3, 3]))
def test_pruner_state_with_masks_of_wrong_length_is_refused(lengths):
    pruner, state = _pruner_state()
    state["masks"] = [[True] * n for n in lengths]
    with pytest.raises(ValueError, match="masks"):
        pruner.load_state_dict(state)


@pytest.mark.parametrize("name", ["prune_fraction", "threshold"])
@pytest.mark.parametrize("value", ["0.5", None, True])
def test_pruner_non_numeric_settings_are_type_errors(name, value):
    with pytest.raises(TypeError, match=name):
        ProgressivePruner(torch.zeros(2, 3), **{name: value})


# ---- the same classes on the Triton kernels (TRITON_INTERPRET=1 on CPU; see triton_support.py) ----------

FEW = settings(max_examples=4, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.triton
@pytest.mark.usefixtures("triton_runs")
@FEW
@given(T=dims, E=dims, K=small, window=st.integers(1, 3), seed=st.integers(0, 99))
def test_triton_js_stability_any_shape(T, E, K, window, seed):
    h = torch.randn(T, E, K, generator=_gen(seed), dtype=torch.float64).to(DEVICE)
    out = mf.ops.js_stability(h, window)
    assert out.shape == (T, E)
    torch.testing.assert_close(out.cpu(), reference.js_stability(h.cpu(), window))


@pytest.mark.triton
@pytest.mark.usefixtures("triton_runs")
@FEW
@given(scale=st.sampled_from([1e4, 1e38]), offset_seed=st.integers(0, 99))
def test_triton_js_stability_large_logits(scale, offset_seed):
    tied = torch.full((6, 2, 4), scale, dtype=torch.float32, device=DEVICE)
    assert (mf.ops.js_stability(tied, 2)[2:] == 0).all()
    h = (torch.randn(6, 2, 4, generator=_gen(offset_seed)) + 1e4).float().to(DEVICE)
    torch.testing.assert_close(mf.ops.js_stability(h, 2)[2:].double().cpu(),
                               reference.js_stability(h.double().cpu(), 2)[2:], rtol=1e-4, atol=1e-6)


@pytest.mark.triton
@pytest.mark.usefixtures("triton_runs")
@FEW
@given(K=st.integers(2, 4), bad=st.sampled_from([math.nan, math.inf]), seed=st.integers(0, 99))
def test_triton_mixed_sum_zero_weight_never_leaks(K, bad, seed):
    xs = [torch.randn(3, 5, generator=_gen(seed + k), dtype=torch.float64).to(DEVICE) for k in range(K)]
    w = torch.randn(K, generator=_gen(seed), dtype=torch.float64).to(DEVICE)
    xs[1] = torch.full_like(xs[1], bad)
    w[1] = 0.0
    torch.testing.assert_close(mf.ops.mixed_sum(xs, w), sum(w[k] * xs[k] for k in range(K) if k != 1))


@pytest.mark.triton
@pytest.mark.usefixtures("triton_runs")
@pytest.mark.parametrize("op, where", HUGE_CASES)
def test_triton_js_huge_probabilities_are_refused(op, where):
    with mf.ops.debug_checks():  # immediate on GPUs too
        _refuses_huge_probabilities(op, where, DEVICE)


@pytest.mark.triton
@pytest.mark.usefixtures("triton_runs")
@pytest.mark.parametrize("dtype, big", [(torch.float32, 2.0**64), (torch.float64, 3e38), (torch.float64, 2.0**512)])
def test_triton_js_large_unnormalised_rows_give_the_clamped_value(dtype, big):
    _large_rows_give_the_clamped_value(dtype, big, DEVICE)


@pytest.mark.triton
@pytest.mark.usefixtures("triton_runs")
@pytest.mark.filterwarnings("ignore:mednns_fast.*has no triton kernel:RuntimeWarning")
def test_triton_arguments_of_the_wrong_type_are_named():
    _wrong_types_are_named(DEVICE)
