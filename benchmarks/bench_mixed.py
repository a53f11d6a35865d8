"""mixed_sum, the fused MixedOp and its shared stages against what PyTorch users run, in one run: the eager
expression, the in-place formulation, and the same expression / naive module / per-candidate calls compiled
by Inductor (`torch.compile`), the baseline of every group here.

Run: `make demo` or `python -m pytest benchmarks/bench_mixed.py`. The summary prints each entry's speed-up
over its group's baseline and, for mixed_sum, the fraction of the machine's measured copy bandwidth (both
into a preallocated buffer, and into a fresh one as every op here writes).

Fresh-page policies (csrc/cpu/fresh_pages.h): by default our CPU kernels fault in each chunk of a large
fresh output with one call before writing it (the same 4 KiB pages as the baselines', no trap per page).
Opt-in, they ask Linux for transparent huge pages on it (MEDNNS_FAST_HUGE_PAGES=1: a different page size, an
allocation condition Inductor's and eager outputs do not get). Every mixed_sum entry is timed three ways in
the same run: `mixed_sum` (the default), `mixed_sum_huge_pages` (the opt-in hint) and `mixed_sum_no_prefault`
(neither, MEDNNS_FAST_PREFAULT=0: what the prefault is worth).
"""

import contextlib
import copy
import math
import os

import pytest
import torch

import mednns_fast as mf
from benchmarks.conftest import mark_bandwidth, mark_baseline
from mednns_fast.nas import DARTS_PRIMITIVES, MixedOp

NUMEL = 16 * 1024 * 1024


@pytest.fixture(scope="module", params=[4, 8], ids=lambda k: f"K{k}")
def candidates(request):
    K = request.param
    return [torch.randn(NUMEL) for _ in range(K)], torch.softmax(torch.randn(K), 0)


def eager(xs, w):
    """The DARTS edge as written in DARTS code: one temporary per product and per partial sum."""
    return sum(w[k] * x for k, x in enumerate(xs))


# The expression a PyTorch 2 user compiles: Inductor fuses it into one pass (one kernel, fresh output).
compiled_expression = torch.compile(eager)


# Entry name -> (huge-page hint, prefault) for our kernels' fresh outputs.
FRESH_PAGE_POLICIES = {"mixed_sum": (False, True), "mixed_sum_huge_pages": (True, True),
                       "mixed_sum_no_prefault": (False, False)}


