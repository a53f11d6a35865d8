"""mixed_sum: the C++ kernel against the reference, gradients, opcheck, torch.compile and bad input."""

import pytest
import torch

import mednns_fast as mf
from mednns_fast.ops import reference
from python_tests.support.on_device import assert_on

SHAPES = [(7,), (3, 5, 7), (2, 3, 33, 17), (1, 1)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def _inputs(shape, K, dtype, device, per_row=False, requires_grad=False):
    xs = [torch.randn(shape, dtype=dtype, device=device, requires_grad=requires_grad) for _ in range(K)]
    wshape = (shape[0], K) if per_row else (K,)
    w = torch.randn(wshape, dtype=torch.float64 if dtype == torch.float64 else torch.float32, device=device,
                    requires_grad=requires_grad)
    return xs, w


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("K", [1, 4, 8])
def test_forward_matches_reference(shape, dtype, per_row, K, device):
    xs, w = _inputs(shape, K, dtype, device, per_row)
    out = mf.ops.mixed_sum(xs, w)
    assert_on(device, out)
    assert out.dtype == dtype and out.shape == shape and out.is_contiguous()
    torch.testing.assert_close(out, reference.mixed_sum(xs, w), rtol=TOL[dtype], atol=TOL[dtype])


def test_matches_eager_expression_on_large_input(device):
    xs, w = _inputs((300_001,), 8, torch.float32, device)  # several chunks, a ragged last block
    expected = sum(w[k] * xs[k] for k in range(8))
    out = mf.ops.mixed_sum(xs, w)
    assert_on(device, out)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("huge_pages", ["1", "0"])
@pytest.mark.parametrize("prefault", ["1", "0"])
def test_fresh_page_policies_leave_results_unchanged(huge_pages, prefault, monkeypatch):
    """The CPU kernels' fresh-output policies (csrc/cpu/fresh_pages.h) act on outputs of 1 MiB and more: on
    3 rows of 100003 float32 (rows and chunks that start mid-page) with per-row weights, the forward and every
    gradient match the float64 reference and are bitwise those of the default policy."""
    xs, w = _inputs((3, 100_003), 5, torch.float32, "cpu", per_row=True, requires_grad=True)
    g = torch.randn(3, 100_003)

    def run():
        out = mf.ops.mixed_sum(xs, w)
        return [out.detach(), *torch.autograd.grad(out, [*xs, w], g)]

    default = run()
    monkeypatch.setenv("MEDNNS_FAST_HUGE_PAGES", huge_pages)
    monkeypatch.setenv("MEDNNS_FAST_PREFAULT", prefault)
    got = run()
    assert default[0].nbytes >= 2**20
    for a, b in zip(got, default, strict=True):
        assert torch.equal(a, b)
    xs64 = [x.detach().double().requires_grad_() for x in xs]
    w64 = w.detach().double().requires_grad_()
    out64 = reference.mixed_sum(xs64, w64)
    want = [out64.detach(), *torch.autograd.grad(out64, [*xs64, w64], g.double())]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-4)


# The CPU float16 loops: F16C conversions where the CPU has F16C + AVX2 + FMA (the default there), or the
# portable integer conversions (MEDNNS_FAST_F16C=0, and every CPU without them), chosen at every call. Both
# are tested everywhere; on a CPU without F16C both runs take the portable loops.
F16C_PATHS = [pytest.param("1", id="f16c"), pytest.param("0", id="portable")]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("weight", [1.0, 0.3, -3.7, 1e-3, 2.0**-20, 300.0])
@pytest.mark.parametrize("f16c", F16C_PATHS)
def test_reduced_precision_rounds_as_torch(dtype, weight, f16c, device, monkeypatch):
    """Every bit pattern of the input type (NaN, infinities, subnormals included) times one weight: the kernel
    widens to float, multiplies, and narrows back exactly as torch's conversions do (round to nearest even,
    overflow to infinity), in its vector body and its scalar tail alike (65536 + 7 elements), on both CPU
    float16 paths."""
    monkeypatch.setenv("MEDNNS_FAST_F16C", f16c)
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    x = torch.cat([bits.view(dtype), bits[:7].view(dtype)]).to(device)
    out = mf.ops.mixed_sum([x], torch.tensor([weight], device=device))
    expected = (x.float() * torch.tensor(weight, dtype=torch.float32)).to(dtype)
    nan = expected.isnan()
    assert torch.equal(out.isnan(), nan)
    assert torch.equal(out[~nan].view(torch.int16), expected[~nan].view(torch.int16))


