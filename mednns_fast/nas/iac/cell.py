"""Implantable adaptive cells (IAC): small DARTS cells that sit in a U-Net skip connection.

A cell reads the skip feature (input 0) and, optionally, the upsampled decoder feature (input 1), both
``[N, C, H, W]``; each input is preprocessed by ReLU-conv1x1-BN. Node i (of `IACConfig.nodes`) sums one
edge from every earlier state (the inputs and nodes 0..i-1). The cell's output is a 1x1 projection of the
concatenated nodes, zero-initialised, added to the skip feature by `ResidualSkip`: at initialisation the
implanted network computes exactly what the backbone computed.

The search cell's edges are `MixedOp`s in the partial-channel mode of PC-DARTS: with
``partial_channels = K`` the candidates see the first ``C/K`` channels, the rest bypass the edge, and a
channel shuffle mixes the two so that the next edge sees other channels; node i's incoming edges are
weighted by the edge-normalisation weights beta (softmax over the node's inputs). K = 1 is plain DARTS.
The derived cell (`DerivedCell`) keeps two inputs per node, one operation each, on all channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..darts.mixed_op import MixedOp
from ..darts.operations import DARTS_PRIMITIVES, OPS


@dataclass(frozen=True)
class IACConfig:
    """Search-cell settings: intermediate `nodes`, candidate `primitives`, PC-DARTS `partial_channels` K,
    whether the decoder feature is an input (`use_decoder`), and the fused MixedOp forward (`fused`)."""

    nodes: int = 4
    primitives: tuple[str, ...] = DARTS_PRIMITIVES
    partial_channels: int = 4
    use_decoder: bool = True
    fused: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1:
            raise ValueError(f"IACConfig: nodes must be an int >= 1, got {self.nodes!r}")
        if (isinstance(self.partial_channels, bool) or not isinstance(self.partial_channels, int)
                or self.partial_channels < 1):
            raise ValueError(f"IACConfig: partial_channels must be an int >= 1, got {self.partial_channels!r}")
        unknown = [p for p in self.primitives if p not in OPS]
        if unknown or not self.primitives:
            raise ValueError(f"IACConfig: unknown primitives {unknown}; choose from {sorted(OPS)}")
        object.__setattr__(self, "primitives", tuple(self.primitives))

    @property
    def n_inputs(self) -> int:
        return 2 if self.use_decoder else 1

    def edges(self) -> list[tuple[int, int]]:
        """(node, source state) of every edge, in the order of the architecture parameters' rows.
        States: 0 = skip, 1 = decoder feature (when used), then the nodes."""
        return [(i, j) for i in range(self.nodes) for j in range(self.n_inputs + i)]

    @property
    def n_edges(self) -> int:
        return len(self.edges())


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[N, C, H, W] with C = groups * c: channel g * c + i moves to i * groups + g."""
    if groups == 1:
        return x
    N, C, H, W = x.shape
    return x.view(N, groups, C // groups, H, W).transpose(1, 2).reshape(N, C, H, W)


class ReLUConvBN(nn.Module):
    """The DARTS input preprocessing: ReLU, 1x1 conv, BatchNorm."""

    def __init__(self, C: int, affine: bool) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def _zero_projection(c_in: int, c_out: int) -> nn.Conv2d:
    proj = nn.Conv2d(c_in, c_out, 1)
    nn.init.zeros_(proj.weight)
    nn.init.zeros_(proj.bias)
    return proj


def _check_inputs(name: str, C: int, skip: torch.Tensor, up: torch.Tensor | None, use_decoder: bool) -> None:
    if skip.dim() != 4 or skip.shape[1] != C:
        raise ValueError(f"{name}: skip must be [N, {C}, H, W], got {tuple(skip.shape)}")
    if use_decoder and (up is None or up.shape != skip.shape):
        raise ValueError(f"{name}: up (the decoder feature) must have the skip's shape {tuple(skip.shape)}, "
                         f"got {None if up is None else tuple(up.shape)}")


class IACCell(nn.Module):
    """The search cell on C channels. ``forward(skip, up, weights[E, K], betas[E]) -> [N, C, H, W]``
    (the projection only; `ResidualSkip` adds the skip). `betas` are already normalised per node
    (`IACArchitecture.edge_betas`); `weights[e]` is edge e's distribution over the primitives (zeros
    for pruned candidates, which the MixedOps then never compute)."""

    def __init__(self, C: int, config: IACConfig) -> None:
        super().__init__()
        K = config.partial_channels
        if C % K:
            raise ValueError(f"IACCell: channels {C} must be divisible by partial_channels {K}")
        self.C, self.config = C, config
        self.preprocess = nn.ModuleList(ReLUConvBN(C, affine=False) for _ in range(config.n_inputs))
        self.edges = nn.ModuleList(MixedOp(C // K, 1, config.primitives, fused=config.fused)
                                   for _ in range(config.n_edges))
        self.project = _zero_projection(config.nodes * C, C)

    def _edge(self, e: int, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        K = self.config.partial_channels
        if K == 1:
            return self.edges[e](x, w)
        part, rest = x.split([self.C // K, self.C - self.C // K], dim=1)
        return channel_shuffle(torch.cat([self.edges[e](part, w), rest], dim=1), K)

    def forward(self, skip: torch.Tensor, up: torch.Tensor | None, weights: torch.Tensor,
                betas: torch.Tensor) -> torch.Tensor:
        _check_inputs("IACCell", self.C, skip, up, self.config.use_decoder)
        E, P = self.config.n_edges, len(self.config.primitives)
        if weights.shape != (E, P) or betas.shape != (E,):
            raise ValueError(f"IACCell: weights must be [{E}, {P}] and betas [{E}], got "
                             f"{tuple(weights.shape)} and {tuple(betas.shape)}")
        inputs = [skip, up][: self.config.n_inputs]
        states = [pre(x) for pre, x in zip(self.preprocess, inputs, strict=True)]
        e = 0
        for _ in range(self.config.nodes):
            node = sum(betas[e + j] * self._edge(e + j, s, weights[e + j]) for j, s in enumerate(states))
            e += len(states)
            states.append(node)
        return self.project(torch.cat(states[self.config.n_inputs:], dim=1))


@dataclass(frozen=True)
class Genotype:
    """A derived cell: per node, its (operation, source state) pairs; states as in `IACConfig.edges`."""

    nodes: tuple[tuple[tuple[str, int], ...], ...]
    use_decoder: bool = True
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        n_inputs = 2 if self.use_decoder else 1
        for i, node in enumerate(self.nodes):
            for op, src in node:
                if op not in OPS:
                    raise ValueError(f"Genotype: node {i} uses unknown operation {op!r}")
                if not 0 <= src < n_inputs + i:
                    raise ValueError(f"Genotype: node {i} reads state {src}; it can read 0..{n_inputs + i - 1}")

    def to_dict(self) -> dict:
        return {"nodes": [[list(p) for p in node] for node in self.nodes], "use_decoder": self.use_decoder}

    @classmethod
    def from_dict(cls, d: dict) -> Genotype:
        return cls(tuple(tuple((str(op), int(src)) for op, src in node) for node in d["nodes"]),
                   bool(d["use_decoder"]))

    def __str__(self) -> str:
        return "; ".join(f"n{i}=" + "+".join(f"{op}({src})" for op, src in node) for i, node in enumerate(self.nodes))


class DerivedCell(nn.Module):
    """The derived cell on C channels: plain operations (affine BatchNorm), all channels.
    ``forward(skip, up) -> [N, C, H, W]`` (the projection; `ResidualSkip` adds the skip)."""

    def __init__(self, C: int, genotype: Genotype) -> None:
        super().__init__()
        self.C, self.genotype = C, genotype
        n_inputs = 2 if genotype.use_decoder else 1
        self.preprocess = nn.ModuleList(ReLUConvBN(C, affine=True) for _ in range(n_inputs))
        self.ops = nn.ModuleList(nn.ModuleList(OPS[op](C, 1, True) for op, _ in node) for node in genotype.nodes)
        self.project = _zero_projection(len(genotype.nodes) * C, C)

    def forward(self, skip: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
        _check_inputs("DerivedCell", self.C, skip, up, self.genotype.use_decoder)
        inputs = [skip, up][: len(self.preprocess)]
        states = [pre(x) for pre, x in zip(self.preprocess, inputs, strict=True)]
        for node, ops in zip(self.genotype.nodes, self.ops, strict=True):
            states.append(sum(op(states[src]) for (_, src), op in zip(node, ops, strict=True)))
        return self.project(torch.cat(states[len(inputs):], dim=1))


def strongest_first(values: Sequence[float], candidates: Sequence[int] | None = None) -> list[int]:
    """`candidates` (default: every index of `values`) ordered from the strongest to the weakest value;
    equal values go to the lower index first. The one tie-breaking rule of the IAC search: `derive` takes
    the head of this order (operations and incoming edges), the pruner (`iac.pruner`) drops its tail."""
    candidates = range(len(values)) if candidates is None else candidates
    return sorted(candidates, key=lambda k: (-float(values[k]), k))


def random_genotype(config: IACConfig, generator: torch.Generator, inputs_per_node: int = 2) -> Genotype:
    """A control: per node `inputs_per_node` distinct incoming states and an operation other than `none`
    for each, drawn uniformly from `generator` (seeded: the same generator state gives the same cell)."""
    real = [p for p in config.primitives if p != "none"]
    nodes = []
    for i in range(config.nodes):
        n_in = config.n_inputs + i
        srcs = sorted(torch.randperm(n_in, generator=generator)[: min(inputs_per_node, n_in)].tolist())
        nodes.append(tuple((real[int(torch.randint(len(real), (1,), generator=generator))], j) for j in srcs))
    return Genotype(tuple(nodes), config.use_decoder)


def skip_genotype(config: IACConfig, inputs_per_node: int = 2) -> Genotype:
    """A control: the cell's wiring with every operation `skip_connect` (no searched content)."""
    return Genotype(tuple(tuple(("skip_connect", j) for j in range(min(inputs_per_node, config.n_inputs + i)))
                          for i in range(config.nodes)), config.use_decoder)


def derive(weights: torch.Tensor, betas: torch.Tensor, config: IACConfig, inputs_per_node: int = 2) -> Genotype:
    """The genotype of a search: per node the `inputs_per_node` strongest incoming edges, each with its
    strongest operation other than `none`.

    weights: [E, P] edge distributions (softmax of the alphas, zeros where pruned). betas: [E] edge
    normalisation, normalised per node. An edge's strength is ``beta_e * max_{op != none} weights[e, op]``
    (PC-DARTS). Ties follow `strongest_first` (the rule the pruner uses too: the lower index wins). An edge
    whose only non-`none` weights are zero (pruned down to `none`) has strength 0 and, if still chosen,
    takes the first non-`none` primitive.
    """
    E, P = config.n_edges, len(config.primitives)
    if weights.shape != (E, P) or betas.shape != (E,):
        raise ValueError(f"derive: weights must be [{E}, {P}] and betas [{E}], got {tuple(weights.shape)} and "
                         f"{tuple(betas.shape)}")
    real = [k for k, p in enumerate(config.primitives) if p != "none"]
    if not real:
        raise ValueError("derive: the primitives hold nothing but 'none'")
    w = weights.detach().to("cpu", torch.float64)[:, real]
    b = betas.detach().to("cpu", torch.float64)
    best_k = [strongest_first(row.tolist())[0] for row in w]
    strength = [float(b[e]) * float(w[e, k]) for e, k in enumerate(best_k)]
    nodes, e = [], 0
    for i in range(config.nodes):
        n_in = config.n_inputs + i
        chosen = strongest_first(strength[e : e + n_in])[: min(inputs_per_node, n_in)]
        nodes.append(tuple((config.primitives[real[best_k[e + j]]], j) for j in sorted(chosen)))
        e += n_in
    return Genotype(tuple(nodes), config.use_decoder)


def primitive_names(config: IACConfig) -> list[list[str]]:
    """Candidate names per edge (for the pruner's trajectory and plots)."""
    return [list(config.primitives) for _ in range(config.n_edges)]


def check_levels(levels: Sequence[int] | None, depth: int) -> list[int]:
    """Validated skip levels (None: all of 0..depth-1)."""
    if levels is None:
        return list(range(depth))
    levels = [int(v) for v in levels]
    if not levels or any(not 0 <= v < depth for v in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"levels must be distinct skip levels in 0..{depth - 1}, got {levels}")
    return sorted(levels)
