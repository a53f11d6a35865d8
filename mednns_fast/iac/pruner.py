"""IAC-LTH's progressive pruning: stop searching an edge once its operation-importance distribution is
stable under a Jensen-Shannon criterion, and drop its low-importance operations.

Every epoch, `ProgressivePruner.step(epoch)` records each edge's distribution (the softmax of its
architecture parameters over its active candidates) and measures its stability with
`mf.ops.js_stability`: the JS divergence between the distribution now and the mean of the previous
`window` epochs. An edge whose divergence stays below `threshold` for `patience` consecutive epochs is
pruned: its lowest-importance active candidates (importance: the mean distribution over the last
`window + 1` epochs) are masked, never leaving fewer than `min_ops`. A masked candidate's weight is
exactly 0 (`weights(e)`), and `apply_to` switches it off in the edges' `mf.nas.MixedOp`s, which never
compute it again. After a prune the edge's support has changed, so its window restarts. An edge is decided when
`min_ops` candidates are left; the search is `done` when every edge is decided.

`keep` names candidates that are never pruned and not counted as an edge's operations: the IAC search keeps
DARTS' `none` out of the ranking (`derive` never picks it), so an edge whose `none` wins is decided on its
strongest real operation, not left with `none` alone and an arbitrary genotype.

Issue 22 additions: no pruning (and no window) before `warmup` epochs; a prune also needs the candidates it
drops to stand out of the noise (`margin`); the dropped candidates are the tail of
`nas.iac.cell.strongest_first`, the order `derive` takes its head from. `null_trajectory` + `calibrate` set
`threshold` and `margin` from a null run of the architecture optimiser (docs/iac.md says how); the IAC
search does that for ``threshold="auto"``. The fixed defaults below are those of the synthetic study.

Defaults (window 10, threshold 3e-4, patience 10, prune_fraction 0.5, min_ops 1) come from
`benchmarks/experiment_pruner_defaults.py` (full table in `benchmarks/experiment_pruner_defaults.txt`):
synthetic DARTS-like searches (`mednns_fast.search.synthetic`) of 14 edges x 8 candidates over 200
epochs, per-epoch logit noise 0.02; 24 converging searches (time constants 5-30 epochs with a transient
that reorders the candidates early) and 24 oscillating ones (the two leading candidates keep trading
places, periods 8-40 epochs) per setting, over window {3, 5, 10} x threshold {1e-5, 3e-5, 1e-4, 3e-4,
1e-3} x patience {3, 5, 10} x prune_fraction {0.5, 1}. Rule: no oscillating edge ever pruned, mean
regret (final-logit gap between the best and the derived operation) <= 0.005, then the largest compute
speed-up (candidate-epochs of the full search / of the pruned one). (A first pass with 8 searches gated
on agreement >= 98% instead; the unpruned search itself only reaches ~97.5% because of near-ties, so the
gate became regret.) 40 of 90 settings passed; the defaults gave:

    converging:  all edges decided at epoch 129 on average, compute speed-up 2.53x, derived operation
                 = the best one on 97.3% of edges (the unpruned search: 97.9%, near-ties), regret 0.003
    oscillating: 0 of 336 edges pruned
    runners-up:  (10, 1e-4, 5, 1.0) 2.47x; (5, 1e-4, 10, 1.0) 2.45x; faster settings (threshold 1e-3,
                 patience 3) reach 4-18x but prune oscillating edges and pick worse operations.

The threshold is absolute, so it must sit above the divergence that noise alone produces. For per-epoch
logit noise sigma that floor is about sigma^2 (1 + 1/window) (1 - sum_k p_k^2) / 8 (checked numerically:
4.2e-5 for sigma = 0.02, window 10; the default threshold is 3.5x the floor at sigma = 0.03). With the
same defaults at sigma = 0.01 the searches stopped a little earlier (2.76x, regret 0.005, still no
oscillating edge pruned); at sigma = 0.05 they rarely pruned (1.13x). Scale `threshold` with sigma^2
for other searches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from ..nas.iac.cell import strongest_first
from ..ops import js_stability

_STATE_VERSION = 1


@dataclass(frozen=True)
class PruneEvent:
    """One prune: at `epoch`, edge `edge` lost candidates `pruned`, keeping `active` (indices into the
    edge's candidates). `divergence` is the edge's stability value that epoch, `importance` the mean
    distribution (over all candidates, 0 for masked ones) the choice was made on."""

    epoch: int
    edge: int
    pruned: tuple[int, ...]
    active: tuple[int, ...]
    divergence: float
    importance: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PruneEvent:
        return cls(int(d["epoch"]), int(d["edge"]), tuple(d["pruned"]), tuple(d["active"]),
                   float(d["divergence"]), tuple(d["importance"]))


_STATE_KEYS = frozenset({"version", "config", "num_candidates", "masks", "streak", "since", "epochs", "history",
                         "divergences", "events"})


def _check_number(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"ProgressivePruner: {name} must be a number (int or float), got "
                        f"{type(value).__name__} {value!r}")


class ProgressivePruner:
    """JS-stability progressive pruner over the architecture parameters of a search's edges.

    Args:
        alphas: one tensor per edge, edge e of shape ``[K_e]`` (any number of edges, each with its own
            candidate count), or one ``[E, K]`` tensor whose row e is edge e. They are read, never
            written, at every `step`: pass the live parameters.
        window: epochs averaged into the reference distribution of `js_stability`.
        threshold: an epoch counts as stable when the edge's divergence is below this.
        patience: consecutive stable epochs before the edge is pruned.
        min_ops: candidates an edge keeps at least (1: the search picks one operation per edge).
        prune_fraction: share of the active candidates masked by one prune (at least one, never below
            `min_ops`); 1.0 goes straight to `min_ops`.
        names: optional candidate names per edge, for the trajectory and its figure.
        warmup: epochs before architecture updates start (the search's weight-only warm-up): nothing is
            pruned and no stable streak counts before it, and the first window starts after it.
        keep: candidate indices (the same in every edge) that are never pruned and do not count towards
            `min_ops`: DARTS' `none`, which `derive` never picks. Pruning ranks the other candidates only, so a
            decided edge keeps its strongest real operation (and `none`), the one `derive` takes.
        margin: a prune also needs the candidates it drops to be separated from those it keeps: the log of
            the weakest kept importance minus the log of the strongest dropped one must exceed `margin`
            (0: no such test). `calibrate` sets it (and `threshold`) from a null run, so that a trajectory
            that is only noise of the search's amplitude is never pruned.

    Use::

        pruner = ProgressivePruner(alphas)              # e.g. an [E, K] nn.Parameter
        for epoch in range(max_epochs):
            search_one_epoch(pruner.edge_weights())     # masked candidates weigh exactly 0
            pruner.step(epoch)
            if pruner.done:
                break
        trajectory = pruner.trajectory()                 # JSON-ready; report.pruner_figures draws it
    """

    def __init__(self, alphas: torch.Tensor | Sequence[torch.Tensor], window: int = 10,
                 threshold: float = 3e-4, patience: int = 10, min_ops: int = 1, prune_fraction: float = 0.5,
                 names: Sequence[Sequence[str]] | None = None, warmup: int = 0, margin: float = 0.0,
                 keep: Sequence[int] = ()) -> None:
        # Kept as given and indexed at every use: a row view taken once would go stale (and trip
        # autograd's view checks) when the optimizer updates the parameter in place.
        if isinstance(alphas, torch.Tensor):
            if alphas.dim() != 2:
                raise ValueError("ProgressivePruner: a tensor of alphas must be 2-D [E, K] (row e = edge e), "
                                 f"got shape {tuple(alphas.shape)}")
            self._alphas: torch.Tensor | list[torch.Tensor] = alphas
        else:
            self._alphas = list(alphas)
        self.num_edges = len(self._alphas)
        if self.num_edges == 0:
            raise ValueError("ProgressivePruner: alphas must hold at least one edge")
        for e in range(self.num_edges):
            a = self.alpha(e)
            if not isinstance(a, torch.Tensor) or a.dim() != 1 or a.numel() < 1 or not a.is_floating_point():
                raise ValueError(f"ProgressivePruner: alphas[{e}] must be a 1-D floating tensor [K_e] with "
                                 f"K_e >= 1, got {getattr(a, 'shape', type(a).__name__)}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"ProgressivePruner: window must be an int >= 1, got {window!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"ProgressivePruner: patience must be an int >= 1, got {patience!r}")
        _check_number(threshold, "threshold")
        _check_number(prune_fraction, "prune_fraction")
        if not 0 < threshold <= math.log(2):
            raise ValueError(f"ProgressivePruner: threshold must be in (0, ln 2], got {threshold!r}")
        if isinstance(min_ops, bool) or not isinstance(min_ops, int) or min_ops < 1:
            raise ValueError(f"ProgressivePruner: min_ops must be an int >= 1, got {min_ops!r}")
        if not 0 < prune_fraction <= 1:
            raise ValueError(f"ProgressivePruner: prune_fraction must be in (0, 1], got {prune_fraction!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"ProgressivePruner: warmup must be an int >= 0, got {warmup!r}")
        _check_number(margin, "margin")
        if not margin >= 0:
            raise ValueError(f"ProgressivePruner: margin must be >= 0, got {margin!r}")
        self.num_candidates = [self.alpha(e).numel() for e in range(self.num_edges)]
        keep = sorted({int(k) for k in keep})
        if any(not 0 <= k < min(self.num_candidates) for k in keep) or len(keep) >= min(self.num_candidates):
            raise ValueError(f"ProgressivePruner: keep must name candidates 0..{min(self.num_candidates) - 1} and "
                             f"leave at least one other, got {keep}")
        if names is not None:
            names = [list(n) for n in names]
            if [len(n) for n in names] != self.num_candidates:
                raise ValueError(f"ProgressivePruner: names must give {self.num_candidates} candidate names "
                                 f"per edge, got {[len(n) for n in names]}")
        self.names = names
        self.config = dict(window=window, threshold=float(threshold), patience=patience, min_ops=min_ops,
                           prune_fraction=float(prune_fraction), warmup=warmup, margin=float(margin))
        if keep:  # absent when empty: states saved before `keep` existed still load
            self.config["keep"] = keep
        self._reset()

    def _reset(self) -> None:
        E = self.num_edges
        self._masks = [torch.ones(K, dtype=torch.bool) for K in self.num_candidates]
        self._streak = [0] * E
        self._since = [0] * E        # first history row recorded with the edge's current support
        self.epochs: list[int] = []
        self._history: list[torch.Tensor] = []   # per epoch [E, K_max] float64 logits, -inf = masked/padding
        self.divergences: list[list[float]] = []  # per epoch, per edge (+inf: no stable window yet)
        self.events: list[PruneEvent] = []

    def alpha(self, e: int) -> torch.Tensor:
        """Edge e's architecture parameters now, [K_e]."""
        return self._alphas[e]

    # ---- the per-epoch step --------------------------------------------------------------------------

    @property
    def window(self) -> int:
        return self.config["window"]

    def _record(self) -> torch.Tensor:
        row = torch.full((self.num_edges, max(self.num_candidates)), -math.inf, dtype=torch.float64)
        for e, m in enumerate(self._masks):
            a = self.alpha(e)
            logits = a.detach().to("cpu", torch.float64)
            if not torch.isfinite(logits).all():
                raise ValueError(f"ProgressivePruner.step: alphas[{e}] contains NaN or infinity")
            row[e, : a.numel()] = logits.masked_fill(~m, -math.inf)
        return row

    def step(self, epoch: int) -> list[PruneEvent]:
        """Record the distributions after `epoch` (strictly increasing), update each edge's stability and
        prune the edges that have been stable for `patience` epochs. Returns this step's prune events."""
        if self.epochs and epoch <= self.epochs[-1]:
            raise ValueError(f"ProgressivePruner.step: epoch must increase, got {epoch} after "
                             f"{self.epochs[-1]}")
        self._history.append(self._record())
        self.epochs.append(int(epoch))
        t, W = len(self._history) - 1, self.window
        if t >= W:
            stab = js_stability(torch.stack(self._history[-(W + 1):]), W)[-1].tolist()
        else:
            stab = [math.inf] * self.num_edges
        new_events = []
        row = []
        warming = epoch < self.config["warmup"]
        for e in range(self.num_edges):
            if warming:  # the alphas do not move yet: the first window starts after the warm-up
                self._since[e] = len(self._history)
            # The window must lie after the edge's last prune: before it, the support was different.
            d = stab[e] if t - W >= self._since[e] else math.inf
            row.append(d)
            if self.decided(e):
                continue
            self._streak[e] = self._streak[e] + 1 if d < self.config["threshold"] else 0
            if self._streak[e] >= self.config["patience"]:
                event = self._prune(e, epoch, d)
                if event is not None:
                    new_events.append(event)
        self.divergences.append(row)
        self.events.extend(new_events)
        return new_events

    def _prune(self, e: int, epoch: int, divergence: float) -> PruneEvent | None:
        K, W = self.num_candidates[e], self.window
        recent = torch.stack([h[e, :K] for h in self._history[-(W + 1):]])
        importance = torch.softmax(recent, -1).mean(0)
        active = self._prunable(e)
        n_drop = _n_drop(len(active), self.config["prune_fraction"], self.config["min_ops"])
        # the tail of `strongest_first`: the rule `derive` uses (equal importance: the higher index goes)
        order = strongest_first(importance.tolist(), active)
        if self.config["margin"] > 0 and _cut_gap(importance, order, n_drop) <= self.config["margin"]:
            return None  # stable, but the ranking is not out of the noise yet: keep watching
        dropped = sorted(order[len(order) - n_drop:])
        self._masks[e][dropped] = False
        self._streak[e] = 0
        self._since[e] = len(self._history)  # the next row is the first with the new support
        return PruneEvent(int(epoch), e, tuple(dropped), tuple(self._masks[e].nonzero().flatten().tolist()),
                          float(divergence), tuple(importance.tolist()))

    # ---- what the search uses ------------------------------------------------------------------------

    def _prunable(self, e: int) -> list[int]:
        """Edge e's active candidates other than `keep`'s."""
        kept = set(self.config.get("keep", ()))
        return [k for k in self._masks[e].nonzero().flatten().tolist() if k not in kept]

    def earliest_decision_epoch(self, e: int) -> int:
        """The first epoch at which edge e can be decided: after the warm-up, each prune needs a full window
        after the previous one plus `patience` stable epochs (epochs counted from 0)."""
        n = self.num_candidates[e] - len(self.config.get("keep", ()))
        events = 0
        while n > self.config["min_ops"]:
            n -= _n_drop(n, self.config["prune_fraction"], self.config["min_ops"])
            events += 1
        return self.config["warmup"] + events * (self.window + self.config["patience"]) - 1

    def decided(self, e: int) -> bool:
        """Whether edge e is down to `min_ops` candidates besides `keep` (or started with no more)."""
        return len(self._prunable(e)) <= self.config["min_ops"]

    def decision_epochs(self) -> list[int | None]:
        """Per edge the epoch of the prune that decided it (None: not decided by a prune)."""
        kept = set(self.config.get("keep", ()))
        out: list[int | None] = [None] * self.num_edges
        for ev in self.events:
            if sum(k not in kept for k in ev.active) <= self.config["min_ops"]:
                out[ev.edge] = ev.epoch
        return out

    @property
    def done(self) -> bool:
        """True when every edge is decided: the search can stop."""
        return all(self.decided(e) for e in range(self.num_edges))

    @property
    def masks(self) -> list[torch.Tensor]:
        """Per edge a bool tensor [K_e] (CPU), True = candidate still active. Copies."""
        return [m.clone() for m in self._masks]

    def weights(self, e: int) -> torch.Tensor:
        """Softmax of edge e's architecture parameters over its active candidates, differentiable; masked
        candidates get exactly 0.0 (MixedOp skips them). Shape [K_e], on the parameters' device."""
        a = self.alpha(e)
        return torch.softmax(a.masked_fill(~self._masks[e].to(a.device), -math.inf), -1)

    def edge_weights(self) -> list[torch.Tensor]:
        return [self.weights(e) for e in range(self.num_edges)]

    def apply_to(self, mixed_ops: Sequence[torch.nn.Module]) -> None:
        """Switch masked candidates off in the edges' MixedOps (``op.set_active(mask)``), edge e -> ops[e]."""
        if len(mixed_ops) != self.num_edges:
            raise ValueError(f"ProgressivePruner.apply_to: got {len(mixed_ops)} ops for {self.num_edges} "
                             "edges")
        for op, m in zip(mixed_ops, self._masks, strict=True):
            op.set_active(m.tolist())

    def distributions(self) -> list[list[list[float]]]:
        """Recorded trajectory: [epoch][edge] -> the K_e probabilities (0.0 for masked candidates)."""
        out = []
        for h in self._history:
            probs = torch.softmax(h, -1)
            out.append([probs[e, :K].tolist() for e, K in enumerate(self.num_candidates)])
        return out

    # ---- checkpoints ---------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything `step` depends on (plain Python values: torch.save and json both take it, except
        -inf logits, which JSON has no literal for; `trajectory()` is the JSON-ready record)."""
        return {
            "version": _STATE_VERSION,
            "config": dict(self.config),
            "num_candidates": list(self.num_candidates),
            "masks": [m.tolist() for m in self._masks],
            "streak": list(self._streak),
            "since": list(self._since),
            "epochs": list(self.epochs),
            "history": [h.tolist() for h in self._history],
            "divergences": [list(r) for r in self.divergences],
            "events": [ev.to_dict() for ev in self.events],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` taken from a pruner built over the same edges with the same settings."""
        if not isinstance(state, dict):
            raise TypeError(f"ProgressivePruner.load_state_dict: state must be a dict, got {type(state).__name__}")
        missing = sorted(_STATE_KEYS - set(state))
        if missing:
            raise ValueError(f"ProgressivePruner.load_state_dict: the state lacks {missing} (expected the keys "
                             f"of ProgressivePruner.state_dict(): {sorted(_STATE_KEYS)})")
        if state.get("version") != _STATE_VERSION:
            raise ValueError("ProgressivePruner.load_state_dict: unknown state version "
                             f"{state.get('version')!r}")
        if list(state["num_candidates"]) != self.num_candidates:
            raise ValueError(f"ProgressivePruner.load_state_dict: the state has edges with "
                             f"{state['num_candidates']} candidates, this pruner {self.num_candidates}")
        if dict(state["config"]) != self.config:
            raise ValueError(f"ProgressivePruner.load_state_dict: the state was made with {state['config']}, "
                             f"this pruner has {self.config}; decisions would differ")
        self._masks = self._checked_masks(state["masks"])
        for key in ("streak", "since"):
            if len(state[key]) != self.num_edges:
                raise ValueError(f"ProgressivePruner.load_state_dict: state[{key!r}] must hold one entry per "
                                 f"edge ({self.num_edges}), got {len(state[key])}")
        self._streak = [int(s) for s in state["streak"]]
        self._since = [int(s) for s in state["since"]]
        self.epochs = [int(t) for t in state["epochs"]]
        self._history = [torch.tensor(h, dtype=torch.float64) for h in state["history"]]
        self.divergences = [[float(d) for d in r] for r in state["divergences"]]
        self.events = [PruneEvent.from_dict(d) for d in state["events"]]

    def _checked_masks(self, masks) -> list[torch.Tensor]:
        """The state's masks as bool tensors: one per edge, K_e entries each, at least min_ops active."""
        if len(masks) != self.num_edges:
            raise ValueError(f"ProgressivePruner.load_state_dict: state['masks'] must hold one mask per edge "
                             f"({self.num_edges}), got {len(masks)}")
        out = []
        for e, (m, K) in enumerate(zip(masks, self.num_candidates, strict=True)):
            t = torch.as_tensor(m)
            if t.dim() != 1 or t.numel() != K or t.dtype != torch.bool:
                raise ValueError(f"ProgressivePruner.load_state_dict: state['masks'][{e}] must be {K} booleans "
                                 f"(edge {e}'s candidates), got {m!r}")
            if int(t.sum()) < min(self.config["min_ops"], K):
                raise ValueError(f"ProgressivePruner.load_state_dict: state['masks'][{e}] keeps {int(t.sum())} "
                                 f"candidates, fewer than min_ops={self.config['min_ops']}")
            out.append(t.clone())
        return out

    # ---- trajectory output ---------------------------------------------------------------------------

    def trajectory(self) -> dict:
        """The full trajectory as JSON-ready values (+inf divergences as null)."""
        return {
            "config": dict(self.config),
            "num_candidates": list(self.num_candidates),
            "names": self.names,
            "epochs": list(self.epochs),
            "distributions": self.distributions(),
            "divergences": [[d if math.isfinite(d) else None for d in r] for r in self.divergences],
            "events": [ev.to_dict() for ev in self.events],
            "masks": [m.tolist() for m in self._masks],
            "done": self.done,
        }


def _n_drop(n_active: int, fraction: float, min_ops: int) -> int:
    """Candidates one prune masks out of `n_active`: the fraction, at least one, never below `min_ops`."""
    return min(max(1, int(math.floor(fraction * n_active + 1e-9))), n_active - min_ops)


def _cut_gap(importance: torch.Tensor, order: Sequence[int], n_drop: int) -> float:
    """log(weakest kept importance) - log(strongest dropped one), `order` strongest first."""
    if n_drop <= 0:
        return math.inf
    kept, dropped = float(importance[order[len(order) - n_drop - 1]]), float(importance[order[len(order) - n_drop]])
    return math.log(max(kept, 1e-300)) - math.log(max(dropped, 1e-300))


def null_trajectory(edges: int, candidates: int, epochs: int, steps_per_epoch: int, lr: float,
                    betas: tuple[float, float] = (0.5, 0.999), weight_decay: float = 1e-3,
                    seed: int = 0) -> torch.Tensor:
    """The architecture parameters of a search whose gradient carries no information: Adam with the
    search's settings (learning rate, betas, weight decay, steps per epoch) fed i.i.d. N(0, 1) gradients,
    from DARTS' 1e-3 N(0, 1) init. Returns the logits after each epoch, [epochs, edges, candidates]
    (float64). This is the noise the JS signal of a real search sits on: Adam moves every alpha by about
    `lr` per step whatever the gradient's size."""
    gen = torch.Generator().manual_seed(seed)
    alphas = torch.nn.Parameter(1e-3 * torch.randn(edges, candidates, generator=gen, dtype=torch.float64))
    opt = torch.optim.Adam([alphas], lr=lr, betas=betas, weight_decay=weight_decay)
    out = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            alphas.grad = torch.randn(edges, candidates, generator=gen, dtype=torch.float64)
            opt.step()
        out.append(alphas.detach().clone())
    return torch.stack(out)


def calibrate(null_logits: torch.Tensor, window: int, prune_fraction: float = 0.5, min_ops: int = 1,
              quantile: float = 0.99, multiple: float = 3.0, margin_multiple: float = 2.0,
              keep: Sequence[int] = ()) -> dict:
    """Threshold and margin of the pruner from a null run (`null_trajectory`, [T, E, K] logits).

    threshold = `multiple` x the `quantile` of the null run's JS-stability values (window `window`): an
    edge counts as stable when it moves no more than noise does (a drifting edge, whose steps add up,
    sits far above: its divergence grows with the square of the steps per window).
    margin = `margin_multiple` x the largest cut gap (`ProgressivePruner`'s `margin` test, at every
    candidate count a progressive prune passes through) anywhere in the null run: noise alone never
    separates the candidates that much, so an edge is only pruned once its ranking stands out of the noise.
    Returns {"threshold", "margin", "noise_js_quantile", "noise_js_median", "noise_gap_max", "noise_step"}.
    """
    T, E, K = null_logits.shape
    if T <= window:
        raise ValueError(f"calibrate: the null run needs more than window={window} epochs, got {T}")
    js = js_stability(null_logits.to(torch.float64), window)[window:].flatten()
    q = float(torch.quantile(js, quantile))
    gaps = []
    ranked = [k for k in range(K) if k not in set(keep)]  # the candidates a prune chooses among
    sizes, n = [], len(ranked)
    while n > min_ops:
        sizes.append(n)
        n -= _n_drop(n, prune_fraction, min_ops)
    for t in range(window, T):
        imp = torch.softmax(null_logits[t - window : t + 1], -1).mean(0)  # [E, K]
        for e in range(E):
            full = strongest_first(imp[e].tolist(), ranked)
            for n_active in sizes:  # the top `n_active` of the noise ranking, as after earlier prunes
                order = full[:n_active]
                gaps.append(_cut_gap(imp[e], order, _n_drop(n_active, prune_fraction, min_ops)))
    step = float((null_logits[1:] - null_logits[:-1]).std())
    return {"threshold": min(multiple * q, math.log(2)), "margin": margin_multiple * max(gaps),
            "noise_js_quantile": q, "noise_js_median": float(js.median()), "noise_gap_max": max(gaps),
            "noise_step": step}
