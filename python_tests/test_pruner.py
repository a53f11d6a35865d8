"""ProgressivePruner: prunes and stops on converging searches, never on oscillating ones, masks candidates
(exact zero weights, never executed by MixedOp), resumes from a checkpoint with the same decisions."""

from __future__ import annotations

import json
import math

import pytest
import torch

import mednns_fast as mf
from mednns_fast.iac import ProgressivePruner
from mednns_fast.io import atomic_write_json
from mednns_fast.nas import DARTS_PRIMITIVES, MixedOp
from mednns_fast.report.pruner_figures import plot_pruner_trajectory
from python_tests.support.synthetic import converging_logits, oscillating_logits

EPOCHS, EDGES, OPS = 200, 14, 8


def feed(pruner: ProgressivePruner, alphas: torch.Tensor, logits: torch.Tensor, epochs: range,
         stop_when_done: bool = True) -> int | None:
    """Play a [T, E, K] trajectory into `alphas` (rows watched by the pruner); the epoch it got done."""
    for t in epochs:
        with torch.no_grad():
            alphas.copy_(logits[t])
        pruner.step(t)
        if pruner.done and stop_when_done:
            return t
    return None


def new_search(logits: torch.Tensor, **config) -> tuple[ProgressivePruner, torch.nn.Parameter]:
    alphas = torch.nn.Parameter(logits[0].clone())
    return ProgressivePruner(alphas, **config), alphas


def test_converging_search_prunes_and_stops():
    def trajectory(noise: float) -> torch.Tensor:
        return converging_logits(EPOCHS, EDGES, OPS, torch.Generator().manual_seed(0), tau=(3.0, 10.0),
                                 noise=noise)

    logits, clean = trajectory(0.02), trajectory(0.0)  # same seed: the same drift, without the noise
    pruner, alphas = new_search(logits)
    done_at = feed(pruner, alphas, logits, range(EPOCHS))
    assert done_at is not None and done_at < EPOCHS // 2, f"done at {done_at}"
    assert pruner.done and {ev.edge for ev in pruner.events} == set(range(EDGES))
    masks = torch.stack(pruner.masks)
    assert masks.sum(1).tolist() == [1] * EDGES
    # The derived operations are the full-length search's answer: exactly where that answer is clear
    # (a gap of 0.1 between the two best final logits), within the noise on near-ties.
    derived, final = masks.int().argmax(1), clean[-1]
    top2 = final.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.1
    assert clear.sum() >= EDGES // 2  # enough clear edges for the check to mean something
    assert torch.equal(derived[clear], final.argmax(1)[clear])
    assert (final.max(1).values - final.gather(1, derived[:, None])[:, 0]).max() < 0.1
    active = [set(range(OPS)) for _ in range(EDGES)]
    for ev in pruner.events:  # each event splits the edge's then active candidates
        assert ev.divergence < pruner.config["threshold"] and ev.epoch <= done_at
        assert set(ev.pruned).isdisjoint(ev.active) and set(ev.pruned) | set(ev.active) == active[ev.edge]
        active[ev.edge] = set(ev.active)


def test_oscillating_search_never_prunes():
    logits = oscillating_logits(EPOCHS, EDGES, OPS, torch.Generator().manual_seed(1))
    pruner, alphas = new_search(logits)
    assert feed(pruner, alphas, logits, range(EPOCHS)) is None
    assert pruner.events == [] and not pruner.done
    assert all(bool(m.all()) for m in pruner.masks)
    finite = [d for row in pruner.divergences for d in row if math.isfinite(d)]
    assert len(finite) == (EPOCHS - pruner.window) * EDGES and min(finite) >= 0


def test_progressive_fraction_restarts_the_window():
    """prune_fraction 0.5: 8 -> 4 -> 2 -> 1 candidates, each prune a full window + patience after the last."""
    logits = converging_logits(EPOCHS, 3, OPS, torch.Generator().manual_seed(2), tau=(5.0, 10.0))
    pruner, alphas = new_search(logits, window=4, patience=3, prune_fraction=0.5)
    feed(pruner, alphas, logits, range(EPOCHS))
    assert pruner.done
    for e in range(3):
        events = [ev for ev in pruner.events if ev.edge == e]
        assert [len(ev.active) for ev in events] == [4, 2, 1]
        gaps = [b.epoch - a.epoch for a, b in zip(events, events[1:], strict=False)]
        assert all(g >= 4 + 3 for g in gaps), gaps
        # each prune drops the least important of the then active candidates
        for ev in events:
            kept = min(ev.importance[k] for k in ev.active)
            assert all(ev.importance[k] <= kept for k in ev.pruned)


