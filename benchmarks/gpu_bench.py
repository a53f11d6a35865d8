"""GPU benchmark of every op family: C++ CUDA vs Triton vs eager PyTorch vs the same PyTorch compiled by
Inductor (`torch.compile(dynamic=False)`), after checking each against the reference.

    python -m benchmarks.gpu_bench                      # every op (from the repository root)
    python -m benchmarks.gpu_bench --ops mixed_sum,js_pairwise --reps 100
    python -m benchmarks.gpu_bench --no-compile        # without the compiled-PyTorch column (faster)

Run by its path (`python benchmarks/gpu_bench.py`), it runs itself again as that module with the repository
root on PYTHONPATH: the family benchmark modules it reads its cases from import `benchmarks.*` and
`python_tests.*`.

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
import importlib
import math
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

NO_GPU_EXIT = 2
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


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
def public_on(mf, public: str, backend: str, device: torch.device | None = None,
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


def triton_call(mf, public: str, raw: Callable[..., object], device: torch.device,
                 **kwargs) -> Callable[..., object]:
    """The public op on the "triton" backend where the package wires it (the same wrapper overhead as
    the cpp column), else the raw Triton op."""
    return public_on(mf, public, "triton", device, **kwargs) or raw


def cpp_cuda(mf, op: str) -> bool:
    from mednns_fast.ops import _library

    return _library.CPP_KERNELS.get((op, "cuda"), False)


def add_compiled_baselines(cases: list[Case]) -> None:
    """Every case's eager PyTorch, compiled by Inductor (what a PyTorch 2 user runs), as a "compiled"
    backend right after "eager"."""
    for case in cases:
        eager = case.backends["eager"]
        rest = {k: v for k, v in case.backends.items() if k != "eager"}
        case.backends = {"eager": eager, "compiled": torch.compile(eager, dynamic=False), **rest}


# ---------------------------------------------------------------------------------------- the cases
def family_benchmarks() -> list:
    """Every benchmarks/bench_<family>.py that defines `gpu_cases(bench, mf, device, dtype, small)`: the
    rows of this script are found there, so a new family adds its rows in its own benchmark file."""
    modules = []
    for path in sorted(HERE.glob("bench_*.py")):
        if "\ndef gpu_cases(" in path.read_text():
            modules.append(importlib.import_module(f"benchmarks.{path.stem}"))
    return modules


def build_cases(mf, device: torch.device, dtype: torch.dtype, small: bool = False) -> list[Case]:
    bench = sys.modules[__name__]
    return [case for module in family_benchmarks() for case in module.gpu_cases(bench, mf, device, dtype, small)]


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
    if not __package__:  # run by its path: again as benchmarks.gpu_bench (module docstring)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.gpu_bench", *sys.argv[1:]],
                  {**os.environ, "PYTHONPATH": path})
    sys.exit(main())
