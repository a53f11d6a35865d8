"""The two learned encoders of the meta-space (TANS-style): a permutation-invariant set encoder for datasets and
a model encoder for (topology, functional embedding) pairs. Both end in an L2 normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SetEncoder(nn.Module):
    """Dataset embedding from the frozen features of a sample of its training images.

    mean over the sample -> linear -> L2. Input [n, F] (one set) or [B, n, F] (B sets); output [D] / [B, D].
    The mean makes it invariant to the order of the images.
    """

    def __init__(self, feature_dim: int, dim: int = 64) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.proj = nn.Linear(feature_dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim not in (2, 3) or features.shape[-1] != self.feature_dim:
            raise ValueError(f"SetEncoder: features must be [n, {self.feature_dim}] or [B, n, {self.feature_dim}], "
                             f"got {tuple(features.shape)}")
        return F.normalize(self.proj(features.mean(-2)), dim=-1)


class ModelEncoder(nn.Module):
    """Model embedding: concat(topology encoding [Dt], functional embedding [Df]) -> linear -> L2.

    Input topology [R, Dt], functional [R, Df]; output [R, D].
    """

    def __init__(self, topology_dim: int, functional_dim: int, dim: int = 64) -> None:
        super().__init__()
        self.topology_dim, self.functional_dim = topology_dim, functional_dim
        self.proj = nn.Linear(topology_dim + functional_dim, dim)

    def forward(self, topology: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
        if topology.ndim != 2 or topology.shape[1] != self.topology_dim:
            raise ValueError(f"ModelEncoder: topology must be [R, {self.topology_dim}], got {tuple(topology.shape)}")
        if functional.shape != (topology.shape[0], self.functional_dim):
            raise ValueError(f"ModelEncoder: functional must be [{topology.shape[0]}, {self.functional_dim}], "
                             f"got {tuple(functional.shape)}")
        return F.normalize(self.proj(torch.cat([topology, functional], 1)), dim=-1)


def probe_inputs(n: int = 8, channels: int = 3, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Fixed probe images [n, channels, size, size] in [0, 1] (seeded noise smoothed into blobs), the same for
    every model, so that a model's features on them describe what it computes (its functional embedding)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, size // 4, size // 4, generator=g)
    base = F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)
    return base.expand(n, channels, size, size).contiguous()


def functional_embedding(features: torch.Tensor, dim: int) -> torch.Tensor:
    """A model's features on the P probe inputs [P, F'] -> one vector [dim]: each probe's row zero-padded or cut
    to dim // P entries (F' varies with the width of a config), concatenated, then scaled to unit norm so
    that models of different widths and scales become comparable."""
    if features.ndim != 2 or dim < features.shape[0]:
        raise ValueError(f"functional_embedding: features must be [P, F'] with P <= dim={dim}, "
                         f"got {tuple(features.shape)}")
    p = features.shape[0]
    per_probe = dim // p
    rows = torch.zeros(p, per_probe, device=features.device)
    k = min(per_probe, features.shape[1])
    rows[:, :k] = features.detach().float()[:, :k]
    out = torch.zeros(dim, device=features.device)
    out[: p * per_probe] = rows.reshape(-1)
    return F.normalize(out, dim=0)