def test_ragged_edges_and_min_ops():
    gen = torch.Generator().manual_seed(3)
    sizes = [8, 5, 2, 1]
    trajectories = [converging_logits(120, 1, K, gen, tau=(5.0, 10.0))[:, 0] for K in sizes]
    alphas = [torch.nn.Parameter(tr[0].clone()) for tr in trajectories]
    pruner = ProgressivePruner(alphas, min_ops=2)
    assert pruner.decided(2) and pruner.decided(3)  # no more than min_ops candidates to begin with
    for t in range(120):
        with torch.no_grad():
            for a, tr in zip(alphas, trajectories, strict=True):
                a.copy_(tr[t])
        pruner.step(t)
    assert pruner.done
    assert [int(m.sum()) for m in pruner.masks] == [2, 2, 2, 1]
    assert {ev.edge for ev in pruner.events} == {0, 1}
    traj = pruner.trajectory()
    assert [len(d) for d in traj["distributions"][-1]] == sizes


def test_weights_are_exactly_zero_on_masked_candidates():
    logits = converging_logits(80, 2, OPS, torch.Generator().manual_seed(4), tau=(5.0, 8.0))
    pruner, alphas = new_search(logits, prune_fraction=0.5)
    feed(pruner, alphas, logits, range(80), stop_when_done=False)
    w = pruner.weights(0)
    mask = pruner.masks[0]
    assert not mask.all() and torch.equal(w[~mask], torch.zeros(int((~mask).sum()), dtype=w.dtype))
    torch.testing.assert_close(w[mask], torch.softmax(alphas[0][mask], 0))
    w.pow(2).sum().backward()
    assert torch.equal(alphas.grad[0][~mask], torch.zeros(int((~mask).sum()), dtype=w.dtype))
    assert len(pruner.edge_weights()) == 2


def _converged_on(winner: int, K: int, epochs: int) -> torch.Tensor:
    """One edge whose weights settle quickly with `winner` on top."""
    final = torch.linspace(-1.0, 0.0, K, dtype=torch.float64)
    final[winner] = 2.0
    t = torch.arange(epochs, dtype=torch.float64).view(-1, 1)
    return (final * (1 - torch.exp(-(t + 1) / 3.0))).view(epochs, 1, K)


def test_masked_candidates_are_not_executed():
    """After pruning, MixedOp never runs the masked candidates (forward calls counted per candidate)."""
    K = len(DARTS_PRIMITIVES)
    op = MixedOp(4, 1, DARTS_PRIMITIVES, fused=False)
    calls = [0] * K
    for k, cand in enumerate(op.candidates):
        cand.register_forward_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
    logits = _converged_on(winner=4, K=K, epochs=60)
    pruner, alphas = new_search(logits, prune_fraction=0.5)
    x = torch.randn(2, 4, 6, 6)
    for t in range(60):
        with torch.no_grad():
            alphas.copy_(logits[t])
        op(x, pruner.weights(0))
        pruner.step(t)
        if pruner.events:
            break
    assert pruner.events, "the converged edge was not pruned"
    mask = pruner.masks[0]
    pruner.apply_to([op])  # the edge's kept candidates, set on the host (the forward never reads weights)
    calls_before = list(calls)
    op(x, pruner.weights(0))
    ran = [k for k in range(K) if calls[k] > calls_before[k]]
    zero = DARTS_PRIMITIVES.index("none")  # runs nothing even when active
    assert ran == [k for k in range(K) if mask[k] and k != zero]
    # the fused forward, switched off through set_active as well: no work and no gradient for them
    fused = MixedOp(4, 1, DARTS_PRIMITIVES)
    pruner.apply_to([fused])
    assert torch.equal(fused.active, mask)
    fused(x, torch.full((K,), 1.0 / K)).sum().backward()  # uniform weights: only the mask gates
    for k, cand in enumerate(fused.candidates):
        for p in cand.parameters():
            assert (p.grad is not None) == bool(mask[k] and p.requires_grad), (DARTS_PRIMITIVES[k], k)


