"""mixed_sum across sizes and per call: K=8 float32, 64 KiB to 64 MiB per tensor, forward and forward+backward,
against `torch.compile` of `sum(w[k] * xs[k])` (the baseline) and the eager expression, in one run; then the
per-call cost at a tiny size, against the eager expression (the baseline there).

Run: `python -m pytest benchmarks/bench_mixed_sizes.py --benchmark-json=run.json` (sizes ascending in one
process, as glibc's dynamic thresholds then evolve as in a program that grows its tensors; the entries of a size
one after the other). The summary prints each entry's speed-up over its group's baseline and its fraction of the
copy bandwidth measured at the same working set (a copy of (K+1)/2 tensors into a preallocated buffer), and
`minflt` (median page faults per call, `resource.getrusage`). Glibc defaults throughout: nothing here sets
MALLOC_* variables.

Bytes a call must move: forward K reads + 1 write; forward+backward (3K+2) tensors (the forward, then the
gradient and K inputs read, K input gradients written).
"""

import resource
import statistics

import pytest
import torch

import mednns_fast as mf
from benchmarks.conftest import mark_bandwidth, mark_baseline

K = 8
SIZES_KIB = [64, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536]
IMPLS = ["compiled", "eager", "mixed_sum"]


def eager(xs, w):
    """The DARTS edge as written in DARTS code."""
    return sum(w[k] * x for k, x in enumerate(xs))


compiled_expression = torch.compile(eager)
FNS = {"eager": eager, "compiled": compiled_expression, "mixed_sum": lambda xs, w: mf.ops.mixed_sum(xs, w)}


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _rounds(nbytes: int) -> int:
    """Enough calls for a median at small sizes, few at 64 MiB (a forward+backward moves 1.6 GB there)."""
    return max(5, min(200, int(4e8 / nbytes)))


def _counting_faults(benchmark, fn):
    """fn, recording the median page faults per call in the benchmark's extra_info."""
    faults = []

    def call():
        f0 = _minflt()
        out = fn()
        faults.append(_minflt() - f0)
        return out

    def done():
        benchmark.extra_info["minflt"] = int(statistics.median(faults))

    return call, done


@pytest.fixture(scope="module")
def inputs():
    cache = {}

    def get(kib):
        if kib not in cache:
            cache.clear()  # one size alive at a time
            n = kib * 1024 // 4
            g = torch.Generator().manual_seed(kib)
            xs = [torch.randn(n, generator=g) for _ in range(K)]
            cache[kib] = (xs, torch.softmax(torch.randn(K, generator=g), 0), torch.randn(n, generator=g))
        return cache[kib]

    return get


CASES = [(kib, impl) for kib in SIZES_KIB for impl in ["copy", *IMPLS]]


def _size(kib: int) -> str:
    return f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"


@pytest.mark.parametrize("kib, impl", CASES, ids=[f"{_size(k).replace(' ', '')}-{i}" for k, i in CASES])
def test_mixed_sum_sizes(benchmark, inputs, kib, impl):
    xs, w, grad = inputs(kib)
    nbytes = xs[0].nbytes
    if impl == "copy":  # the floor at this working set: a copy into a preallocated buffer
        src = torch.randn((K + 1) * xs[0].numel() // 2)
        dst = torch.empty_like(src)
        benchmark.group = f"copy bandwidth, working set of mixed_sum at {_size(kib)} per tensor"
        mark_baseline(benchmark)
        mark_bandwidth(benchmark, 2 * src.nbytes, ceiling=True, scope=_size(kib))
        benchmark.pedantic(dst.copy_, (src,), rounds=_rounds(2 * src.nbytes), warmup_rounds=2)
        return
    fn = FNS[impl]
    # forward
    benchmark.group = f"mixed_sum sizes forward K={K} {_size(kib)} per tensor"
    if impl == "compiled":
        mark_baseline(benchmark)
    mark_bandwidth(benchmark, (K + 1) * nbytes, scope=_size(kib))
    torch.testing.assert_close(fn(xs, w), eager(xs, w), rtol=1e-5, atol=1e-5)  # compiles outside the timing
    call, done = _counting_faults(benchmark, lambda: fn(xs, w))
    benchmark.pedantic(call, rounds=_rounds((K + 1) * nbytes), warmup_rounds=2)
    done()


@pytest.mark.parametrize("kib, impl", [c for c in CASES if c[1] != "copy"],
                         ids=[f"{_size(k).replace(' ', '')}-{i}" for k, i in CASES if i != "copy"])
def test_mixed_sum_sizes_forward_backward(benchmark, inputs, kib, impl):
    xs, w, grad = inputs(kib)
    xs = [x.requires_grad_() for x in xs]
    w = w.requires_grad_()
    fn = FNS[impl]
    benchmark.group = f"mixed_sum sizes forward+backward K={K} {_size(kib)} per tensor"
    if impl == "compiled":
        mark_baseline(benchmark)
    mark_bandwidth(benchmark, (3 * K + 2) * xs[0].nbytes, scope=_size(kib))

    def step():
        return torch.autograd.grad(fn(xs, w), [*xs, w], grad)

    got = step()  # compiles the forward and backward outside the timing; checked against eager
    want = torch.autograd.grad(eager(xs, w), [*xs, w], grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * xs[0].numel())
    del got, want
    call, done = _counting_faults(benchmark, step)
    benchmark.pedantic(call, rounds=_rounds((3 * K + 2) * xs[0].nbytes), warmup_rounds=2)
    done()


# ---- per call at a tiny size: K=8 candidates of [2, 4, 8, 8] (2 KiB each) ------------------------------------
TINY = (2, 4, 8, 8)
MODES = ["forward", "forward+backward", "no_grad"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", ["eager", "compiled", "mixed_sum"])
def test_mixed_sum_per_call(benchmark, mode, impl):
    """One call at a tiny size, where the per-call overhead is all there is. Baseline: the eager expression
    ("forward": inputs requiring grad, the autograd graph built; "no_grad": under torch.no_grad)."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(TINY, generator=g).requires_grad_(mode != "no_grad") for _ in range(K)]
    w = torch.softmax(torch.randn(K, generator=g), 0).requires_grad_(mode != "no_grad")
    grad = torch.randn(TINY, generator=g)
    fn = FNS[impl]
    benchmark.group = f"mixed_sum per call K={K} {TINY} {mode}"
    if impl == "eager":
        mark_baseline(benchmark)
    if mode == "forward+backward":
        def call():
            return torch.autograd.grad(fn(xs, w), [*xs, w], grad)
    elif mode == "no_grad":
        def call():
            with torch.no_grad():
                return fn(xs, w)
    else:
        def call():
            return fn(xs, w)
    call()
    benchmark.pedantic(call, rounds=2000, warmup_rounds=50)
