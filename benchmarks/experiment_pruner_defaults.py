"""The experiment behind ProgressivePruner's defaults (window, threshold, patience, prune_fraction).

Synthetic DARTS-like searches (`python_tests.support.synthetic`): 14 edges x 8 candidates, 200 epochs,
logits of scale 1, per-epoch noise 0.02.
- converging: each edge relaxes to its final weights with a time constant of 5 to 30 epochs (operations
  settle early, as IAC-LTH observed), through a transient bump of half the final weights' scale that
  peaks at the time constant (the early ranking is not the final one);
- oscillating: on each edge the two leading candidates keep trading places (period 8 to 40 epochs,
  amplitude 0.3 to 1.0).
The pruner sees the logits epoch by epoch (pruned candidates masked; the synthetic trajectory itself does
not react to pruning). Per setting:
- stop: mean epoch at which every edge is decided (converging searches; 200 when not all are);
- speed-up: full-search cost / pruned-search cost, cost = sum over the epochs run of the active candidates
  (what MixedOp computes), full = 200 epochs x all candidates;
- agree: share of edges whose derived operation (argmax over the active candidates when the search stops)
  is the best operation (argmax of the noise-free logits at epoch 200). Near-ties make some edges a coin
  flip: the unpruned search itself (the rows that never prune) does not reach 1;
- regret: mean gap, in the noise-free final logits, between the best and the derived operation;
- false: share of oscillating edges pruned at least once.
A setting is admissible with false == 0 and regret <= 0.005; the default is the admissible setting with the
largest speed-up, then checked at noise 0.01 and 0.05. Run from the repository root:
`PYTHONPATH=. python benchmarks/experiment_pruner_defaults.py [--searches N]`.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from mednns_fast.iac import ProgressivePruner
from python_tests.support.synthetic import converging_logits, oscillating_logits

EPOCHS, EDGES, OPS = 200, 14, 8
TAU, TRANSIENT, NOISE = (5.0, 30.0), 0.5, 0.02


def run_search(logits: torch.Tensor, truth: torch.Tensor | None = None, **config) -> dict:
    """Feed a [T, E, K] trajectory to a pruner, stopping when it is done; `truth`: the noise-free final
    logits [E, K] the derived operations are scored against."""
    T, E, K = logits.shape
    alphas = torch.nn.Parameter(torch.zeros(E, K, dtype=torch.float64))
    pruner = ProgressivePruner(alphas, **config)
    cost, stop = 0, T
    for t in range(T):
        cost += sum(int(m.sum()) for m in pruner.masks)  # epoch t runs the candidates active during it
        with torch.no_grad():
            alphas.copy_(logits[t])
        pruner.step(t)
        if pruner.done:
            stop = t + 1
            break
    result = dict(stop=stop, cost=cost, pruned_edges=len({ev.edge for ev in pruner.events}))
    if truth is not None:
        derived = logits[stop - 1].masked_fill(~torch.stack(pruner.masks), -torch.inf).argmax(1)
        best = truth.argmax(1)
        result["agree"] = (derived == best).double().mean().item()
        result["regret"] = (truth.max(1).values - truth.gather(1, derived[:, None])[:, 0]).mean().item()
    return result


def evaluate(config: dict, searches: int, noise: float = NOISE) -> dict:
    stops, costs, agrees, regrets, false = [], [], [], [], []
    for s in range(searches):
        def conv(noise: float, s: int = s) -> torch.Tensor:
            return converging_logits(EPOCHS, EDGES, OPS, torch.Generator().manual_seed(1000 + s), tau=TAU,
                                     transient=TRANSIENT, noise=noise)
        r = run_search(conv(noise), truth=conv(0.0)[-1], **config)  # same seed: the same drift
        stops.append(r["stop"])
        costs.append(r["cost"])
        agrees.append(r["agree"])
        regrets.append(r["regret"])
        osc = oscillating_logits(EPOCHS, EDGES, OPS, torch.Generator().manual_seed(2000 + s), noise=noise)
        false.append(run_search(osc, **config)["pruned_edges"] / EDGES)
    full = EPOCHS * EDGES * OPS
    return dict(stop=sum(stops) / searches, speedup=full * searches / sum(costs),
                agree=sum(agrees) / searches, regret=sum(regrets) / searches, false=sum(false) / searches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=24,
                        help="converging and oscillating searches per setting")
    args = parser.parse_args()
    grid = dict(window=[3, 5, 10], threshold=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3], patience=[3, 5, 10],
                prune_fraction=[0.5, 1.0])
    start = time.perf_counter()
    rows = []
    print(f"{'window':>6} {'thresh':>7} {'pat':>3} {'frac':>4} | {'stop':>6} {'speedup':>7} {'agree':>6} "
          f"{'regret':>6} {'false':>6}")
    for values in itertools.product(*grid.values()):
        config = dict(zip(grid, values, strict=True))
        r = evaluate(config, args.searches)
        rows.append((config, r))
        print(f"{config['window']:>6} {config['threshold']:>7.0e} {config['patience']:>3} "
              f"{config['prune_fraction']:>4} | {r['stop']:>6.1f} {r['speedup']:>7.2f} {r['agree']:>6.3f} "
              f"{r['regret']:>6.3f} {r['false']:>6.3f}", flush=True)
    admissible = [(c, r) for c, r in rows if r["false"] == 0 and r["regret"] <= 0.005]
    print(f"\n{len(admissible)} of {len(rows)} settings admissible ({time.perf_counter() - start:.0f} s):")
    for c, r in sorted(admissible, key=lambda cr: -cr[1]["speedup"]):
        print(f"  {c} -> speed-up {r['speedup']:.2f}, stop {r['stop']:.1f}, agree {r['agree']:.3f}")
    if not admissible:
        return
    best_config, best = max(admissible, key=lambda cr: cr[1]["speedup"])
    print(f"chosen: {best_config} -> {best}")
    for noise in (0.01, 0.05):
        print(f"  same setting at noise {noise}: {evaluate(best_config, args.searches, noise=noise)}")


if __name__ == "__main__":
    main()
