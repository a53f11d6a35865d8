"""Synthetic architecture-parameter trajectories shaped like a DARTS search, for testing and tuning the
progressive pruner without training a network.

Both return logits ``[T, E, K]`` (epoch, edge, candidate), deterministic given the generator, with
per-epoch Gaussian noise (the minibatch noise of a search):
- `converging_logits`: every edge relaxes from ~0 (DARTS' 1e-3 init) to its own final weights with its
  own time constant, through a transient bump that peaks at that time constant and fades (like the early
  surge of parameter-free operations in DARTS), so the early ranking is not the final one;
- `oscillating_logits`: on every edge the two leading candidates keep trading places for ever, each edge
  with its own period and amplitude.
"""

from __future__ import annotations

import math

import torch


def _uniform(gen: torch.Generator, shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _noise(epochs: int, edges: int, ops: int, gen: torch.Generator, noise: float) -> torch.Tensor:
    return noise * torch.randn(epochs, edges, ops, generator=gen, dtype=torch.float64)


def converging_logits(epochs: int, edges: int, ops: int, gen: torch.Generator, scale: float = 1.0,
                      tau: tuple[float, float] = (5.0, 30.0), transient: float = 0.5,
                      noise: float = 0.02) -> torch.Tensor:
    """alpha_t = final (1 - exp(-s)) + bump s exp(1 - s) + noise N(0, 1) with s = (t + 1) / tau_e;
    final ~ N(0, scale^2), bump ~ N(0, (transient scale)^2), tau_e uniform in `tau` (epochs)."""
    final = scale * torch.randn(edges, ops, generator=gen, dtype=torch.float64)
    bump = transient * scale * torch.randn(edges, ops, generator=gen, dtype=torch.float64)
    taus = _uniform(gen, (1, edges, 1), *tau)
    s = (torch.arange(epochs, dtype=torch.float64).view(-1, 1, 1) + 1) / taus
    init = 1e-3 * torch.randn(edges, ops, generator=gen, dtype=torch.float64)
    drift = final * (1 - torch.exp(-s)) + bump * s * torch.exp(1 - s)
    return init + drift + _noise(epochs, edges, ops, gen, noise)


def oscillating_logits(epochs: int, edges: int, ops: int, gen: torch.Generator, scale: float = 1.0,
                       period: tuple[float, float] = (8.0, 40.0), amplitude: tuple[float, float] = (0.3, 1.0),
                       noise: float = 0.02) -> torch.Tensor:
    """centre ~ N(0, scale^2) with its two largest entries set to their mean; then those two move by
    +-A_e sin(2 pi t / P_e + phase_e) (in opposite directions: the leader changes every half period),
    P_e uniform in `period` (epochs), A_e uniform in `amplitude`. Needs ops >= 2."""
    if ops < 2:
        raise ValueError(f"oscillating_logits: needs ops >= 2 candidates to swap, got {ops}")
    centre = scale * torch.randn(edges, ops, generator=gen, dtype=torch.float64)
    top = centre.topk(2, dim=1).indices
    centre.scatter_(1, top, centre.gather(1, top).mean(1, keepdim=True).expand(-1, 2))
    direction = torch.zeros(edges, ops, dtype=torch.float64)
    direction.scatter_(1, top, torch.tensor([[1.0, -1.0]], dtype=torch.float64).expand(edges, -1))
    periods = _uniform(gen, (1, edges, 1), *period)
    amps = _uniform(gen, (1, edges, 1), *amplitude)
    phases = _uniform(gen, (1, edges, 1), 0.0, 2 * math.pi)
    t = torch.arange(epochs, dtype=torch.float64).view(-1, 1, 1)
    swing = amps * torch.sin(2 * math.pi * t / periods + phases) * direction
    return centre + swing + _noise(epochs, edges, ops, gen, noise)