def test_resume_gives_the_same_decisions(tmp_path):
    logits = converging_logits(EPOCHS, EDGES, OPS, torch.Generator().manual_seed(5), tau=(5.0, 30.0))
    config = dict(prune_fraction=0.5)
    straight, alphas = new_search(logits, **config)
    feed(straight, alphas, logits, range(EPOCHS))
    assert straight.events, "nothing pruned: the test would prove nothing"

    first, alphas1 = new_search(logits, **config)
    split = straight.events[len(straight.events) // 2].epoch  # mid-way: some edges pruned, some not
    feed(first, alphas1, logits, range(split))
    torch.save({"pruner": first.state_dict(), "alphas": alphas1.detach().clone()}, tmp_path / "ckpt.pt")

    ckpt = torch.load(tmp_path / "ckpt.pt")
    alphas2 = torch.nn.Parameter(ckpt["alphas"])
    resumed = ProgressivePruner(alphas2, **config)
    resumed.load_state_dict(ckpt["pruner"])
    feed(resumed, alphas2, logits, range(split, EPOCHS))
    assert resumed.events == straight.events
    assert resumed.divergences == straight.divergences and resumed.epochs == straight.epochs
    assert all(torch.equal(a, b) for a, b in zip(resumed.masks, straight.masks, strict=True))
    with pytest.raises(ValueError, match="decisions would differ"):
        ProgressivePruner(alphas2, window=3).load_state_dict(ckpt["pruner"])


def test_trajectory_json_and_plot(tmp_path):
    logits = converging_logits(60, 3, 4, torch.Generator().manual_seed(6), tau=(3.0, 6.0))
    alphas = torch.nn.Parameter(logits[0].clone())
    names = [["a", "b", "c", "d"]] * 3
    pruner = ProgressivePruner(alphas, names=names)
    feed(pruner, alphas, logits, range(60))
    atomic_write_json(tmp_path / "traj.json", pruner.trajectory())
    data = json.loads((tmp_path / "traj.json").read_text())
    assert data["epochs"] == pruner.epochs and data["names"] == names and data["done"] == pruner.done
    assert len(data["distributions"]) == len(pruner.epochs)
    assert data["divergences"][0] == [None] * 3  # +inf (no window yet) is written as null
    assert any(d is not None and d >= 0 for row in data["divergences"] for d in row)
    assert [ev["edge"] for ev in data["events"]] == [ev.edge for ev in pruner.events]
    assert plot_pruner_trajectory(data, tmp_path / "traj.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments():
    a = [torch.zeros(4)]
    for kwargs, match in [(dict(window=0), "window"), (dict(threshold=0.0), "threshold"),
                          (dict(patience=0), "patience"), (dict(min_ops=0), "min_ops"),
                          (dict(prune_fraction=1.5), "prune_fraction"), (dict(names=[["x"]]), "names")]:
        with pytest.raises(ValueError, match=match):
            ProgressivePruner(a, **kwargs)
    with pytest.raises(ValueError, match="1-D"):
        ProgressivePruner([torch.zeros(2, 3)])
    with pytest.raises(ValueError, match="2-D"):
        ProgressivePruner(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="at least one edge"):
        ProgressivePruner([])
    pruner = ProgressivePruner(a)
    pruner.step(3)
    with pytest.raises(ValueError, match="epoch must increase"):
        pruner.step(3)
    with pytest.raises(ValueError, match="NaN"):
        ProgressivePruner([torch.tensor([0.0, math.nan])]).step(0)


def test_exported_from_mf_search():
    assert mf.search.ProgressivePruner is ProgressivePruner


# ---------------------------------------------------------------- issue 22: warm-up, calibration, noise


def test_no_pruning_before_the_warmup_ends():
    """A trajectory that is settled from the start (a clear winner, no noise) is pruned at the earliest
    epoch the pruner allows, and not before: the warm-up, then a full window and patience per prune."""
    logits = torch.zeros(60, 3, OPS, dtype=torch.float64)
    logits[:, :, 3] = 2.0
    logits[:, :, 5] = 1.0
    pruner, alphas = new_search(logits, window=3, patience=2, prune_fraction=0.5, warmup=10)
    feed(pruner, alphas, logits, range(60))
    assert pruner.done and pruner.events
    assert min(ev.epoch for ev in pruner.events) >= 10 + 3 + 2 - 1
    first = min(ev.epoch for ev in pruner.events)
    assert first == 10 + 3 + 2 - 1  # the first window ends warm-up + window epochs in, then patience
    decided = {ev.edge: ev.epoch for ev in pruner.events if len(ev.active) == 1}
    assert all(d == pruner.earliest_decision_epoch(e) for e, d in decided.items())
    assert all(pruner.masks[e].nonzero().flatten().tolist() == [3] for e in range(3))
    # progressive: 8 -> 4 -> 2 -> 1, one event each
    assert [len(ev.active) for ev in pruner.events if ev.edge == 0] == [4, 2, 1]
    with pytest.raises(ValueError, match="warmup"):
        ProgressivePruner(torch.zeros(2, 3), warmup=-1)


def test_calibrated_pruner_never_fires_on_noise_of_the_measured_amplitude():
    """Threshold and margin from one null run of the architecture optimiser (Adam at PC-DARTS' settings fed
    gradients without information); other null runs of the same amplitude, and i.i.d. jitter of the
    measured per-epoch step around a uniform distribution, are never pruned."""
    from mednns_fast.iac.pruner import calibrate, null_trajectory

    steps, lr, T, E = 12, 6e-4, 50, 4
    cal = calibrate(null_trajectory(E, OPS, T, steps, lr, seed=0), window=5)
    assert 0 < cal["noise_js_median"] <= cal["noise_js_quantile"] < cal["threshold"]
    assert cal["margin"] > cal["noise_gap_max"] > 0
    for seed in range(1, 4):
        noise = null_trajectory(E, OPS, T, steps, lr, seed=seed)
        pruner, alphas = new_search(noise, window=5, patience=5, threshold=cal["threshold"], margin=cal["margin"])
        feed(pruner, alphas, noise, range(T))
        assert not pruner.events, f"null run {seed} was pruned"
        jitter = converging_logits(T, E, OPS, torch.Generator().manual_seed(seed), scale=0.0,
                                   noise=cal["noise_step"])
        pruner, alphas = new_search(jitter, window=5, patience=5, threshold=cal["threshold"], margin=cal["margin"])
        feed(pruner, alphas, jitter, range(T))
        assert not pruner.events, f"jitter {seed} was pruned"


def test_calibrated_pruner_still_decides_converged_edges():
    """The same calibration from a null of i.i.d. jitter: converging searches with that noise get pruned and
    keep their final leader; pure jitter of that amplitude never does."""
    from mednns_fast.iac.pruner import calibrate

    noise = 0.02
    null = converging_logits(EPOCHS, EDGES, OPS, torch.Generator().manual_seed(100), scale=0.0, noise=noise)
    cal = calibrate(null, window=10)
    logits = converging_logits(EPOCHS, EDGES, OPS, torch.Generator().manual_seed(1), noise=noise)
    pruner, alphas = new_search(logits, window=10, patience=10, threshold=cal["threshold"], margin=cal["margin"])
    feed(pruner, alphas, logits, range(EPOCHS))
    decided = [e for e in range(EDGES) if pruner.decided(e)]
    assert len(decided) >= EDGES // 2
    final = logits[-1]
    agree = sum(int(pruner.masks[e].nonzero().flatten()[0]) == int(final[e].argmax()) for e in decided)
    assert agree >= 0.9 * len(decided)
    jitter = converging_logits(EPOCHS, EDGES, OPS, torch.Generator().manual_seed(7), scale=0.0, noise=noise)
    pruner, alphas = new_search(jitter, window=10, patience=10, threshold=cal["threshold"], margin=cal["margin"])
    feed(pruner, alphas, jitter, range(EPOCHS))
    assert not pruner.events


def test_kept_candidate_is_never_pruned_and_the_edge_keeps_its_strongest_real_operation():
    """DARTS' `none` (index 0) wins the edge, operation 3 leads the real ones: with keep=[0] the decided edge
    keeps `none` and operation 3 (what `derive`, which never picks `none`, takes); without it the pruner would
    keep `none` alone and the genotype's operation would be a tie-break among zero weights."""
    from mednns_fast.iac.study import IACConfig
    from mednns_fast.nas.iac.cell import derive

    assert DARTS_PRIMITIVES[0] == "none"
    winner = _converged_on(0, OPS, 60)
    winner[:, 0, 3] += 1.0  # the strongest real operation, still far below `none`
    assert int(winner[-1, 0, 1:].argmax()) + 1 == 3 and int(winner[-1, 0].argmax()) == 0
    with_keep, alphas = new_search(winner, window=3, patience=2, threshold=1e-3, keep=[0])
    done = feed(with_keep, alphas, winner, range(60))
    assert done is not None and with_keep.masks[0].nonzero().flatten().tolist() == [0, 3]
    assert with_keep.decision_epochs() == [done] and with_keep.config["keep"] == [0]
    assert with_keep.earliest_decision_epoch(0) == 3 * (3 + 2) - 1  # 7 -> 4 -> 2 -> 1 real ones: three prunes
    none_only, alphas = new_search(winner, window=3, patience=2, threshold=1e-3)
    feed(none_only, alphas, winner, range(60))
    assert none_only.masks[0].nonzero().flatten().tolist() == [0]
    config = IACConfig(nodes=1)
    weights = torch.zeros(config.n_edges, OPS)
    weights[:] = torch.softmax(winner[-1, 0].float(), 0) * with_keep.masks[0]
    genotype = derive(weights / weights.sum(1, keepdim=True), torch.ones(config.n_edges), config)
    assert {op for node in genotype.nodes for op, _ in node} == {DARTS_PRIMITIVES[3]}
    for bad in ([8], [-1], list(range(OPS))):
        with pytest.raises(ValueError, match="keep must name"):
            ProgressivePruner(torch.zeros(2, OPS), keep=bad)
