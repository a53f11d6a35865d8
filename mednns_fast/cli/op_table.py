"""The op table behind `mednns-fast bench`: each op against what a user would otherwise run, in one process,
as ratios (baseline time / our time; > 1 means ours is faster).

Baselines: the plain PyTorch expression a user writes (eager), the same expression under `torch.compile`
(Inductor), and scipy where a scipy user would reach for it. Sizes are small so the table takes about a
minute on 2 CPU cores; the pytest-benchmark suites in `benchmarks/` are the full measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["OpTiming", "op_table"]


@dataclass(frozen=True)
class OpTiming:
    op: str
    case: str
    ours_ms: float
    baselines_ms: dict[str, float]

    def ratios(self) -> dict[str, float]:
        return {name: t / self.ours_ms for name, t in self.baselines_ms.items()}


def _median_ms(fn: Callable[[], object], min_run_time: float) -> float:
    from torch.utils.benchmark import Timer

    fn()  # warm up (and compile)
    return Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median * 1e3


def _mixed_sum_cases(compile_baselines: bool):
    import mednns_fast as mf

    def expression(xs, w):
        return sum(w[k] * xs[k] for k in range(len(xs)))

    xs = [torch.randn(32, 16, 32, 32) for _ in range(8)]
    w = torch.softmax(torch.randn(8), 0)
    base = {"eager": lambda: expression(xs, w)}
    if compile_baselines:
        compiled = torch.compile(expression)
        base["compiled"] = lambda: compiled(xs, w)
    yield "mixed_sum", "K=8, 32x16x32x32, forward", lambda: mf.ops.mixed_sum(xs, w), base

    xg = [x.clone().requires_grad_() for x in xs]
    wg = w.clone().requires_grad_()

    def fwd_bwd(f):
        return lambda: f(xg, wg).sum().backward()

    base = {"eager": fwd_bwd(expression)}
    if compile_baselines:
        base["compiled"] = fwd_bwd(torch.compile(expression))
    yield "mixed_sum", "K=8, 32x16x32x32, forward+backward", fwd_bwd(mf.ops.mixed_sum), base


def _mixed_op_cases(compile_baselines: bool):
    import mednns_fast as mf

    torch.manual_seed(0)
    edge = mf.nas.MixedOp(16, 1, mf.nas.DARTS_PRIMITIVES)
    x = torch.randn(16, 16, 32, 32)
    w = torch.softmax(torch.randn(len(edge.candidates)), 0)

    def naive(x, w):
        return sum(w[k] * op(x) for k, op in enumerate(edge.candidates))

    def step(f):
        return lambda: f(x, w).sum().backward()

    base = {"eager naive": step(naive)}
    if compile_baselines:
        base["compiled naive"] = step(torch.compile(naive))
    yield "MixedOp", "C=16, 16x32x32, DARTS primitives, forward+backward", step(edge), base


def _js_cases(compile_baselines: bool):
    import mednns_fast as mf

    p = torch.softmax(torch.randn(256, 64, dtype=torch.float64), 1)
    q = torch.softmax(torch.randn(256, 64, dtype=torch.float64), 1)

    def expression(p, q):
        m = 0.5 * (p[:, None] + q[None])
        kl = lambda a, b: torch.where(a > 0, a * (a / b).log(), 0).sum(-1)  # noqa: E731
        return 0.5 * kl(p[:, None], m) + 0.5 * kl(q[None], m)

    base = {"eager": lambda: expression(p, q)}
    if compile_baselines:
        compiled = torch.compile(expression)
        base["compiled"] = lambda: compiled(p, q)
    try:
        from scipy.spatial.distance import cdist

        pn, qn = p.numpy(), q.numpy()
        base["scipy cdist"] = lambda: cdist(pn, qn, "jensenshannon") ** 2
    except ImportError:
        pass
    yield "js_pairwise", "256x256 pairs, K=64, float64", lambda: mf.ops.js_pairwise(p, q), base


def _fid_cases(compile_baselines: bool):
    import mednns_fast as mf

    torch.manual_seed(0)
    stats = []
    for _ in range(8):
        s = mf.ops.FeatureStats(64)
        s.update(torch.randn(48, 64, dtype=torch.float64) + torch.randn(64, dtype=torch.float64))
        stats.append(s.finalize())

    def pairwise_eig():
        # A careful plain-PyTorch user: tr sqrt(S1 S2) via eigendecompositions, for every pair.
        out = torch.zeros(len(stats), len(stats), dtype=torch.float64)
        for i, a in enumerate(stats):
            for j, b in enumerate(stats):
                if j > i:
                    out[i, j] = out[j, i] = mf.ops.reference.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
        return out

    yield "fid_matrix", "8 datasets, dim 64, n=48 (rank-deficient)", lambda: mf.ops.fid_matrix(stats), {
        "eager pairwise": pairwise_eig
    }


def op_table(compile_baselines: bool = True, min_run_time: float = 0.3) -> list[OpTiming]:
    """Time every case; `compile_baselines=False` leaves out the torch.compile baselines (they compile first)."""
    rows = []
    for cases in (_mixed_sum_cases, _mixed_op_cases, _js_cases, _fid_cases):
        for op, case, ours, baselines in cases(compile_baselines):
            rows.append(
                OpTiming(
                    op,
                    case,
                    _median_ms(ours, min_run_time),
                    {name: _median_ms(fn, min_run_time) for name, fn in baselines.items()},
                )
            )
    return rows
