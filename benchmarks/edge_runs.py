"""Two builds of the library in one run: the fused MixedOp edge and its depthwise stage, each build against
the Inductor-compiled naive code, call by call interleaved (for a loaded machine).

Worker processes per source tree (`--trees BEFORE AFTER`, each a checkout with its own built
mednns_fast/_C*.so; `--workers` per tree, 2 by default); the parent asks them in turn for one timed call at a
time: every round times each entry in each worker once, so the trees' and entries' medians share the
machine's load. Several workers per tree, pooled: on a loaded machine, one tree in two workers measured up
to 0.75x apart (the cause not pinned down: memory placement is a candidate). Each worker compiles its own
baseline, checks its outputs and gradients against the eager naive code, and prints which library it loaded.

Cases: the four sep/dil first-stage depthwise convs (`multi_depthwise_conv2d`, C=16, 32x32, N=32) at
stride 1 and 2 against four compiled `F.conv2d(groups=C)`; one whole edge (8 DARTS candidates, BatchNorm in
training mode) at stride 1 and 2 (a reduction edge) at C=16, 32, 64 (32x32, N = 32, 16, 8) against
`torch.compile(forward_naive)`. Forward + backward.

Usage: python benchmarks/edge_runs.py --trees ../before . [--threads 1] [--rounds 15] [--cases ...]
Prints per case the median ms of every (tree, entry), each tree's speed-up over its compiled baseline, and
the after / before ratio of our entry.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

KERNELS, DILATIONS = (3, 5, 3, 5), (1, 1, 2, 2)  # the DARTS sep/dil convs' first stages


def _cases() -> dict[str, tuple]:
    cases = {f"depthwise s{s}": ("depthwise", 16, 32, 32, s) for s in (1, 2)}
    for s in (1, 2):
        for C, N in ((16, 32), (32, 16), (64, 8)):
            cases[f"edge s{s} C={C}"] = ("edge", C, 32, N, s)
    return cases


CASES = _cases()


def _allclose_grads(fn, ref, leaves) -> bool:
    import torch

    out, want = fn(), ref()
    g = torch.randn_like(out)
    got_g, want_g = torch.autograd.grad(out, leaves, g), torch.autograd.grad(want, leaves, g)
    return all(torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip((out, *got_g), (want, *want_g), strict=True))


def _setup(name: str):
    """Returns {entry: callable one timed call runs} and whether both entries match the eager naive code."""
    import torch
    import torch.nn.functional as F

    import mednns_fast as mf
    from mednns_fast.nas import DARTS_PRIMITIVES, MixedOp

    kind, C, H, N, s = CASES[name]
    torch.manual_seed(0)
    x = torch.randn(N, C, H, H, requires_grad=True)
    if kind == "depthwise":
        ws = [torch.randn(C, 1, k, k, requires_grad=True) for k in KERNELS]

        def eager(x, ws):
            return torch.cat([F.conv2d(x, w, None, s, d * (w.shape[-1] - 1) // 2, d, C)
                              for w, d in zip(ws, DILATIONS, strict=True)], 1)

        compiled = torch.compile(eager)
        fns = {"compiled": lambda: compiled(x, ws), "ours": lambda: mf.ops.multi_depthwise_conv2d(x, ws, DILATIONS, s)}
        leaves, ref = [x, *ws], lambda: eager(x, ws)
    else:
        fused = MixedOp(C, s, DARTS_PRIMITIVES)
        naive, eager_naive = copy.deepcopy(fused), copy.deepcopy(fused)
        alpha = torch.randn(8, requires_grad=True)
        compiled = torch.compile(naive.forward_naive)
        fns = {"compiled": lambda: compiled(x, torch.softmax(alpha, 0)),
               "ours": lambda: fused(x, torch.softmax(alpha, 0))}
        leaves, ref = [x, alpha], lambda: eager_naive.forward_naive(x, torch.softmax(alpha, 0))
    match = {e: _allclose_grads(f, ref, leaves) for e, f in fns.items()}
    calls = {e: (lambda f=f: f().sum().backward()) for e, f in fns.items()}
    for f in calls.values():  # warm up outside the timing
        f()
        f()
    return calls, match


def worker(threads: int) -> None:
    import torch

    import mednns_fast as mf

    torch.set_num_threads(threads)
    lib = getattr(sys.modules.get("mednns_fast._C"), "__file__", None)  # which build this worker loaded
    print(json.dumps({"package": os.path.dirname(mf.__file__), "lib": lib, "threads": torch.get_num_threads()}),
          flush=True)
    cases: dict[str, dict] = {}
    for line in sys.stdin:
        cmd, *rest = line.split("\t")
        if cmd == "setup":
            calls, match = _setup(rest[0].strip())
            cases[rest[0].strip()] = calls
            print(json.dumps(match), flush=True)
        elif cmd == "time":
            fn = cases[rest[0]][rest[1].strip()]
            t0 = time.perf_counter()
            fn()
            print(time.perf_counter() - t0, flush=True)


class Worker:
    def __init__(self, tree: str, threads: int):
        env = {**os.environ, "PYTHONPATH": os.path.abspath(tree), "OMP_NUM_THREADS": str(threads)}
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(threads)],
                                  env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd=os.path.abspath(tree))
        self.info = json.loads(self.p.stdout.readline())

    def ask(self, *parts: str) -> str:
        self.p.stdin.write("\t".join(parts) + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trees", nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2, help="worker processes per tree")
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    ap.add_argument("--json", help="write every call's time here")
    args = ap.parse_args()
    if args.worker:
        worker(args.threads)
        return
    labels = ("before", "after")
    # before, after, after, before, ...: each tree's workers alternate positions in the round
    order = [labels[(i + i // 2) % 2] for i in range(2 * args.workers)]
    workers = [(lab, Worker(args.trees[labels.index(lab)], args.threads)) for lab in order]
    for lab, w in workers:
        print(f"{lab}: {w.info}", flush=True)
    record = {"threads": args.threads, "rounds": args.rounds, "workers": args.workers, "trees": args.trees,
              "cases": {}}
    for case in args.cases:
        match = {}
        for lab, w in workers:
            found = json.loads(w.ask("setup", case))
            match[lab] = {e: match.get(lab, {}).get(e, True) and ok for e, ok in found.items()}
        times = {(lab, e): [] for lab in labels for e in ("compiled", "ours")}
        for _ in range(args.rounds):
            for lab, w in workers:
                for e in ("compiled", "ours"):
                    times[(lab, e)].append(float(w.ask("time", case, e)))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        parts = [f"{lab} {e} {med[(lab, e)]:.2f} ms" for lab, e in times]
        speed = {lab: med[(lab, "compiled")] / med[(lab, "ours")] for lab in labels}
        load = os.getloadavg()[0]
        gain = med[("before", "ours")] / med[("after", "ours")]
        print(f"[{case}] {'; '.join(parts)} | ours vs compiled: before {speed['before']:.2f}x, after "
              f"{speed['after']:.2f}x | ours after/before speed-up {gain:.2f}x | match eager {match} | "
              f"load {load:.2f}", flush=True)
        record["cases"][case] = {"times_s": {f"{lab} {e}": v for (lab, e), v in times.items()}, "match": match,
                                 "load1": load}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
