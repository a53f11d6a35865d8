"""A pt.darts-style DARTS search network, as a user of that code base has it (no mednns_fast inside).

Written for this repository from the published structure of khanrc/pt.darts (`models/ops.py`,
`models/search_cells.py`, `models/search_cnn.py`, `genotypes.py`): candidate modules that wrap their layers
in an `nn.Sequential` called `net`, a `MixedOp` with its candidates in `_ops` and `none` LAST in the primitive
list, cells whose edges live in `dag[node][input]`, and a controller owning the architecture weights. The
example (`examples/drop_in_darts.py`), the swap tests and `benchmarks/bench_darts_step.py` build it to show
what `mf.nas.swap_mixed_ops` does to code it has never seen. See `docs/drop_in_darts.md`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# pt.darts' order: `none` is the last candidate (original DARTS puts it first).
PRIMITIVES = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5", "none"]


class PoolBN(nn.Module):
    def __init__(self, pool_type: str, C: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        if pool_type == "max":
            self.pool = nn.MaxPool2d(kernel_size, stride, padding)
        else:
            self.pool = nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=False)
        self.bn = nn.BatchNorm2d(C, affine=affine)

    def forward(self, x):
        return self.bn(self.pool(x))


class StdConv(nn.Module):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(C_in, C_out, kernel_size, stride, padding, bias=False),
                                 nn.BatchNorm2d(C_out, affine=affine))

    def forward(self, x):
        return self.net(x)


class DilConv(nn.Module):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine))

    def forward(self, x):
        return self.net(x)


class SepConv(nn.Module):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.net = nn.Sequential(DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
                                 DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine))

    def forward(self, x):
        return self.net(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x * 0.0
        return x[:, :, :: self.stride, :: self.stride] * 0.0


class FactorizedReduce(nn.Module):
    def __init__(self, C_in, C_out, affine=True):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv1(x), self.conv2(x[:, :, 1:, 1:])], dim=1))


OPS = {
    "none": lambda C, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda C, stride, affine: PoolBN("avg", C, 3, stride, 1, affine),
    "max_pool_3x3": lambda C, stride, affine: PoolBN("max", C, 3, stride, 1, affine),
    "skip_connect": lambda C, stride, affine: Identity() if stride == 1 else FactorizedReduce(C, C, affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
}


class MixedOp(nn.Module):
    def __init__(self, C, stride):
        super().__init__()
        self._ops = nn.ModuleList(OPS[p](C, stride, False) for p in PRIMITIVES)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class SearchCell(nn.Module):
    def __init__(self, n_nodes, C_pp, C_p, C, reduction_p, reduction):
        super().__init__()
        self.reduction = reduction
        self.preproc0 = FactorizedReduce(C_pp, C, False) if reduction_p else StdConv(C_pp, C, 1, 1, 0, False)
        self.preproc1 = StdConv(C_p, C, 1, 1, 0, False)
        self.dag = nn.ModuleList()
        for i in range(n_nodes):
            # the first two inputs of a reduction cell are strided
            self.dag.append(nn.ModuleList(MixedOp(C, 2 if reduction and j < 2 else 1) for j in range(2 + i)))

    def forward(self, s0, s1, w_dag):
        states = [self.preproc0(s0), self.preproc1(s1)]
        for edges, w_list in zip(self.dag, w_dag):
            states.append(sum(edges[i](s, w) for i, (s, w) in enumerate(zip(states, w_list))))
        return torch.cat(states[2:], dim=1)


class SearchCNN(nn.Module):
    def __init__(self, C_in, C, n_classes, n_layers, n_nodes=4, stem_multiplier=3):
        super().__init__()
        C_cur = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(C_in, C_cur, 3, 1, 1, bias=False), nn.BatchNorm2d(C_cur))
        C_pp, C_p, C_cur = C_cur, C_cur, C
        self.cells = nn.ModuleList()
        reduction_p = False
        for i in range(n_layers):
            reduction = i in (n_layers // 3, 2 * n_layers // 3)
            if reduction:
                C_cur *= 2
            self.cells.append(SearchCell(n_nodes, C_pp, C_p, C_cur, reduction_p, reduction))
            reduction_p = reduction
            C_pp, C_p = C_p, C_cur * n_nodes
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(C_p, n_classes)

    def forward(self, x, weights_normal, weights_reduce):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights_reduce if cell.reduction else weights_normal)
        return self.linear(self.gap(s1).flatten(1))


class SearchCNNController(nn.Module):
    """Owns the architecture weights (alphas, one row per edge, columns in PRIMITIVES order)."""

    def __init__(self, C_in, C, n_classes, n_layers, n_nodes=4, stem_multiplier=3):
        super().__init__()
        K = len(PRIMITIVES)
        self.alpha_normal = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(i + 2, K)) for i in range(n_nodes))
        self.alpha_reduce = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(i + 2, K)) for i in range(n_nodes))
        self.net = SearchCNN(C_in, C, n_classes, n_layers, n_nodes, stem_multiplier)

    def forward(self, x):
        return self.net(x, [F.softmax(a, dim=-1) for a in self.alpha_normal],
                        [F.softmax(a, dim=-1) for a in self.alpha_reduce])

    def loss(self, x, y):
        return F.cross_entropy(self(x), y)

    def weights(self):
        return self.net.parameters()

    def alphas(self):
        return [*self.alpha_normal, *self.alpha_reduce]
