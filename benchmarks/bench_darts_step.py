"""A whole DARTS search step of a pt.darts-style network before and after `mf.nas.swap_mixed_ops`.

Run: `python benchmarks/bench_darts_step.py` (defaults: C=16, 5 cells, batch 32, 32x32: the configuration in
BENCHMARKS.md).
It runs itself once per allocator setting, in a child process each, because glibc reads
MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ only at process start: "default" (glibc's dynamic mmap
threshold: large fresh buffers come from mmap and page-fault on first touch) and "no-mmap" (both thresholds
at 1 GiB: freed buffers are reused without new page faults). Each child builds three copies of the same
network: "naive" (pt.darts' own edges), "fused" (swapped) and "memory" (swapped, recompute=True), then
warms each up on two samples, then times them round-robin (same rounds, interleaved, so load from other
processes hits all alike):

- step: one first-order DARTS search step (architecture update on a validation batch with Adam, then
  weight update on a training batch with momentum SGD and gradient clipping, as pt.darts' search loop);
- forward (train): the training-mode forward with autograd recording (the weight update's, timed inside
  the step);
- forward (no_grad): the evaluation forward;
- saved: bytes of activations autograd keeps for backward in one forward (unique storages seen by
  torch.autograd.graph.saved_tensors_hooks, parameters excluded).

Prints per-setting medians and the ratios naive/fused and naive/memory of the same run (higher = faster;
saved is memory/naive). `--json PATH` also writes them. See BENCHMARKS.md ("Drop-in DARTS step").
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOCATORS = {"default": {}, "no-mmap": {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**30)}}
IMPLS = ("naive", "fused", "memory")


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", choices=sorted(ALLOCATORS), default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _measure(args) -> dict:
    """One allocator setting (this process): medians of every impl and measure."""
    import torch

    import mednns_fast as mf
    from examples import ptdarts_style as ptd

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"naive": ptd.SearchCNNController(3, args.C, 10, args.layers)}
    models["fused"] = copy.deepcopy(models["naive"])
    models["memory"] = copy.deepcopy(models["naive"])
    mf.nas.swap_mixed_ops(models["fused"])
    mf.nas.swap_mixed_ops(models["memory"], recompute=True)
    optims = {k: (torch.optim.SGD(m.weights(), 0.025, momentum=0.9, weight_decay=3e-4),
                  torch.optim.Adam(m.alphas(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3))
              for k, m in models.items()}
    gen = torch.Generator().manual_seed(1)

    def batch():
        return (torch.randn(args.batch, 3, args.size, args.size, generator=gen),
                torch.randint(0, 10, (args.batch,), generator=gen))

    train, val = batch(), batch()

    def step(k, train=train, val=val, timed=None):
        model, (w_opt, a_opt) = models[k], optims[k]
        a_opt.zero_grad()
        model.loss(*val).backward()
        a_opt.step()
        w_opt.zero_grad()
        t = time.perf_counter()
        loss = model.loss(*train)  # the training-mode forward, timed inside the step
        if timed is not None:
            timed.append(time.perf_counter() - t)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.weights(), 5.0)
        w_opt.step()

    def forward_train(k):
        return models[k].loss(*train)

    def forward_eval(k):
        with torch.no_grad():
            return models[k].loss(*train)

    for k in IMPLS:  # warm-up on two samples: first-call costs (lazy inits, kernels' first touch)
        step(k, (train[0][:2], train[1][:2]), (val[0][:2], val[1][:2]))
        with torch.no_grad():
            models[k].loss(train[0][:2], train[1][:2])
    times = {(m, k): [] for m in ("step", "forward (train)", "forward (no_grad)") for k in IMPLS}
    for r in range(args.rounds):
        for k in IMPLS:
            t = time.perf_counter()
            step(k, timed=times[("forward (train)", k)])
            times[("step", k)].append(time.perf_counter() - t)
        for k in IMPLS:
            t = time.perf_counter()
            forward_eval(k)
            times[("forward (no_grad)", k)].append(time.perf_counter() - t)
        print(f"  [{args.child}] round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    saved = {k: mf.nas.saved_activation_bytes(lambda k=k: forward_train(k), exclude=models[k].parameters())
             for k in IMPLS}
    out = {"allocator": args.child, "env": ALLOCATORS[args.child], "rounds": args.rounds,
           "median_s": {f"{m}/{k}": statistics.median(v) for (m, k), v in times.items()},
           "saved_MB": {k: v / 2**20 for k, v in saved.items()}}
    return out


def _report(results: list[dict], args) -> str:
    lines = [f"pt.darts-style SearchCNN C={args.C}, {args.layers} cells, batch {args.batch}, {args.size}x{args.size}; "
             f"{args.rounds} rounds (medians), {args.threads} thread(s); {platform.processor() or platform.machine()}"]
    for res in results:
        med = res["median_s"]
        lines.append(f"[{res['allocator']}] {res['env'] or 'glibc defaults'}")
        for m in ("step", "forward (train)", "forward (no_grad)"):
            n, f, mem = (med[f"{m}/{k}"] for k in IMPLS)
            lines.append(f"  {m:18s} naive {n:8.3f} s  fused {f:8.3f} s (x{n / f:.2f})  memory {mem:8.3f} s "
                         f"(x{n / mem:.2f})")
        s = res["saved_MB"]
        lines.append(f"  {'saved activations':18s} naive {s['naive']:8.1f} MB  fused {s['fused']:8.1f} MB "
                     f"({s['fused'] / s['naive']:.2f}x)  memory {s['memory']:8.1f} MB "
                     f"({s['memory'] / s['naive']:.2f}x)")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = _args(argv)
    if args.child:
        print(json.dumps(_measure(args)))
        return
    results = []
    for name, env in ALLOCATORS.items():
        cmd = [sys.executable, __file__, "--child", name, *(argv if argv is not None else sys.argv[1:])]
        child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(cmd, env=child_env, check=True, stdout=subprocess.PIPE, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(_report(results, args))
    if args.json:
        args.json.write_text(json.dumps({"config": {k: v for k, v in vars(args).items() if k != "json"},
                                         "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
