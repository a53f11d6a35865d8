"""mixed_sum against the Inductor-compiled expression, several runs in one process, printed as they finish.

The same entries as bench_mixed.py's mixed_sum groups (its functions are imported), timed interleaved: each
run times every entry (median of `--rounds` calls) one after the other, so a run's ratios share the
machine's state. For a loaded machine where the full pytest-benchmark file takes too long.

Usage: PYTHONPATH=. python benchmarks/mixed_sum_runs.py [--runs 3] [--rounds 5] [--K 4 8] [--dtype float32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_mixed import IMPLS, NUMEL, allocation_policy, in_place  # run as `python benchmarks/mixed_sum_runs.py`


def call_times_ms(fn, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


FORWARD = {**IMPLS, "in_place": in_place}
WITH_BACKWARD = tuple(IMPLS)


def run_K(K: int, runs: int, rounds: int, dtype: torch.dtype) -> None:
    src, dst = torch.randn(NUMEL, dtype=dtype), torch.empty(NUMEL, dtype=dtype)
    xs, w = [torch.randn(NUMEL, dtype=dtype) for _ in range(K)], torch.softmax(torch.randn(K), 0).to(dtype)
    xs_g, w_g = [x.clone().requires_grad_() for x in xs], w.clone().requires_grad_()
    grad = torch.randn(NUMEL, dtype=dtype)

    def step(name):
        with allocation_policy(name):
            return torch.autograd.grad(FORWARD[name](xs_g, w_g), [*xs_g, w_g], grad)

    for name, fn in FORWARD.items():  # compile and warm up outside the timing
        fn(xs, w)
        if name in WITH_BACKWARD:
            step(name)
    for run in range(1, runs + 1):
        calls = {"copy": call_times_ms(lambda: dst.copy_(src), rounds),
                 "fresh copy": call_times_ms(lambda: torch.clone(src), rounds)}
        calls.update({f"fwd {n}": call_times_ms(lambda f=f: f(xs, w), rounds) for n, f in FORWARD.items()})
        calls.update({f"fwd+bwd {n}": call_times_ms(lambda n=n: step(n), rounds) for n in WITH_BACKWARD})
        t = {k: statistics.median(v) for k, v in calls.items()}
        ratios = {k: t[f"{k.split()[0]} compiled"] / v for k, v in t.items() if k.startswith("fwd")}
        print(f"{dtype} K={K} run {run}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in t.items()), flush=True)
        speed_ups = ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
        print(f"{dtype} K={K} run {run} speed-up over compiled: {speed_ups}", flush=True)
        tails = ", ".join(f"{k} {statistics.mean(v):.1f} / {max(v):.1f} ms" for k, v in calls.items()
                          if k.startswith("fwd"))
        print(f"{dtype} K={K} run {run} mean / max of the {rounds} calls: {tails}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--K", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--dtype", choices=["float32", "float64", "bfloat16", "float16"], default="float32",
                    help="inputs, weights and output (the weights' dtype: the expression promotes to it)")
    args = ap.parse_args()
    for K in args.K:
        run_K(K, args.runs, args.rounds, getattr(torch, args.dtype))


if __name__ == "__main__":
    main()
