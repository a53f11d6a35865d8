"""Two builds of the library in one run for mixed_sum across sizes: each build's `mixed_sum` against the
Inductor-compiled `sum(w[k] * xs[k])`, call by call interleaved (for a loaded machine), as
`mixed_sum_sizes_runs.py` does within one build.

One worker process per source tree (`--trees BEFORE AFTER`, each a checkout with its own built
mednns_fast/_C*.so); the parent asks them in turn for one timed call at a time, so every round times each
(tree, entry) once and the medians share the machine's load. Sizes ascending in each worker (glibc defaults,
as in mixed_sum_sizes_runs.py). Each worker checks, once per size, that its outputs and gradients match the
eager expression, and the parent that both trees' outputs and gradients are bitwise equal.

Usage: OMP_NUM_THREADS=1 python benchmarks/mixed_sum_ab_runs.py --trees ../before . [--rounds 30]
       [--sizes-kib 64 ... 65536] [--dtype float32] [--K 8]
Prints per size and mode the median ms of every (tree, entry), each tree's speed-up over the compiled
expression in its own worker (medians of the same rounds), and the after / before speed-up of mixed_sum.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys

SIZES_KIB = [64, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536]
ENTRIES = ("compiled", "mixed_sum")
MODES = ("forward", "forward+backward")


def _worker(dtype_name: str, K: int) -> None:
    import resource
    import time

    import torch

    import mednns_fast as mf

    dtype = getattr(torch, dtype_name)

    def eager(xs, w):
        return sum(w[k] * x for k, x in enumerate(xs))

    fns = {"compiled": torch.compile(eager), "mixed_sum": lambda xs, w: mf.ops.mixed_sum(xs, w)}
    calls: dict = {}
    print(os.path.dirname(mf.__file__), flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "size":
            kib = int(args[0])
            calls.clear()
            n = kib * 1024 // torch.empty(0, dtype=dtype).element_size()
            g = torch.Generator().manual_seed(kib)
            xs = [torch.randn(n, generator=g).to(dtype).requires_grad_() for _ in range(K)]
            w = torch.softmax(torch.randn(K, generator=g), 0).requires_grad_()
            grad = torch.randn(n, generator=g).to(dtype)
            xd, wd = [x.detach() for x in xs], w.detach()
            for name, fn in fns.items():
                calls[(name, "forward")] = lambda fn=fn, xd=xd, wd=wd: fn(xd, wd)
                calls[(name, "forward+backward")] = (
                    lambda fn=fn, xs=xs, w=w, grad=grad: torch.autograd.grad(fn(xs, w), [*xs, w], grad))
            for fn in calls.values():  # compile and warm up outside the timing
                fn()
                fn()
            out = fns["mixed_sum"](xs, w)
            got = [out.detach(), *torch.autograd.grad(out, [*xs, w], grad)]
            x64 = [x.detach().double().requires_grad_() for x in xs]
            w64 = w.detach().double().requires_grad_()
            ref = eager(x64, w64)  # in float64: the weights' gradients are sums of n products
            want = [ref.detach(), *torch.autograd.grad(ref, [*x64, w64], grad.double())]
            tol = 1e-5 if dtype == torch.float32 else 1e-2
            ok = all(torch.allclose(a.double(), b, rtol=tol, atol=tol)
                     for a, b in zip(got[:-1], want[:-1], strict=True))
            ok = ok and torch.allclose(got[-1].double(), want[-1], rtol=tol, atol=tol * n**0.5)
            digest = hashlib.sha256(b"".join(t.contiguous().view(torch.uint8).numpy().tobytes() for t in got))
            print(f"{int(ok)} {digest.hexdigest()[:16]}", flush=True)
        else:  # time ENTRY MODE
            fn = calls[(args[0], args[1])]
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            fn()
            t = time.perf_counter() - t0
            print(f"{t} {resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0}", flush=True)


class Worker:
    def __init__(self, tree: str, dtype: str, K: int):
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "--dtype", dtype,
                                   "--K", str(K)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, cwd=os.path.abspath(tree))
        self.library = self.p.stdout.readline().strip()

    def ask(self, *parts) -> str:
        self.p.stdin.write(" ".join(map(str, parts)) + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--sizes-kib", type=int, nargs="+", default=SIZES_KIB)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--K", type=int, default=8)
    ap.add_argument("--modes", nargs="+", default=list(MODES))
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args()
    if args.worker:
        _worker(args.dtype, args.K)
        return
    workers = {name: Worker(tree, args.dtype, args.K) for name, tree in zip(("before", "after"), args.trees)}
    print(f"K={args.K} {args.dtype}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, rounds {args.rounds} "
          f"(a sixth at >= 16 MiB); " + "; ".join(f"{k}: {w.library}" for k, w in workers.items()), flush=True)
    for kib in args.sizes_kib:
        checks = {name: w.ask("size", kib).split() for name, w in workers.items()}
        same = checks["before"][1] == checks["after"][1]
        rounds = max(5, args.rounds if kib < 16384 else args.rounds // 6)
        for mode in args.modes:
            times = {(t, e): [] for t in workers for e in ENTRIES}
            faults = {k: [] for k in times}
            for _ in range(rounds):
                for t, w in workers.items():
                    for e in ENTRIES:
                        s, f = w.ask("time", e, mode).split()
                        times[(t, e)].append(float(s))
                        faults[(t, e)].append(int(f))
            med = {k: statistics.median(v) for k, v in times.items()}
            speed = {t: med[(t, "compiled")] / med[(t, "mixed_sum")] for t in workers}
            parts = [f"{t} {e} {med[(t, e)] * 1e3:.3f} ms f{int(statistics.median(faults[(t, e)]))}"
                     for t in workers for e in ENTRIES]
            print(f"{kib} KiB {mode}: before x{speed['before']:.2f}, after x{speed['after']:.2f} of compiled; "
                  f"after/before {med[('before', 'mixed_sum')] / med[('after', 'mixed_sum')]:.2f}x "
                  f"[{'; '.join(parts)}] match eager: {checks['before'][0]}/{checks['after'][0]}, "
                  f"bitwise before == after: {same}", flush=True)


if __name__ == "__main__":
    main()