@pytest.mark.parametrize("K", [3, 4, 8, 12])  # the backward's groups of eight and four, and single candidates
@pytest.mark.parametrize("per_row", [False, True])
def test_float16_paths_agree(K, per_row, monkeypatch):
    """CPU float16: the F16C loops and the portable loops (MEDNNS_FAST_F16C=0) give bitwise equal outputs and
    gradients on finite inputs (rows of 70001: several chunks, vector bodies and scalar tails), and both match
    the float64 reference to float16's rounding."""
    xs, w = _inputs((3, 70_001), K, torch.float16, "cpu", per_row, requires_grad=True)
    g = torch.randn(3, 70_001).half()
    runs = []
    for path in ("1", "0"):
        monkeypatch.setenv("MEDNNS_FAST_F16C", path)
        out = mf.ops.mixed_sum(xs, w)
        runs.append([out.detach(), *torch.autograd.grad(out, [*xs, w], g)])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
    xs64 = [x.detach().double().requires_grad_() for x in xs]
    w64 = w.detach().double().requires_grad_()
    out64 = reference.mixed_sum(xs64, w64)
    want = [out64.detach(), *torch.autograd.grad(out64, [*xs64, w64], g.double())]
    for a, b in zip(runs[0], want, strict=True):
        # float16 outputs: a few ulps of values up to ~|w| * sqrt(K) * 4; grad_w: sums of 70001 products
        torch.testing.assert_close(a.double(), b, rtol=2e-3, atol=2e-2 if a.dtype == torch.float16 else 1e-1)


def test_non_contiguous_inputs(device):
    wide = torch.randn(4, 24, 9, 5, device=device)
    slices = [wide[:, 6 * j:6 * (j + 1)] for j in range(4)]  # channel slices: strided rows, read in place
    transposed = [torch.randn(9, 4, 6, device=device).transpose(0, 2) for _ in range(4)]  # general strides: copied
    stepped = [torch.randn(10, 7, device=device)[::2] for _ in range(4)]
    for xs in (slices, transposed, stepped):
        for w in (torch.randn(4, device=device), torch.randn(xs[0].shape[0], 4, device=device)):
            out = mf.ops.mixed_sum(xs, w)
            assert_on(device, out)
            torch.testing.assert_close(out, reference.mixed_sum(xs, w))


def test_zero_weights_are_skipped_even_with_nan_inputs(device):
    xs, w = _inputs((5, 6), 3, torch.float32, device)
    xs[1] = torch.full((5, 6), float("nan"), device=device)  # never read when its weight is exactly zero
    w[1] = 0.0
    out = mf.ops.mixed_sum(xs, w)
    assert_on(device, out)
    torch.testing.assert_close(out, w[0] * xs[0] + w[2] * xs[2])
    assert torch.equal(mf.ops.mixed_sum(xs[:1], torch.zeros(1, device=device)), torch.zeros(5, 6, device=device))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_row", [False, True])
def test_backward_matches_reference(per_row, dtype, device):
    """Rows of 44 or 132 elements: the kernels' vector bodies and scalar tails. The reference runs in float64
    on the same values, so reduced-precision gradients are held to their own rounding only."""
    xs, w = _inputs((3, 4, 11), 5, dtype, device, per_row, requires_grad=True)
    g = torch.randn(3, 4, 11, dtype=dtype, device=device)
    got = torch.autograd.grad(mf.ops.mixed_sum(xs, w), [*xs, w], g)
    assert_on(device, got)
    assert [t.dtype for t in got] == [dtype] * 5 + [w.dtype]
    xs64 = [x.detach().double().requires_grad_() for x in xs]
    w64 = w.detach().double().requires_grad_()
    want = torch.autograd.grad(reference.mixed_sum(xs64, w64), [*xs64, w64], g.double())
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("per_row", [False, True])
def test_gradcheck_float64(per_row, device):
    xs, w = _inputs((3, 2, 5), 4, torch.float64, device, per_row, requires_grad=True)
    assert_on(device, mf.ops.mixed_sum(xs, w))
    assert torch.autograd.gradcheck(lambda w, *xs: mf.ops.mixed_sum(xs, w), (w, *xs))


def test_partial_requires_grad(device):
    xs, w = _inputs((4, 9), 3, torch.float32, device)
    xs[2].requires_grad_()
    (gx,) = torch.autograd.grad(mf.ops.mixed_sum(xs, w).sum(), [xs[2]])
    assert_on(device, gx)
    torch.testing.assert_close(gx, torch.full((4, 9), float(w[2]), device=device))
    w.requires_grad_()
    (gw,) = torch.autograd.grad(mf.ops.mixed_sum(xs, w).sum(), [w])
    assert_on(device, gw)
    torch.testing.assert_close(gw, torch.stack([x.sum() for x in xs]))


def test_autograd_is_the_cpp_function():
    """mixed_sum's autograd is registered in C++ (csrc/autograd/mixed.cpp), not by the spec's Python formula."""
    assert "mixed_sum" in mf.ops._library.CPP_AUTOGRAD
    autograd_lines = [line for line in torch._C._dispatch_dump("mednns_fast::mixed_sum").splitlines()
                      if line.startswith("Autograd")]
    assert len(autograd_lines) == 1 and "csrc/autograd/mixed.cpp" in autograd_lines[0], autograd_lines


