"""`mf.nas.swap_mixed_ops` on the DARTS / PC-DARTS search networks (70 edges) and second-order DARTS with it.

Run: `PYTHONPATH=. python -m pytest benchmarks/bench_swap.py --benchmark-json=runN.json` (see BENCHMARKS.md,
"Drop-in DARTS step"). The networks are the original DARTS and PC-DARTS `model_search.Network` as
`python_tests/test_swap.py` writes them from their published structure (C=16, 5 cells of 14 edges), and the
pt.darts-style `examples/ptdarts_style.py` (C=16, 5 cells).

- group "swap 70 edges, NET": one `swap_mixed_ops` of a fresh copy of the network; "before" is the swap of
  commit BEFORE (loaded from git: no cache, every edge probed; the baseline), "probed" today's swap with
  ``cache=False`` (what a first swap costs), "cached" today's swap once the probe verdicts of that geometry
  are cached (what a second-order architect's `new()` pays each step after `mf.nas.fused_new`).
- group "second-order step, NET": one DARTS search iteration with the unrolled architect
  (`darts_unrolled_alpha_grads`: `model.new()`, the virtual weights loaded by state dict, the validation
  gradient, the finite-difference Hessian-vector product; then Adam on the alphas and momentum SGD with
  gradient clipping on the weights), batch 16, 32x32: "naive" (nothing swapped; the baseline), "model
  swapped" (`swap_mixed_ops(model)`, `new()` unswapped: the state before `fused_new`), "fused" (the model
  swapped and `mf.nas.fused_new` on its class: `new()` swaps too).

`PYTHONPATH=. python benchmarks/bench_swap.py --rounds 3 --json PATH` runs the second-order steps interleaved
instead (round-robin, so that load from other processes hits all three alike; CPU and wall medians).
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mednns_fast as mf
from benchmarks.conftest import mark_baseline
from examples import ptdarts_style as ptd
from python_tests.test_swap import DartsNetwork, PCMixedOp, darts_unrolled_alpha_grads

ROOT = Path(__file__).resolve().parents[1]

BEFORE = "d1dcb96"  # the last commit whose swap probed every edge
ROUNDS = 5
STEP_ROUNDS = 3
NETS = {
    "darts": lambda: DartsNetwork(C=16, layers=5),
    "pc_darts": lambda: DartsNetwork(C=16, layers=5, edge=PCMixedOp),
    "ptdarts": lambda: ptd.SearchCNNController(3, 16, 10, 5),
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _swap_before():
    """`swap_mixed_ops` as of commit BEFORE, loaded next to today's (same package, same ops)."""
    src = subprocess.run(["git", "show", f"{BEFORE}:mednns_fast/nas/darts/swap.py"], cwd=ROOT,
                         capture_output=True, text=True)
    if src.returncode:
        pytest.skip(f"git show {BEFORE} failed: {src.stderr.strip()}")
    spec = importlib.util.spec_from_loader("mednns_fast.nas.darts._swap_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "mednns_fast.nas.darts"
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(src.stdout, f"swap.py@{BEFORE}", "exec"), module.__dict__)
    return module.swap_mixed_ops


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    return {name: make() for name, make in NETS.items()}


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("impl", ["before", "probed", "cached"])
def test_swap_70_edges(benchmark, networks, net, impl):
    benchmark.group = f"swap 70 edges, {net}"
    model = networks[net]
    if impl == "before":
        mark_baseline(benchmark)
        swap = _swap_before()
    elif impl == "probed":
        def swap(m):
            return mf.nas.swap_mixed_ops(m, cache=False)
    else:
        mf.nas.clear_swap_cache()
        assert mf.nas.swap_mixed_ops(copy.deepcopy(model)).probed > 0

        def swap(m):
            return mf.nas.swap_mixed_ops(m)

    def fresh_copy():  # and no collection owed for it: the garbage collector's debt is the copy's, not the swap's
        copied = copy.deepcopy(model)
        gc.collect()
        return (copied,), {}

    report = benchmark.pedantic(swap, setup=fresh_copy, rounds=ROUNDS, iterations=1)
    assert len(report) == 70
    assert impl != "cached" or report.probed == 0
    benchmark.extra_info["edges"] = len(report)


def _batch(gen, n=16, size=32):
    return torch.randn(n, 3, size, size, generator=gen), torch.randint(0, 10, (n,), generator=gen)


STEP_IMPLS = ("naive", "model swapped", "fused")


def second_order_step(network: torch.nn.Module, impl: str):
    """A copy of ``network`` set up as ``impl`` and its DARTS search iteration (unrolled architect step, then
    the weight step), as a function of no argument."""
    model = copy.deepcopy(network)
    if impl != "naive":
        mf.nas.swap_mixed_ops(model)
    if impl == "fused":
        model.__class__ = mf.nas.fused_new(type("FusedNetwork", (type(model),), {}))
    w_opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    gen = torch.Generator().manual_seed(1)
    train, val = _batch(gen), _batch(gen)

    def step():
        a_opt.zero_grad()
        for a, g in zip(model.arch_parameters(), darts_unrolled_alpha_grads(model, train, val, w_opt)):
            a.grad = g
        a_opt.step()
        w_opt.zero_grad()
        model._loss(*train).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        w_opt.step()

    return step


@pytest.mark.parametrize("net", ["darts", "pc_darts"])
@pytest.mark.parametrize("impl", STEP_IMPLS)
def test_second_order_step(benchmark, networks, net, impl):
    benchmark.group = f"second-order step, {net}"
    if impl == "naive":
        mark_baseline(benchmark)
    benchmark.pedantic(second_order_step(networks[net], impl), rounds=STEP_ROUNDS, iterations=1, warmup_rounds=1)


def interleaved(nets=("darts", "pc_darts"), rounds=3) -> dict:
    """The second-order step of every impl round-robin (same rounds, so load from other processes hits all
    alike): medians of CPU time (`time.process_time`, one thread) and wall time, and naive / impl."""
    torch.set_num_threads(1)
    out = {}
    for net in nets:
        torch.manual_seed(0)
        network = NETS[net]()
        steps = {impl: second_order_step(network, impl) for impl in STEP_IMPLS}
        for step in steps.values():  # warm-up
            step()
        times = {impl: ([], []) for impl in STEP_IMPLS}
        for r in range(rounds):
            for impl, step in steps.items():
                cpu, wall = time.process_time(), time.perf_counter()
                step()
                times[impl][0].append(time.process_time() - cpu)
                times[impl][1].append(time.perf_counter() - wall)
            print(f"  [{net}] round {r + 1}/{rounds}", file=sys.stderr, flush=True)
        med = {impl: (statistics.median(c), statistics.median(w)) for impl, (c, w) in times.items()}
        out[net] = {impl: {"cpu_s": c, "wall_s": w, "speedup_cpu": med["naive"][0] / c,
                           "speedup_wall": med["naive"][1] / w, "cpu_all": times[impl][0]}
                    for impl, (c, w) in med.items()}
        for impl, r in out[net].items():
            print(f"{net:9s} {impl:14s} cpu {r['cpu_s']:7.2f} s (x{r['speedup_cpu']:.2f})  wall {r['wall_s']:7.2f} s "
                  f"(x{r['speedup_wall']:.2f})")
    return out


if __name__ == "__main__":  # python benchmarks/bench_swap.py [--rounds N] [--json PATH]: the interleaved form
    import argparse
    import json

    parser = argparse.ArgumentParser(description="second-order DARTS step, interleaved")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = interleaved(rounds=args.rounds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
