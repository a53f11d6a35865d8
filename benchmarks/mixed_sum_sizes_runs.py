"""bench_mixed_sizes.py's sweep, interleaved call by call: for a loaded machine, where entries timed one after the
other see different loads. Sizes ascending in one process (glibc defaults); at each size every round calls each
entry once (copy, eager, compiled, mixed_sum), forward then forward+backward, and the medians are compared.

Entry order (`--order`): `balanced` (default) takes round r's order from row r mod 4 of a balanced Latin square
(Williams design), so within every four rounds each entry runs right after each other entry once; `fixed` calls
them in the order above every round (the sweeps recorded before 2026-12-08), mixed_sum always right after
compiled. At
4-16 MiB per tensor the order moves the ratios by far more than the noise: in one fixed-order run at 16 MiB,
mixed_sum right after compiled ran forward+backward at 0.72x of it; with the two swapped, at 1.35x.

Usage: PYTHONPATH=. python benchmarks/mixed_sum_sizes_runs.py [--rounds 30] [--sizes-kib 64 256 ...]
       [--order balanced|fixed]
Prints per size and mode: median ms, speed-up over compiled, median page faults per call, and the fraction of the
copy bandwidth measured at the same working set (bytes moved / time, over copy bytes / copy time).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from bench_mixed_sizes import FNS, SIZES_KIB, K, eager  # run as `python benchmarks/mixed_sum_sizes_runs.py`


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn) -> tuple[float, int]:
    f0, t0 = _minflt(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, _minflt() - f0


def balanced_orders(n: int) -> list[list[int]]:
    """Rows of a balanced Latin square for even n: across the rows, each entry comes right after each other one
    exactly once (first row 0, 1, n-1, 2, n-2, ...; row i adds i mod n)."""
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    return [[(j + i) % n for j in first] for i in range(n)]


def run_size(kib: int, rounds: int, order: str = "balanced") -> None:
    n = kib * 1024 // 4
    xs = [torch.randn(n).requires_grad_() for _ in range(K)]
    w = torch.softmax(torch.randn(K), 0).requires_grad_()
    grad = torch.randn(n)
    src = torch.randn((K + 1) * n // 2)
    dst = torch.empty_like(src)
    copy_bw = None
    for mode, nbytes in (("forward", (K + 1) * 4 * n), ("forward+backward", (3 * K + 2) * 4 * n)):
        calls = {"copy": lambda: dst.copy_(src)}
        for name, fn in FNS.items():
            if mode == "forward":
                calls[name] = lambda fn=fn: fn(xs, w)
            else:
                calls[name] = lambda fn=fn: torch.autograd.grad(fn(xs, w), [*xs, w], grad)
        for fn in calls.values():  # compile and warm up outside the timing
            fn()
            fn()
        times = {k: [] for k in calls}
        faults = {k: [] for k in calls}
        names = list(calls)
        orders = balanced_orders(len(names)) if order == "balanced" else [list(range(len(names)))]
        for r in range(rounds):
            for name in (names[j] for j in orders[r % len(orders)]):
                fn = calls[name]
                t, f = timed(fn)
                times[name].append(t)
                faults[name].append(f)
        med = {k: statistics.median(v) for k, v in times.items()}
        copy_bw = copy_bw or 2 * src.nbytes / med["copy"]
        parts = []
        for name in FNS:
            bw = nbytes / med[name]
            parts.append(f"{name} {med[name] * 1e3:.3f} ms x{med['compiled'] / med[name]:.2f} "
                         f"minflt {int(statistics.median(faults[name]))} {100 * bw / copy_bw:.0f}% copy bw")
        print(f"{kib} KiB {mode}: " + "; ".join(parts) + f" (copy {copy_bw / 1e9:.1f} GB/s)", flush=True)
    torch.testing.assert_close(FNS["mixed_sum"](xs, w), eager(xs, w), rtol=1e-5, atol=1e-5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--sizes-kib", type=int, nargs="+", default=SIZES_KIB)
    ap.add_argument("--order", choices=["balanced", "fixed"], default="balanced")
    args = ap.parse_args()
    print(f"K={K} float32, {torch.get_num_threads()} threads, torch {torch.__version__}, entry order {args.order}",
          flush=True)
    for kib in args.sizes_kib:
        run_size(kib, max(5, args.rounds if kib < 16384 else args.rounds // 6), args.order)


if __name__ == "__main__":
    main()