@pytest.mark.parametrize("numel", [1000, 1_179_648])  # 1000 float32; 4.5 MiB: seven per allocation, then one
def test_input_gradients_own_their_storage(numel):
    """The CPU backward carves the input gradients out of a few allocations (csrc/cpu/fresh_pages.h): each
    has its own storage, contiguous, and stays valid when the others are gone."""
    xs, w = _inputs((numel,), 8, torch.float32, "cpu", requires_grad=True)
    g = torch.randn(numel)
    grads = list(torch.autograd.grad(mf.ops.mixed_sum(xs, w), [*xs, w], g))
    storages = {gx.untyped_storage().data_ptr() for gx in grads[:8]}
    assert len(storages) == 8 and all(gx.is_contiguous() and gx._base is None for gx in grads[:8])
    kept = grads[3]
    del grads
    torch.testing.assert_close(kept, w[3].detach() * g)
    kept.add_(1.0)  # writable in place


@pytest.mark.parametrize("weights_grad", [False, True])
def test_gradients_of_a_subset(weights_grad, device):
    """autograd.grad of some inputs only: the C++ Function returns exactly those gradients."""
    xs, w = _inputs((5, 3), 4, torch.float64, device, requires_grad=True)
    w.requires_grad_(weights_grad)
    wanted = [xs[1], xs[3]] + ([w] if weights_grad else [])
    got = torch.autograd.grad(mf.ops.mixed_sum(xs, w).sum(), wanted)
    want = torch.autograd.grad(reference.mixed_sum(xs, w).sum(), wanted)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("per_row", [False, True])
def test_opcheck(per_row, device):
    xs, w = _inputs((3, 5), 4, torch.float32, device, per_row, requires_grad=True)
    torch.library.opcheck(torch.ops.mednns_fast.mixed_sum.default, (xs, w))
    g = torch.randn(3, 5, device=device)
    torch.library.opcheck(torch.ops.mednns_fast.mixed_sum_backward.default,
                          (g, [x.detach() for x in xs], w.detach(), [True, False, True, True], True))


def test_torch_compile_fullgraph(device):
    def edge(xs, w):
        return torch.relu(mf.ops.mixed_sum(xs, torch.softmax(w, 0))) * 2

    xs, w = _inputs((4, 6), 3, torch.float32, device, requires_grad=True)
    compiled = torch.compile(edge, fullgraph=True)
    out = compiled(xs, w)
    assert_on(device, out)
    torch.testing.assert_close(out, edge(xs, w))
    g = torch.randn(4, 6, device=device)
    got = torch.autograd.grad(compiled(xs, w), [*xs, w], g)  # the backward is traced too
    assert_on(device, got)
    want = torch.autograd.grad(edge(xs, w), [*xs, w], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: ([torch.randn(3, device=d)] * 2, torch.randn(3, device=d)), "K mismatch"),
        (lambda d: ([torch.randn(3, device=d), torch.randn(4, device=d)], torch.randn(2, device=d)),
         r"xs\[1\] has shape"),
        (lambda d: ([torch.randn(3, device=d), torch.randn(3, device=d).double()], torch.randn(2, device=d)),
         r"xs\[1\] has dtype"),
        (lambda d: ([torch.randn(3, device=d)] * 2, torch.tensor([1.0, float("nan")], device=d)),
         "weights must be finite"),
        (lambda d: ([torch.randn(3, device=d)] * 2, torch.ones(2, dtype=torch.int64, device=d)),
         "weights must be a floating"),
        (lambda d: ([torch.ones(3, dtype=torch.int32, device=d)] * 2, torch.ones(2, device=d)),
         r"xs\[0\] must be a floating"),
        (lambda d: ([torch.randn(3, 2, device=d)] * 2, torch.randn(4, 2, device=d)), "B=4"),
        (lambda d: ([torch.randn(3, device=d)] * 2, torch.randn(1, 1, 2, device=d)),
         r"weights must be \[K\] or \[B, K\]"),
        (lambda d: ([], torch.randn(0, device=d)), "at least one tensor"),
        (lambda d: ([torch.randn(3, device=d)] * 2, torch.randn(2, device="meta")), "meta"),
    ],
)
def test_bad_input_raises_clear_error(backend, make, match, device):
    xs, w = make(device)
    # debug_checks: the finiteness check is immediate on GPUs too (else an asynchronous device assert)
    with mf.ops.use_backend(backend), pytest.raises(ValueError, match=match), mf.ops.debug_checks():
        mf.ops.mixed_sum(xs, w)


def test_backend_switch():
    # CPU only: it checks the warned fallback of CPU tensors, which have no Triton kernel without the interpreter.
    xs, w = _inputs((5,), 2, torch.float32, "cpu")
    with mf.ops.use_backend("reference"):
        assert mf.ops.get_backend() == "reference"
        torch.testing.assert_close(mf.ops.mixed_sum(xs, w), reference.mixed_sum(xs, w))
    assert mf.ops.get_backend() == "auto"
    with pytest.raises(ValueError, match="backend must be one of"):
        mf.ops.set_backend("fast")
    # CPU tensors without the Triton interpreter: falls back to the C++ kernel, saying why
    with mf.ops.use_backend("triton"), pytest.warns(RuntimeWarning, match="'triton' requested"):
        torch.testing.assert_close(mf.ops.mixed_sum(xs, w), reference.mixed_sum(xs, w))