@contextlib.contextmanager
def _environment(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def allocation_policy(impl: str):
    """Entry `impl`'s fresh-page policy for the calls inside, a whole forward+backward step included (the
    backward allocates the input gradients); the default for entries that are not ours. The C++ side reads
    the variables at every call."""
    huge_pages, prefault = FRESH_PAGE_POLICIES.get(impl, FRESH_PAGE_POLICIES["mixed_sum"])
    return _environment(MEDNNS_FAST_HUGE_PAGES=str(int(huge_pages)), MEDNNS_FAST_PREFAULT=str(int(prefault)))


def _mixed_sum_under(policy: str):
    def call(xs, w):
        with allocation_policy(policy):
            return mf.ops.mixed_sum(xs, w)

    call.__name__ = policy
    return call


IMPLS = {"eager": eager, "compiled": compiled_expression,
         **{name: _mixed_sum_under(name) for name in FRESH_PAGE_POLICIES}}


def in_place(xs, w):
    """The best plain-PyTorch formulation: one output buffer, fused multiply-adds into it."""
    out = torch.mul(xs[0], w[0])
    for k in range(1, len(xs)):
        out.add_(xs[k], alpha=float(w[k]))
    return out


@pytest.mark.parametrize("dst", ["preallocated", "fresh"])
def test_copy_bandwidth(benchmark, dst):
    """The floor of a memory-bound op: a plain copy, into a preallocated buffer (the machine's bandwidth
    ceiling) and into a fresh tensor (what an op returning a new output pays: page faults included)."""
    src, out = torch.randn(NUMEL), torch.empty(NUMEL)
    benchmark.group = "memory copy (bandwidth floor of a memory-bound op)"
    mark_bandwidth(benchmark, 2 * src.nbytes, ceiling=dst == "preallocated")
    if dst == "preallocated":
        mark_baseline(benchmark)
        benchmark(out.copy_, src)
    else:
        benchmark(torch.clone, src)


@pytest.mark.parametrize("impl", ["compiled", "eager", "in_place", *FRESH_PAGE_POLICIES])
def test_mixed_sum_forward(benchmark, candidates, impl):
    xs, w = candidates
    benchmark.group = f"mixed_sum forward K={len(xs)} ({NUMEL} elements)"
    mark_bandwidth(benchmark, (len(xs) + 1) * xs[0].nbytes)
    if impl == "compiled":
        mark_baseline(benchmark)
    fn = {**IMPLS, "in_place": in_place}[impl]
    fn(xs, w)  # compiles outside the timing
    out = benchmark(fn, xs, w)
    torch.testing.assert_close(out, eager(xs, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["compiled", "eager", *FRESH_PAGE_POLICIES])
def test_mixed_sum_forward_backward(benchmark, candidates, impl):
    xs, w = candidates
    xs = [x.clone().requires_grad_() for x in xs]
    w = w.clone().requires_grad_()
    grad = torch.randn(NUMEL)
    fn = IMPLS[impl]
    benchmark.group = f"mixed_sum forward+backward K={len(xs)} ({NUMEL} elements)"
    if impl == "compiled":
        mark_baseline(benchmark)

    def step():
        with allocation_policy(impl):
            return torch.autograd.grad(fn(xs, w), [*xs, w], grad)

    got = step()  # compiles the forward and backward outside the timing; checked against eager
    want = torch.autograd.grad(eager(xs, w), [*xs, w], grad)
    for a, b in zip(got[:-1], want[:-1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
    # The weights' gradient is a float32 sum of 16M products: summation order alone moves it by ~1e-9 of
    # sum |x * grad| (about 1e7 here), so the tolerance is absolute on that scale.
    torch.testing.assert_close(got[-1], want[-1], rtol=0, atol=1e-8 * NUMEL)
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)


def _grads_match(forward, reference, leaves) -> bool:
    """Whether forward's output and gradients (w.r.t. leaves) equal the eager naive module's: Inductor
    mis-compiles some pooling backwards (docs/), so a compiled baseline's figures say if it was right."""
    g = None
    outs = []
    for fn in (forward, reference):
        out = fn()
        g = torch.randn_like(out) if g is None else g
        outs.append((out.detach(), torch.autograd.grad(out, leaves, g)))
    (o1, g1), (o2, g2) = outs
    return all(torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip((o1, *g1), (o2, *g2), strict=True))


@pytest.mark.parametrize("C, H, N", [(16, 32, 32), (32, 32, 16), (64, 32, 8), (16, 64, 8), (64, 64, 4)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("impl", ["naive_compiled", "naive", "fused"])
def test_mixed_op_forward_backward(benchmark, C, H, N, impl):
    """Baseline: the naive DARTS edge (`forward_naive`, every candidate on its own) compiled by Inductor;
    also the eager naive edge. Forward and backward of a training step (BatchNorms in training mode)."""
    torch.manual_seed(0)
    fused = MixedOp(C, 1, DARTS_PRIMITIVES)
    naive = copy.deepcopy(fused)
    x = torch.randn(N, C, H, H, requires_grad=True)
    alpha = torch.randn(8, requires_grad=True)
    naive_fn = torch.compile(naive.forward_naive) if impl == "naive_compiled" else naive.forward_naive
    forward = (lambda: fused(x, torch.softmax(alpha, 0))) if impl == "fused" else (
        lambda: naive_fn(x, torch.softmax(alpha, 0)))
    benchmark.group = f"MixedOp forward+backward C={C} {H}x{H} N={N}"
    benchmark.extra_info["saved_MB"] = round(mf.nas.saved_activation_bytes(forward, include_output=True) / 2**20, 1)
    if impl != "naive":  # compiles outside the timing; says whether the result was right
        eager_naive = copy.deepcopy(naive)
        benchmark.extra_info["grads_match_eager"] = _grads_match(
            forward, lambda: eager_naive.forward_naive(x, torch.softmax(alpha, 0)), [x, alpha])
    if impl == "naive_compiled":
        mark_baseline(benchmark)
    benchmark.pedantic(lambda: forward().sum().backward(), rounds=5, warmup_rounds=1)


KERNELS, DILATIONS = (3, 5, 3, 5), (1, 1, 2, 2)  # the DARTS sep/dil convs' first stages


def _depthwise_eager(x, ws, stride):
    """What DARTS code runs: one depthwise conv2d per candidate (oneDNN on CPU)."""
    return torch.cat([torch.nn.functional.conv2d(x, w, None, stride, d * (w.shape[-1] - 1) // 2, d, x.shape[1])
                      for w, d in zip(ws, DILATIONS, strict=True)], 1)


def _pools_eager(x, stride):
    """What DARTS code runs: its max pool and average pool candidates."""
    return torch.cat([torch.nn.functional.max_pool2d(x, 3, stride, 1),
                      torch.nn.functional.avg_pool2d(x, 3, stride, 1, count_include_pad=False)], 1)


STAGES = {
    "depthwise": {"eager": _depthwise_eager,
                  "ours": lambda x, ws, s: mf.ops.multi_depthwise_conv2d(x, ws, DILATIONS, s)},
    "pools": {"eager": lambda x, ws, s: _pools_eager(x, s),
              "ours": lambda x, ws, s: mf.ops.max_avg_pool3x3(x, s)[0]},
}


@pytest.mark.parametrize("C, H, N, stride", [(16, 32, 32, 1), (16, 32, 32, 2), (32, 16, 32, 1), (64, 8, 32, 1)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("impl", ["compiled", "eager", "ours"])
def test_edge_stage_forward_backward(benchmark, stage, C, H, N, stride, impl):
    """The fused edge's two shared stages against the per-candidate calls they replace, forward + backward:
    the four sep/dil first-stage depthwise convs (`multi_depthwise_conv2d`) and the max + avg pools
    (`max_avg_pool3x3`). Baseline: the per-candidate calls compiled by Inductor; also eager."""
    torch.manual_seed(0)
    x = torch.randn(N, C, H, H, requires_grad=True)
    ws = [torch.randn(C, 1, k, k, requires_grad=True) for k in KERNELS]
    eager_fn = STAGES[stage]["eager"]
    fn = {"eager": eager_fn, "compiled": torch.compile(eager_fn), "ours": STAGES[stage]["ours"]}[impl]
    benchmark.group = f"edge stage {stage} forward+backward C={C} {H}x{H} N={N} stride={stride}"
    if impl != "eager":  # compiles outside the timing; says whether the result was right
        leaves = [x] if stage == "pools" else [x, *ws]
        benchmark.extra_info["grads_match_eager"] = _grads_match(lambda: fn(x, ws, stride),
                                                                 lambda: eager_fn(x, ws, stride), leaves)
    if impl == "compiled":
        mark_baseline(benchmark)
    benchmark.pedantic(lambda: fn(x, ws, stride).sum().backward(), rounds=5, warmup_rounds=1)


# ---- rows of benchmarks/gpu_bench.py (C++ CUDA vs Triton vs eager and compiled PyTorch, on a GPU) -------
# Problem sizes; the GPU_SMALL ones only smoke-test the script's plumbing (their timings mean nothing).
GPU_SIZES = {"mixed_sum": [(8, (64, 64, 64, 64)), (4, (256, 32, 32, 32))]}
GPU_SMALL = {"mixed_sum": [(9, (3, 5, 7))]}


def gpu_cases(bench, mf, device: torch.device, dtype: torch.dtype, small: bool = False) -> list:
    """This family's `bench.Case`s for benchmarks/gpu_bench.py (`bench` is that script's module)."""
    T = torch.ops.mednns_fast_triton
    es = torch.empty(0, dtype=dtype).element_size()
    sizes = GPU_SMALL if small else GPU_SIZES
    cases = []

    # mixed_sum: memory bound. One DARTS edge of a 16x(64x64x64) feature map, 8 candidates.
    for K, shape in sizes["mixed_sum"]:
        numel = math.prod(shape)

        def make(K=K, shape=shape):
            return [torch.randn(shape, device=device, dtype=dtype) for _ in range(K)], \
                torch.softmax(torch.randn(K, device=device), 0).to(dtype)

        cases.append(bench.Case(
            "mixed_sum", f"fwd K={K} {numel / 1e6:.0f}M", make,
            reference=lambda xs, w: mf.ops.reference.mixed_sum(xs, w),
            backends={"eager": lambda xs, w: sum(w[k] * x for k, x in enumerate(xs)),
                      "cpp": (lambda xs, w: torch.ops.mednns_fast.mixed_sum(xs, w))
                      if bench.cpp_cuda(mf, "mixed_sum") else None,
                      "triton": lambda xs, w: T.mixed_sum(xs, w)},
            nbytes=(K + 1) * numel * es, tol=1e-4,
            why_missing={"cpp": "extension built without CUDA kernels"}))

        def make_bwd(K=K, shape=shape):
            xs, w = make(K, shape)
            return torch.randn(shape, device=device, dtype=dtype), xs, w

        def eager_bwd(g, xs, w):
            return [w[k] * g for k in range(len(xs))], torch.stack([(x * g).sum() for x in xs])

        def ref_bwd(g, xs, w):
            return eager_bwd(g.double(), [x.double() for x in xs], w.double())

        need = [True] * K
        cases.append(bench.Case(
            "mixed_sum_backward", f"bwd K={K} {numel / 1e6:.0f}M", make_bwd, reference=ref_bwd,
            backends={"eager": eager_bwd,
                      "cpp": (lambda g, xs, w, need=need: torch.ops.mednns_fast.mixed_sum_backward(
                          g, xs, w, need, True)) if bench.cpp_cuda(mf, "mixed_sum_backward") else None,
                      "triton": lambda g, xs, w, need=need: T.mixed_sum_backward(g, xs, w, need, True)},
            nbytes=(2 * K + 1) * numel * es, tol=1e-3,
            why_missing={"cpp": "extension built without CUDA kernels"}))
    return cases
