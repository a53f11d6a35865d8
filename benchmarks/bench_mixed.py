"""mixed_sum and the fused MixedOp against the eager PyTorch formulations, in one run.

Run: `make demo` or `python -m pytest benchmarks/bench_mixed.py`. The summary prints each entry's speed-up
over its group's baseline and, for mixed_sum, the fraction of the machine's measured copy bandwidth.
"""

import copy

import pytest
import torch
from conftest import mark_bandwidth, mark_baseline

import mednns_fast as mf
from mednns_fast.nas import DARTS_PRIMITIVES, MixedOp

NUMEL = 16 * 1024 * 1024


@pytest.fixture(scope="module", params=[4, 8], ids=lambda k: f"K{k}")
def candidates(request):
    K = request.param
    return [torch.randn(NUMEL) for _ in range(K)], torch.softmax(torch.randn(K), 0)


def eager(xs, w):
    """The DARTS edge as written in DARTS code: one temporary per product and per partial sum."""
    return sum(w[k] * x for k, x in enumerate(xs))


def in_place(xs, w):
    """The best plain-PyTorch formulation: one output buffer, fused multiply-adds into it."""
    out = torch.mul(xs[0], w[0])
    for k in range(1, len(xs)):
        out.add_(xs[k], alpha=float(w[k]))
    return out


def test_copy_bandwidth(benchmark):
    src, dst = torch.randn(NUMEL), torch.empty(NUMEL)
    benchmark.group = "memory copy (bandwidth ceiling)"
    mark_bandwidth(benchmark, 2 * src.nbytes, ceiling=True)
    benchmark(dst.copy_, src)


@pytest.mark.parametrize("impl", ["eager", "in_place", "mixed_sum"])
def test_mixed_sum_forward(benchmark, candidates, impl):
    xs, w = candidates
    benchmark.group = f"mixed_sum forward K={len(xs)} ({NUMEL} elements)"
    mark_bandwidth(benchmark, (len(xs) + 1) * xs[0].nbytes)
    if impl == "eager":
        mark_baseline(benchmark)
    fn = {"eager": eager, "in_place": in_place, "mixed_sum": mf.ops.mixed_sum}[impl]
    out = benchmark(fn, xs, w)
    torch.testing.assert_close(out, eager(xs, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["eager", "mixed_sum"])
def test_mixed_sum_forward_backward(benchmark, candidates, impl):
    xs, w = candidates
    xs = [x.clone().requires_grad_() for x in xs]
    w = w.clone().requires_grad_()
    grad = torch.randn(NUMEL)
    fn = eager if impl == "eager" else mf.ops.mixed_sum
    benchmark.group = f"mixed_sum forward+backward K={len(xs)} ({NUMEL} elements)"
    if impl == "eager":
        mark_baseline(benchmark)

    def step():
        return torch.autograd.grad(fn(xs, w), [*xs, w], grad)

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)


def saved_tensor_bytes(fn) -> int:
    """Bytes autograd keeps alive between forward and backward (unique storages): the activation memory."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()) + out.untyped_storage().nbytes()


@pytest.mark.parametrize("C, H, N", [(16, 32, 32), (32, 32, 16), (64, 32, 8), (16, 64, 8), (64, 64, 4)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("impl", ["naive", "fused"])
def test_mixed_op_forward_backward(benchmark, C, H, N, impl):
    torch.manual_seed(0)
    fused = MixedOp(C, 1, DARTS_PRIMITIVES)
    naive = copy.deepcopy(fused)
    x = torch.randn(N, C, H, H, requires_grad=True)
    alpha = torch.randn(8, requires_grad=True)
    forward = (lambda: fused(x, torch.softmax(alpha, 0))) if impl == "fused" else (
        lambda: naive.forward_naive(x, torch.softmax(alpha, 0)))
    benchmark.group = f"MixedOp forward+backward C={C} {H}x{H} N={N}"
    benchmark.extra_info["saved_MB"] = round(saved_tensor_bytes(forward) / 2**20, 1)
    if impl == "naive":
        mark_baseline(benchmark)
    benchmark.pedantic(lambda: forward().sum().backward(), rounds=5, warmup_rounds=1)
