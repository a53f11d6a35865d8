"""Synthetic architecture-parameter trajectories shaped like a DARTS search, for testing and tuning the
progressive pruner without training a network.

Both return logits ``[T, E, K]`` (epoch, edge, candidate), deterministic given the generator:
- `converging_logits`: every edge relaxes exponentially from ~0 (DARTS' 1e-3 init) towards its own final
  weights, at its own time constant, with per-epoch noise (the minibatch noise of a search);
- `oscillating_logits`: every edge keeps swinging along a random direction with its own period and
  amplitude, for ever (the candidates' ranking keeps changing), with the same noise.
"""

from __future__ import annotations

import math

import torch


def _uniform(gen: torch.Generator, shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def converging_logits(epochs: int, edges: int, ops: int, gen: torch.Generator, scale: float = 1.0,
                      tau: tuple[float, float] = (10.0, 60.0), noise: float = 0.02) -> torch.Tensor:
    """alpha_t = alpha_final (1 - exp(-(t + 1) / tau_e)) + noise N(0, 1), alpha_final ~ N(0, scale^2),
    tau_e uniform in `tau` (epochs)."""
    final = scale * torch.randn(edges, ops, generator=gen, dtype=torch.float64)
    taus = _uniform(gen, (1, edges, 1), *tau)
    t = torch.arange(epochs, dtype=torch.float64).view(-1, 1, 1)
    drift = final * (1 - torch.exp(-(t + 1) / taus))
    init = 1e-3 * torch.randn(edges, ops, generator=gen, dtype=torch.float64)
    return init + drift + noise * torch.randn(epochs, edges, ops, generator=gen, dtype=torch.float64)


def oscillating_logits(epochs: int, edges: int, ops: int, gen: torch.Generator, scale: float = 1.0,
                       period: tuple[float, float] = (8.0, 40.0), amplitude: tuple[float, float] = (0.3, 1.0),
                       noise: float = 0.02) -> torch.Tensor:
    """alpha_t = centre + A_e sin(2 pi t / P_e + phase_e) v_e + noise N(0, 1): centre ~ N(0, scale^2),
    v_e a random direction of norm sqrt(2) (the size of a swap of two candidates), P_e uniform in
    `period` (epochs), A_e uniform in `amplitude`."""
    centre = scale * torch.randn(edges, ops, generator=gen, dtype=torch.float64)
    v = torch.randn(edges, ops, generator=gen, dtype=torch.float64)
    v = v - v.mean(1, keepdim=True)  # a shift of all logits changes nothing: keep the part that does
    v = math.sqrt(2) * v / v.norm(dim=1, keepdim=True)
    periods = _uniform(gen, (1, edges, 1), *period)
    amps = _uniform(gen, (1, edges, 1), *amplitude)
    phases = _uniform(gen, (1, edges, 1), 0.0, 2 * math.pi)
    t = torch.arange(epochs, dtype=torch.float64).view(-1, 1, 1)
    swing = amps * torch.sin(2 * math.pi * t / periods + phases) * v
    return centre + swing + noise * torch.randn(epochs, edges, ops, generator=gen, dtype=torch.float64)
