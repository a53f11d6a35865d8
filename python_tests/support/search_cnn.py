"""A DARTS search network (pt.darts layout) built from `MixedOp` edges.

`SearchCell`: two preprocessed inputs, then `n_nodes` nodes, node i the sum of MixedOp edges from the two
inputs and every earlier node; its output concatenates the nodes. `SearchCNN`: a conv stem, `n_layers`
cells (reduction cells at 1/3 and 2/3 of the depth double the channels and halve the resolution), global
pooling and a linear classifier. The architecture weights are not owned here: `forward` takes them, so a
controller (or a pruner) keeps the alphas as their own parameter group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mednns_fast.nas.darts.mixed_op import MixedOp
from mednns_fast.nas.darts.operations import DARTS_PRIMITIVES, FactorizedReduce


class StdConv(nn.Module):
    """ReLU, conv, BatchNorm: the cell inputs' preprocessing."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(inplace=False),
                                 nn.Conv2d(C_in, C_out, kernel_size, stride, padding, bias=False),
                                 nn.BatchNorm2d(C_out, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SearchCell(nn.Module):
    """One DARTS cell: ``dag[i][j]`` is the MixedOp from state j to node i (states: s0, s1, nodes)."""

    def __init__(self, n_nodes: int, C_pp: int, C_p: int, C: int, reduction_p: bool, reduction: bool,
                 primitives: Sequence[str] = DARTS_PRIMITIVES, fused: bool = True) -> None:
        super().__init__()
        self.reduction = reduction
        # The previous-previous state is halved when the previous cell was a reduction cell.
        self.preproc0 = FactorizedReduce(C_pp, C, affine=False) if reduction_p else StdConv(C_pp, C, 1, 1, 0)
        self.preproc1 = StdConv(C_p, C, 1, 1, 0)
        self.dag = nn.ModuleList(
            nn.ModuleList(MixedOp(C, 2 if reduction and j < 2 else 1, primitives, fused=fused)
                          for j in range(2 + i))
            for i in range(n_nodes))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """s0, s1: [N, C_pp/C_p, H, W]; weights[i]: [2 + i, K] (softmaxed alphas of node i's edges).
        Returns [N, n_nodes * C, Ho, Wo]."""
        states = [self.preproc0(s0), self.preproc1(s1)]
        for edges, w in zip(self.dag, weights, strict=True):
            states.append(sum(edge(s, w[j]) for j, (edge, s) in enumerate(zip(edges, states))))
        return torch.cat(states[2:], dim=1)


class SearchCNN(nn.Module):
    """The DARTS search network.

    Args:
        C_in: image channels. C: channels of the first cells. n_classes: classifier outputs.
        n_layers: cells. n_nodes: intermediate nodes per cell. stem_multiplier: stem width over C.
        primitives: candidate names of every edge. fused: MixedOp's fused forward (False: the naive one).
    """

    def __init__(self, C_in: int, C: int, n_classes: int, n_layers: int, n_nodes: int = 4,
                 stem_multiplier: int = 3, primitives: Sequence[str] = DARTS_PRIMITIVES,
                 fused: bool = True) -> None:
        super().__init__()
        self.n_nodes, self.num_primitives = n_nodes, len(primitives)
        C_cur = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(C_in, C_cur, 3, 1, 1, bias=False), nn.BatchNorm2d(C_cur))
        C_pp, C_p, C_cur = C_cur, C_cur, C
        self.cells = nn.ModuleList()
        reduction_p = False
        for i in range(n_layers):
            reduction = i in (n_layers // 3, 2 * n_layers // 3)
            if reduction:
                C_cur *= 2
            self.cells.append(SearchCell(n_nodes, C_pp, C_p, C_cur, reduction_p, reduction, primitives, fused))
            reduction_p = reduction
            C_pp, C_p = C_p, C_cur * n_nodes
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(C_p, n_classes)

    def alpha_shapes(self) -> list[tuple[int, int]]:
        """Shapes of one cell type's architecture parameters: node i has [2 + i, K]."""
        return [(2 + i, self.num_primitives) for i in range(self.n_nodes)]

    def mixed_ops(self) -> list[MixedOp]:
        """Every edge's MixedOp, cell by cell (the order a pruner's edges follow)."""
        return [op for cell in self.cells for edges in cell.dag for op in edges]

    def forward(self, x: torch.Tensor, weights_normal: Sequence[torch.Tensor],
                weights_reduce: Sequence[torch.Tensor]) -> torch.Tensor:
        """x: [N, C_in, H, W]; weights_*: one [2 + i, K] tensor per node. Returns logits [N, n_classes]."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights_reduce if cell.reduction else weights_normal)
        return self.linear(self.gap(s1).flatten(1))
