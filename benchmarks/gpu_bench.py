"""GPU benchmark of every op family: C++ CUDA vs Triton vs eager PyTorch vs the same PyTorch compiled by
Inductor (`torch.compile(dynamic=False)`), after checking each against the reference.

    python benchmarks/gpu_bench.py                      # every op
    python benchmarks/gpu_bench.py --ops mixed_sum,js_pairwise --reps 100
    python benchmarks/gpu_bench.py --no-compile        # without the compiled-PyTorch column (faster)

It first measures the device's ceilings (device-to-device copy bandwidth; float32 and float64 matmul
FLOP/s with TF32 off), then for each op and case checks every backend's output against the reference
(failures are listed and make the exit status 1), then times each with CUDA events: `--warmup` calls,
then `--reps` calls each timed on its own, the inputs rotating over enough copies to defeat the L2 cache;
the table gives the median and the fraction of the relevant ceiling (bandwidth for memory-bound ops,
FLOP/s for compute-bound ones).

Without a CUDA GPU it prints why it refuses to report GPU figures and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
from collections.abc import Callable

import torch

NO_GPU_EXIT = 2


@dataclasses.dataclass
class Case:
    """One benchmark: `make()` builds one input set; each backend is a callable on an input set."""

    op: str
    name: str
    make: Callable[[], tuple]
    reference: Callable[..., object]
    backends: dict[str, Callable[..., object] | None]  # None: not available (the table says why)
    nbytes: int = 0  # minimal bytes one call must move (memory-bound ops)
    flops: int = 0  # useful floating-point operations of one call (compute-bound ops)
    flop_dtype: torch.dtype = torch.float32
    tol: float = 1e-5
    mutates: bool = False  # the backends update their inputs in place: checked on copies
    why_missing: dict[str, str] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------------------ helpers
def _timed(fn: Callable[..., object], input_sets: list[tuple], warmup: int, reps: int) -> float:
    """Median seconds of one call, CUDA events around each call, inputs rotating over `input_sets`."""
    for i in range(warmup):
        fn(*input_sets[i % len(input_sets)])
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(reps)]
    for i, (start, end) in enumerate(events):
        args = input_sets[i % len(input_sets)]
        start.record()
        fn(*args)
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events) / 1e3


def _input_copies(make: Callable[[], tuple], l2_bytes: int) -> list[tuple]:
    """Enough input sets that consecutive calls never find their inputs in L2 (at most 8)."""
    first = make()
    size = sum(t.nbytes for t in _tensors(first))
    count = min(8, max(2, math.ceil(2 * l2_bytes / max(size, 1))))
    return [first] + [make() for _ in range(count - 1)]


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _copies(inputs: tuple, clone: bool) -> tuple:
    return tuple(t.clone() if clone and isinstance(t, torch.Tensor) else t for t in inputs)


def _close(got, want, tol: float) -> bool:
    got_t, want_t = _tensors(got), _tensors(want)
    if len(got_t) != len(want_t):
        return False
    for a, b in zip(got_t, want_t, strict=True):
        if a.shape != b.shape:
            return False
        a, b = a.double(), b.double()
        finite = torch.isfinite(b)
        if not torch.equal(finite, torch.isfinite(a)) or not torch.allclose(a[finite], b[finite], rtol=tol,
                                                                               atol=tol):
            return False
    return True


def measure_ceilings(device: torch.device) -> dict[str, float]:
    """Copy bandwidth (bytes/s) and matmul FLOP/s (float32 without TF32, float64) of the device."""
    src = torch.empty(1 << 28, dtype=torch.float32, device=device)  # 1 GiB
    copy_s = _timed(torch.Tensor.copy_, [(torch.empty_like(src), src)], warmup=5, reps=20)
    ceilings = {"bandwidth": 2 * src.nbytes / copy_s}
    del src
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for dtype, n in ((torch.float32, 8192), (torch.float64, 4096)):
            a = torch.randn(n, n, device=device, dtype=dtype)
            secs = _timed(lambda a=a: a @ a, [()], warmup=3, reps=10)
            ceilings[str(dtype)] = 2 * n**3 / secs
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return ceilings


# ---------------------------------------------------------------------------------------- the cases
def _public_on(mf, public: str, backend: str, device: torch.device | None = None,
               **kwargs) -> Callable[..., object] | None:
    """The public op `mf.ops.<public>` forced onto one backend; None where the package lacks it or the op
    would fall back to another backend on `device` (a column must measure what it is named after)."""
    fn = getattr(mf.ops, public, None)
    if fn is None:
        return None
    if device is not None:
        with mf.ops.use_backend(backend):
            if mf.ops.backend_for(public, device)[0] != backend:
                return None

    def call(*args):
        with mf.ops.use_backend(backend):
            return fn(*args, **kwargs)

    return call


def _triton_call(mf, public: str, raw: Callable[..., object], device: torch.device,
                 **kwargs) -> Callable[..., object]:
    """The public op on the "triton" backend where the package wires it (the same wrapper overhead as
    the cpp column), else the raw Triton op."""
    return _public_on(mf, public, "triton", device, **kwargs) or raw


def _cpp_cuda(mf, op: str) -> bool:
    from mednns_fast.ops import _library

    return _library.CPP_KERNELS.get((op, "cuda"), False)


def add_compiled_baselines(cases: list[Case]) -> None:
    """Every case's eager PyTorch, compiled by Inductor (what a PyTorch 2 user runs), as a "compiled"
    backend right after "eager"."""
    for case in cases:
        eager = case.backends["eager"]
        rest = {k: v for k, v in case.backends.items() if k != "eager"}
        case.backends = {"eager": eager, "compiled": torch.compile(eager, dynamic=False), **rest}


# Problem sizes; SMALL ones only smoke-test the script's plumbing (their timings mean nothing).
SIZES = {
    "mixed_sum": [(8, (64, 64, 64, 64)), (4, (256, 32, 32, 32))],
    "js_divergence": [(1 << 20, 10, True), (1 << 16, 1000, True), (1 << 20, 10, False)],
    "js_pairwise": [(2048, 2048, 64), (512, 512, 1000)],
    "js_stability": [(200, 112, 8, 5)],
    "feature_stats_update_": [(4096, 2048), (50000, 64)],
}
SMALL = {
    "mixed_sum": [(9, (3, 5, 7))],
    "js_divergence": [(33, 7, True), (5, 300, False)],
    "js_pairwise": [(9, 13, 5)],
    "js_stability": [(9, 3, 5, 2)],
    "feature_stats_update_": [(41, 19)],
}


def build_cases(mf, device: torch.device, dtype: torch.dtype, small: bool = False) -> list[Case]:
    T = torch.ops.mednns_fast_triton
    es = torch.empty(0, dtype=dtype).element_size()
    cases: list[Case] = []

    # mixed_sum: memory bound. One DARTS edge of a 16x(64x64x64) feature map, 8 candidates.
    sizes = SMALL if small else SIZES
    for K, shape in sizes["mixed_sum"]:
        numel = math.prod(shape)

        def make(K=K, shape=shape):
            return [torch.randn(shape, device=device, dtype=dtype) for _ in range(K)], \
                torch.softmax(torch.randn(K, device=device), 0).to(dtype)

        cases.append(Case(
            "mixed_sum", f"fwd K={K} {numel / 1e6:.0f}M", make,
            reference=lambda xs, w: mf.ops.reference.mixed_sum(xs, w),
            backends={"eager": lambda xs, w: sum(w[k] * x for k, x in enumerate(xs)),
                      "cpp": (lambda xs, w: torch.ops.mednns_fast.mixed_sum(xs, w))
                      if _cpp_cuda(mf, "mixed_sum") else None,
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
        cases.append(Case(
            "mixed_sum_backward", f"bwd K={K} {numel / 1e6:.0f}M", make_bwd, reference=ref_bwd,
            backends={"eager": eager_bwd,
                      "cpp": (lambda g, xs, w, need=need: torch.ops.mednns_fast.mixed_sum_backward(
                          g, xs, w, need, True)) if _cpp_cuda(mf, "mixed_sum_backward") else None,
                      "triton": lambda g, xs, w, need=need: T.mixed_sum_backward(g, xs, w, need, True)},
            nbytes=(2 * K + 1) * numel * es, tol=1e-3,
            why_missing={"cpp": "extension built without CUDA kernels"}))

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

        cases.append(Case(
            "js_divergence", f"R={R} K={K} {'logits' if logits else 'probs'}", make_js,
            reference=lambda p, q, js_eager=js_eager: js_eager(p.double(), q.double()),
            backends={"eager": js_eager,
                      "cpp": _public_on(mf, "js_divergence", "cpp", device, from_logits=logits)
                      if _cpp_cuda(mf, "js_divergence") else None,
                      "triton": _triton_call(mf, "js_divergence", lambda p, q, logits=logits: T.js_divergence(
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

        cases.append(Case(
            "js_pairwise", f"N={N} M={M} K={K}", make_pair,
            reference=lambda p, q: pair_eager(p.double(), q.double()),
            backends={"eager": pair_eager,
                      "cpp": _public_on(mf, "js_pairwise", "cpp", device) if _cpp_cuda(mf, "js_pairwise") else None,
                      "triton": _triton_call(mf, "js_pairwise", T.js_pairwise, device)},
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

        cases.append(Case(
            "js_stability", f"T={T_} E={E} K={K} window={window}", make_hist,
            reference=lambda h, window, stab_eager=stab_eager: stab_eager(h.double(), window),
            backends={"eager": stab_eager,
                      "cpp": _public_on(mf, "js_stability", "cpp", device) if _cpp_cuda(mf, "js_stability") else None,
                      "triton": _triton_call(mf, "js_stability", T.js_stability, device)},
            nbytes=T_ * E * K * es, tol=1e-5,
            why_missing={"cpp": "no C++ CUDA kernel registered for js_stability"}))

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

        cases.append(Case(
            "feature_stats_update_", f"n={n} d={d}", make_feat, reference=update_eager,
            backends={"eager": update_eager,
                      "cpp": in_place(torch.ops.mednns_fast.feature_stats_update_)
                      if _cpp_cuda(mf, "feature_stats_update_") else None,
                      "triton": in_place(T.feature_stats_update_)},
            flops=2 * n * d * d, flop_dtype=dtype, tol=1e-4, mutates=True,
            why_missing={"cpp": "no C++ CUDA kernel registered for feature_stats_update_"}))
    return cases


# -------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default="", help="comma-separated op names to run (default: all)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--small", action="store_true",
                        help="tiny sizes: a smoke test of this script, its figures mean nothing")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU is available (torch.cuda.is_available() is False); refusing to print "
              "GPU figures. Run it on a machine with a CUDA GPU.", file=sys.stderr)
        return NO_GPU_EXIT

    import mednns_fast as mf

    if not mf.triton.AVAILABLE:
        print(f"gpu_bench: Triton does not import ({mf.triton.IMPORT_ERROR}); the triton column is skipped",
              file=sys.stderr)
    device = torch.device("cuda")
    dtype = getattr(torch, args.dtype)
    props = torch.cuda.get_device_properties(device)
    l2 = getattr(props, "L2_cache_size", 50 << 20)
    triton_version = getattr(sys.modules.get("triton"), "__version__", "n/a")
    print(f"device: {props.name}, {props.multi_processor_count} SMs, L2 {l2 >> 20} MiB; "
          f"torch {torch.__version__}; triton {triton_version}; dtype {args.dtype}")
    ceil = measure_ceilings(device)
    print(f"measured ceilings: copy {ceil['bandwidth'] / 1e9:.0f} GB/s; matmul float32 (no TF32) "
          f"{ceil['torch.float32'] / 1e12:.1f} TFLOP/s, float64 {ceil['torch.float64'] / 1e12:.1f} TFLOP/s\n")

    wanted = {o.strip() for o in args.ops.split(",") if o.strip()}
    cases = [c for c in build_cases(mf, device, dtype, args.small) if not wanted or c.op in wanted]
    if wanted - {c.op for c in cases}:
        print(f"gpu_bench: unknown ops {sorted(wanted - {c.op for c in cases})}", file=sys.stderr)
        return 1
    if not args.no_compile:
        add_compiled_baselines(cases)

    header = f"{'op':22s} {'case':28s} {'backend':8s} {'median us':>10s} {'x eager':>8s} {'x compiled':>10s} " \
             f"{'achieved':>14s} {'of ceiling':>10s}  check"
    print(header)
    print("-" * len(header))
    failures = []
    for case in cases:
        if not mf.triton.AVAILABLE:
            case.backends["triton"] = None
            case.why_missing["triton"] = "Triton not installed"
        input_sets = _input_copies(case.make, l2)
        want = case.reference(*_copies(input_sets[0], case.mutates))
        eager_s = compiled_s = None
        for backend, fn in case.backends.items():
            if fn is None:
                why = case.why_missing.get(backend)
                print(f"{case.op:22s} {case.name:28s} {backend:8s} {'n/a':>10s}  ({why})")
                continue
            ok = _close(fn(*_copies(input_sets[0], case.mutates)), want, case.tol)
            if not ok:
                failures.append(f"{case.op} {case.name} {backend}")
            secs = _timed(fn, input_sets, args.warmup, args.reps)
            eager_s = secs if backend == "eager" else eager_s
            if case.flops:
                rate = case.flops / secs
                achieved = f"{rate / 1e12:.2f} TFLOP/s"
                fraction = rate / ceil[str(case.flop_dtype)]
            else:
                rate = case.nbytes / secs
                achieved = f"{rate / 1e9:.0f} GB/s"
                fraction = rate / ceil["bandwidth"]
            compiled_s = secs if backend == "compiled" else compiled_s
            speedup = f"{eager_s / secs:.2f}" if eager_s else "-"
            vs_compiled = f"{compiled_s / secs:.2f}" if compiled_s else "-"
            print(f"{case.op:22s} {case.name:28s} {backend:8s} {secs * 1e6:10.1f} {speedup:>8s} {vs_compiled:>10s} "
                  f"{achieved:>14s} {100 * fraction:9.0f}%  {'ok' if ok else 'MISMATCH'}")
    print("\nbandwidth: minimal bytes moved per call / median time, against the copy ceiling. FLOP/s: "
          "useful operations (js_pairwise: 5 per pair and class; feature_stats_update_: 2 n d^2, "
          "GEMM-equivalent) against the matmul ceiling of the input dtype (float64-accumulating kernels "
          "included).")
    if failures:
        print(f"\nMISMATCH against the reference: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
