"""`mf.nas.swap_mixed_ops` on other DARTS code bases' edges.

The foreign edges are written here (and in `examples/ptdarts_style.py` for pt.darts) from the published
structure of the original DARTS (`cnn/operations.py`, `cnn/model_search.py`: candidates as one flat
`nn.Sequential` called `op`, pools wrapped with a BatchNorm by the edge, `none` FIRST) and PC-DARTS
(`model_search.py`: candidates over 1/k of the channels, bypass, channel shuffle); nothing is imported from
those projects. Each test compares the swapped network with an untouched deep copy of the original.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mednns_fast as mf
from examples import ptdarts_style as ptd
from mednns_fast.nas import DARTS_PRIMITIVES, SwappedMixedOp, swap_mixed_ops

# ---- the original DARTS (quark0/darts, cnn/): flat Sequentials, `none` first ---------------------------------


class DartsReLUConvBN(nn.Module):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(inplace=False),
                                nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
                                nn.BatchNorm2d(C_out, affine=affine))

    def forward(self, x):
        return self.op(x)


class DartsDilConv(nn.Module):
    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False), nn.BatchNorm2d(C_out, affine=affine))

    def forward(self, x):
        return self.op(x)


class DartsSepConv(nn.Module):
    """One flat Sequential of both stages (pt.darts nests two DilConvs instead)."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, 1, bias=False), nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, 1, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False), nn.BatchNorm2d(C_out, affine=affine))

    def forward(self, x):
        return self.op(x)


class DartsIdentity(nn.Module):
    def forward(self, x):
        return x


class DartsZero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x.mul(0.0) if self.stride == 1 else x[:, :, :: self.stride, :: self.stride].mul(0.0)


class DartsFactorizedReduce(nn.Module):
    def __init__(self, C_in, C_out, affine=True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


DARTS_OPS = {
    "none": lambda C, stride, affine: DartsZero(stride),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": lambda C, stride, affine: DartsIdentity() if stride == 1 else DartsFactorizedReduce(C, C, affine),
    "sep_conv_3x3": lambda C, stride, affine: DartsSepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: DartsSepConv(C, C, 5, stride, 2, affine),
    "sep_conv_7x7": lambda C, stride, affine: DartsSepConv(C, C, 7, stride, 3, affine),
    "dil_conv_3x3": lambda C, stride, affine: DartsDilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DartsDilConv(C, C, 5, stride, 4, 2, affine),
}
DARTS_ORDER = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
               "dil_conv_3x3", "dil_conv_5x5"]


class DartsMixedOp(nn.Module):
    def __init__(self, C, stride, primitives=DARTS_ORDER):
        super().__init__()
        self._ops = nn.ModuleList()
        for primitive in primitives:
            op = DARTS_OPS[primitive](C, stride, False)
            if "pool" in primitive:  # the edge, not the op factory, adds the pools' BatchNorm
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self._ops.append(op)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class DartsCell(nn.Module):
    """The cell also keeps its edges in `_ops`: a container the swap must not mistake for an edge."""

    def __init__(self, steps, C_pp, C_p, C, reduction, reduction_prev, edge=DartsMixedOp):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (DartsFactorizedReduce(C_pp, C, False) if reduction_prev
                            else DartsReLUConvBN(C_pp, C, 1, 1, 0, False))
        self.preprocess1 = DartsReLUConvBN(C_p, C, 1, 1, 0, False)
        self._steps = steps
        self._ops = nn.ModuleList(edge(C, 2 if reduction and j < 2 else 1)
                                  for i in range(steps) for j in range(2 + i))

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self._steps):
            states.append(sum(self._ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states)))
            offset += len(states) - 1
        return torch.cat(states[2:], dim=1)


# ---- PC-DARTS (yuhuixu1993/PC-DARTS): partial channels, bypass, shuffle -----------------------------------


class PCMixedOp(nn.Module):
    def __init__(self, C, stride):
        super().__init__()
        self.mp = nn.MaxPool2d(2, 2)
        self.k = 4
        self._ops = nn.ModuleList()
        for primitive in DARTS_ORDER:
            op = DARTS_OPS[primitive](C // self.k, stride, False)
            if "pool" in primitive:
                op = nn.Sequential(op, nn.BatchNorm2d(C // self.k, affine=False))
            self._ops.append(op)

    def forward(self, x, weights):
        part = x.shape[1] // self.k
        mixed = sum(w * op(x[:, :part]) for w, op in zip(weights, self._ops))
        rest = x[:, part:] if mixed.shape[2] == x.shape[2] else self.mp(x[:, part:])
        out = torch.cat([mixed, rest], dim=1)
        N, C, H, W = out.shape
        return out.view(N, self.k, C // self.k, H, W).transpose(1, 2).contiguous().view(N, C, H, W)


class TwoCellNet(nn.Module):
    """A normal and a reduction cell over a stem: enough of DARTS' `Network` to search with."""

    def __init__(self, edge, C=8, steps=2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 3 * C, 3, padding=1, bias=False), nn.BatchNorm2d(3 * C))
        self.cells = nn.ModuleList([DartsCell(steps, 3 * C, 3 * C, C, False, False, edge),
                                    DartsCell(steps, 3 * C, steps * C, 2 * C, True, False, edge)])
        self.classifier = nn.Linear(2 * C * steps, 10)
        n_edges = sum(2 + i for i in range(steps))
        self.alphas = nn.Parameter(1e-1 * torch.randn(2, n_edges, 8))

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell, alpha in zip(self.cells, self.alphas):
            s0, s1 = s1, cell(s0, s1, F.softmax(alpha, dim=-1))
        return self.classifier(s1.mean((2, 3)))

    def loss(self, x, y):
        return F.cross_entropy(self(x), y)


class DartsNetwork(nn.Module):
    """DARTS' `model_search.Network` (and PC-DARTS' with ``edge=PCMixedOp``): stem, ``layers`` cells with
    reductions at 1/3 and 2/3, alphas kept outside `parameters()`, and `new()`, which the second-order
    architect calls every step to build the virtual network (a fresh instance, alphas copied)."""

    def __init__(self, C=16, num_classes=10, layers=5, steps=4, edge=DartsMixedOp, stem_multiplier=3):
        super().__init__()
        self._C, self._num_classes, self._layers, self._steps, self._edge = C, num_classes, layers, steps, edge
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            C_curr *= 2 if reduction else 1
            self.cells.append(DartsCell(steps, C_prev_prev, C_prev, C_curr, reduction, reduction_prev, edge))
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, steps * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        k = sum(2 + i for i in range(steps))
        self.alphas_normal = (1e-3 * torch.randn(k, len(DARTS_ORDER))).requires_grad_()
        self.alphas_reduce = (1e-3 * torch.randn(k, len(DARTS_ORDER))).requires_grad_()

    def new(self):
        model_new = DartsNetwork(self._C, self._num_classes, self._layers, self._steps, self._edge)
        model_new.to(self.stem[0].weight.dtype)  # DARTS: .cuda()
        model_new.alphas_normal, model_new.alphas_reduce = (a.detach().clone().requires_grad_()
                                                            for a in self.arch_parameters())
        return model_new

    def double(self):
        super().double()
        self.alphas_normal, self.alphas_reduce = (a.detach().double().requires_grad_() for a in self.arch_parameters())
        return self

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            alphas = self.alphas_reduce if cell.reduction else self.alphas_normal
            s0, s1 = s1, cell(s0, s1, F.softmax(alphas, dim=-1))
        return self.classifier(self.global_pooling(s1).flatten(1))

    def _loss(self, x, y):
        return F.cross_entropy(self(x), y)

    def arch_parameters(self):
        return [self.alphas_normal, self.alphas_reduce]


def _concat(xs):
    return torch.cat([x.reshape(-1) for x in xs])


def darts_unrolled_alpha_grads(model, train, val, optimizer, eta=0.025, momentum=0.9, weight_decay=3e-4):
    """DARTS' `Architect._backward_step_unrolled` (cnn/architect.py), as written there: a virtual network
    from `model.new()` loaded with the virtually stepped weights, its validation gradient, and the
    finite-difference Hessian-vector product on the model. Returns the alphas' gradients."""
    weights = list(model.parameters())
    theta = _concat(weights).detach()
    try:
        moment = _concat(optimizer.state[v]["momentum_buffer"] for v in weights).mul_(momentum)
    except KeyError:
        moment = torch.zeros_like(theta)
    dtheta = _concat(torch.autograd.grad(model._loss(*train), weights)).detach() + weight_decay * theta
    theta = theta - eta * (moment + dtheta)
    unrolled = model.new()  # _construct_model_from_theta
    state, params, offset = model.state_dict(), {}, 0
    for k, v in model.named_parameters():
        params[k] = theta[offset: offset + v.numel()].view(v.size())
        offset += v.numel()
    state.update(params)
    unrolled.load_state_dict(state)
    unrolled._loss(*val).backward()
    dalpha = [v.grad for v in unrolled.arch_parameters()]
    vector = [v.grad.detach() for v in unrolled.parameters()]
    R = 1e-2 / _concat(vector).norm()
    grads = []
    for sign in (1.0, -2.0):
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.add_(sign * R * v)
        grads.append(torch.autograd.grad(model._loss(*train), model.arch_parameters()))
    with torch.no_grad():
        for p, v in zip(weights, vector):
            p.add_(R * v)
    return [g - eta * (gp - gn) / (2 * R) for g, gp, gn in zip(dalpha, *grads)]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only contends


# ---- helpers ------------------------------------------------------------------------------------------------


def ptdarts_net():
    return ptd.SearchCNNController(3, 4, 10, n_layers=3, n_nodes=2)


def batch(n=4, size=8):
    return torch.randn(n, 3, size, size), torch.randint(0, 10, (n,))


def assert_same_training(original, swapped, x, y):
    """Loss, every gradient (weights and alphas) and the BN running statistics agree."""
    grads = []
    for model in (original, swapped):
        loss = model.loss(x, y)
        grads.append((loss, torch.autograd.grad(loss, list(model.parameters()))))
    (l0, g0), (l1, g1) = grads
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    for (k, a), (_, b) in zip(original.state_dict().items(), swapped.state_dict().items(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=k)


def swapped_pair(make):
    original = make()
    swapped = copy.deepcopy(original)
    return original, swapped, swap_mixed_ops(swapped)


# ---- tests --------------------------------------------------------------------------------------------------


def test_ptdarts_network_swapped_in_one_call():
    original, swapped, report = swapped_pair(ptdarts_net)
    # 3 cells of (2 + 3) edges, each with pt.darts' order: `none` LAST, derived from the layers
    assert len(report) == 15 and all(e.primitives == tuple(ptd.PRIMITIVES) for e in report.edges)
    assert {e.stride for e in report.edges} == {1, 2} and {e.channels for e in report.edges} == {4, 8, 16}
    edge = swapped.net.cells[0].dag[0][0]
    assert isinstance(edge, SwappedMixedOp) and edge.primitives[-1] == "none"
    x, y = batch()
    assert_same_training(original, swapped, x, y)
    swapped.eval(), original.eval()
    torch.testing.assert_close(swapped(x), original(x), rtol=1e-5, atol=1e-6)


def test_swap_shares_the_parameters_and_keeps_the_state_dict_layout():
    model = ptdarts_net()
    params = {name: p for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    buffers = [b.data_ptr() for b in model.buffers()]
    swap_mixed_ops(model)
    assert all(params[name] is p for name, p in model.named_parameters()) and len(params) == len(
        list(model.parameters()))
    assert list(model.state_dict()) == keys
    assert [b.data_ptr() for b in model.buffers() if b.dtype != torch.bool][:len(buffers)] == buffers
    # the fused forward reads those very Parameters: an optimizer step on them moves the swapped edge
    edge = model.net.cells[0].dag[1][2]
    x, w = torch.randn(2, 4, 8, 8), torch.softmax(torch.randn(8), 0)
    before = edge(x, w)
    with torch.no_grad():
        edge._ops[3].net[0].net[2].weight.add_(1.0)  # pt.darts path: sep_conv_3x3, stage 1, pointwise
    after = edge(x, w)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, edge.forward_naive(x, w), rtol=1e-5, atol=1e-6)


def test_state_dicts_round_trip_both_ways():
    original, swapped, _ = swapped_pair(ptdarts_net)
    x, y = batch()
    swapped.loss(x, y).backward()  # moves the running statistics
    fresh = ptdarts_net()
    fresh.load_state_dict(swapped.state_dict(), strict=True)  # a swapped checkpoint loads into plain pt.darts
    other = ptdarts_net()
    swap_mixed_ops(other)
    other.load_state_dict(fresh.state_dict(), strict=True)  # and a plain one into a swapped network
    for m in (swapped, fresh, other):
        m.eval()
    torch.testing.assert_close(fresh(x), swapped(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(other(x), swapped(x), rtol=1e-5, atol=1e-6)


def test_deepcopy_of_a_swapped_network_is_independent_and_fused():
    _, swapped, _ = swapped_pair(ptdarts_net)
    twin = copy.deepcopy(swapped)
    x, y = batch()
    torch.testing.assert_close(twin.loss(x, y), swapped.loss(x, y), rtol=1e-5, atol=1e-6)
    edge, twin_edge = swapped.net.cells[1].dag[0][0], twin.net.cells[1].dag[0][0]
    assert twin_edge.candidates[3].stage1.depthwise is twin_edge._ops[3].net[0].net[1]
    assert twin_edge.candidates[3].stage1.depthwise is not edge.candidates[3].stage1.depthwise
    with torch.no_grad():
        for p in twin.weights():
            p.mul_(0.5)
    xe, w = torch.randn(2, 8, 8, 8), torch.softmax(torch.randn(8), 0)
    torch.testing.assert_close(twin_edge(xe, w), twin_edge.forward_naive(xe, w), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(twin_edge(xe, w), edge(xe, w))


def darts_second_order_alpha_grads(model, train, val, xi=0.01, w_decay=3e-4):
    """pt.darts' `Architect.unrolled_backward`: a virtual SGD step on a deep copy, then the validation gradient
    corrected by a finite-difference Hessian-vector product (autograd.grad at w, w', w+ and w-)."""
    weights, alphas = list(model.weights()), model.alphas()
    g = torch.autograd.grad(model.loss(*train), weights)
    virtual = copy.deepcopy(model)
    with torch.no_grad():
        for vw, w, gw in zip(virtual.weights(), weights, g):
            vw.copy_(w - xi * (gw + w_decay * w))
    v_grads = torch.autograd.grad(virtual.loss(*val), [*virtual.alphas(), *virtual.weights()])
    d_alpha, d_w = v_grads[:len(alphas)], v_grads[len(alphas):]
    eps = 0.01 / torch.cat([d.flatten() for d in d_w]).norm()
    hessian = []
    for sign in (1.0, -2.0, 1.0):  # w + eps dw, w - eps dw, back to w
        with torch.no_grad():
            for w, d in zip(weights, d_w):
                w.add_(sign * eps * d)
        if sign != 1.0 or not hessian:
            hessian.append(torch.autograd.grad(model.loss(*train), alphas))
    return [da - xi * (hp - hn) / (2 * eps) for da, hp, hn in zip(d_alpha, *hessian)]


def test_second_order_darts_architect_step_is_unchanged():
    original, swapped, _ = swapped_pair(ptdarts_net)
    train, val = batch(), batch()
    for a, b in zip(darts_second_order_alpha_grads(original, train, val),
                    darts_second_order_alpha_grads(swapped, train, val), strict=True):
        torch.testing.assert_close(b, a, rtol=2e-3, atol=1e-5)


def test_original_darts_cells_swapped_with_none_first():
    original, swapped, report = swapped_pair(lambda: TwoCellNet(DartsMixedOp))
    assert len(report) == 10 and all(e.primitives == tuple(DARTS_ORDER) for e in report.edges)
    assert report.edges[0].name == "cells.0._ops.0"  # the edge, not the cell that also has `_ops`
    assert_same_training(original, swapped, *batch())


def test_pc_darts_partial_channel_edges():
    original, swapped, report = swapped_pair(lambda: TwoCellNet(PCMixedOp, C=8))
    assert {e.kind for e in report.edges} == {"partial_channel"} and {e.channels for e in report.edges} == {2, 4}
    assert swapped.cells[1]._ops[0].k == 4
    assert_same_training(original, swapped, *batch())


def test_declared_order_must_match_the_derived_one():
    model = ptdarts_net()
    keep = [m for m in model.modules()]
    with pytest.raises(ValueError, match=r"not the declared primitives"):
        swap_mixed_ops(model, primitives=DARTS_PRIMITIVES)  # pt.darts puts `none` last
    assert [m for m in model.modules()] == keep
    assert len(swap_mixed_ops(model, primitives=ptd.PRIMITIVES)) == 15


class LyingZero(nn.Module):
    """Parameterless like `none`, but not zeros."""

    def forward(self, x):
        return x * 0.5


def test_refuses_what_it_cannot_map_and_leaves_the_model_unchanged():
    model = TwoCellNet(DartsMixedOp)
    model.cells[1]._ops[3]._ops[5] = DARTS_OPS["sep_conv_7x7"](16, 1, False)
    model.cells[0]._ops[4]._ops[0] = LyingZero()
    model.cells[0]._ops[2]._ops[1] = nn.Sequential(nn.MaxPool2d(2, 1), nn.BatchNorm2d(8, affine=False))
    keep = dict(model.named_modules())
    with pytest.raises(ValueError) as refused:
        swap_mixed_ops(model)
    message = str(refused.value)
    assert "model is unchanged" in message
    assert "cells.1._ops.3" in message and "_ops.5 (DartsSepConv)" in message and "sep_conv_7x7" in message
    assert "cells.0._ops.4" in message and "_ops.0 (LyingZero)" in message
    assert "cells.0._ops.2" in message and "not DARTS' 3x3 pool" in message
    assert dict(model.named_modules()) == keep


def test_refuses_an_edge_whose_forward_is_not_the_weighted_sum():
    class ScaledEdge(DartsMixedOp):
        def forward(self, x, weights):
            return 2 * super().forward(x, weights)

    model = TwoCellNet(ScaledEdge)
    with pytest.raises(ValueError, match=r"computes something else than sum_k w\[k\]"):
        swap_mixed_ops(model)
    assert not any(isinstance(m, mf.nas.MixedOp) for m in model.modules())


def test_memory_mode_trains_the_same_with_less_saved():
    original = ptdarts_net()
    swapped, low = copy.deepcopy(original), copy.deepcopy(original)
    swap_mixed_ops(swapped)
    swap_mixed_ops(low, recompute=True)
    assert all(m.recompute for m in low.modules() if isinstance(m, SwappedMixedOp))
    x, y = batch(4, 16)
    assert_same_training(original, low, x, y)
    naive, fused, memory = (mf.nas.saved_activation_bytes(lambda m=m: m.loss(x, y)) for m in (original, swapped, low))
    assert memory < 0.5 * naive and memory < fused
    with torch.no_grad():  # nothing to save: the plain fused forward
        torch.testing.assert_close(low.loss(x, y), swapped.loss(x, y), rtol=1e-5, atol=1e-6)


def test_mixed_op_requires_the_order_of_its_weights():
    with pytest.raises(TypeError, match="primitives is required"):
        mf.nas.MixedOp(4, 1)
    with pytest.raises(TypeError, match="sequence of names"):
        mf.nas.MixedOp(4, 1, "none")
    with pytest.raises(ValueError, match="must not repeat"):
        mf.nas.MixedOp(4, 1, ["none", "skip_connect", "none"])
    op = mf.nas.MixedOp(4, 1, ptd.PRIMITIVES)  # pt.darts' order, declared
    assert op.primitives[-1] == "none" and type(op.candidates[-1]).__name__ == "Zero"
    with pytest.raises(ValueError, match=r"weights must be \[8\]"):
        op(torch.randn(1, 4, 6, 6), torch.randn(7))


def test_bad_arguments():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        swap_mixed_ops("net")
    with pytest.raises(ValueError, match="found no DARTS mixed edge"):
        swap_mixed_ops(nn.Sequential(nn.Conv2d(3, 3, 1)))
    model = ptdarts_net()
    swap_mixed_ops(model)
    assert len(swap_mixed_ops(model)) == 0  # already swapped: nothing left to do


def test_drop_in_example_runs_and_searches_the_same():
    from examples import drop_in_darts

    out = drop_in_darts.main(steps=1, batch=4, C=4, layers=3, nodes=2)
    assert len(out["report"]) == 3 * 5 and out["report"].edges[0].primitives == tuple(ptd.PRIMITIVES)
    # same state, same data: the fused search follows the pt.darts one step for step
    assert out["losses_after"] == pytest.approx(out["losses_before"], rel=1e-4, abs=1e-5)


def test_saved_activation_bytes_counts_unique_storages():
    x = torch.randn(10, 7, requires_grad=True)
    w = torch.randn(7, requires_grad=True)
    # x * w saves both factors; relu saves its result; the output is that same storage
    assert mf.nas.saved_activation_bytes(lambda: torch.relu(x * w)) == (70 + 7 + 70) * 4
    assert mf.nas.saved_activation_bytes(lambda: torch.relu(x * w), exclude=[w]) == (70 + 70) * 4
    assert mf.nas.saved_activation_bytes(lambda: torch.relu(x * w), include_output=True) == (70 + 7 + 70) * 4
    assert mf.nas.saved_activation_bytes(lambda: x * w, include_output=True) == (70 + 7 + 70) * 4


# ---- the probe-verdict cache and fused new() (second-order DARTS) --------------------------------------------


def darts_pair(edge=DartsMixedOp):
    torch.manual_seed(0)
    return DartsNetwork(C=8, layers=3, steps=2, edge=edge).double()


def test_a_cached_verdict_is_reused_and_swaps_the_same():
    mf.nas.clear_swap_cache()
    # 15 edges of 5 geometries: (C=4, stride 1), then (8, 2), (8, 1), (16, 2), (16, 1); one probe each
    assert swap_mixed_ops(ptdarts_net()).probed == 5
    original = ptdarts_net()  # the same geometry, other weights
    swapped = copy.deepcopy(original)
    report = swap_mixed_ops(swapped)
    assert report.probed == 0 and report.reused == 15
    assert [e.primitives for e in report.edges] == [tuple(ptd.PRIMITIVES)] * 15
    assert {e.stride for e in report.edges} == {1, 2}
    assert_same_training(original, swapped, *batch())
    assert swap_mixed_ops(ptdarts_net(), cache=False).probed == 15  # cache=False probes every edge


class ScaledByAttribute(DartsMixedOp):
    """An edge whose forward reads a plain attribute: the verdict depends on its value."""

    def __init__(self, C, stride, scale=1.0):
        super().__init__(C, stride)
        self.scale = scale

    def forward(self, x, weights):
        return self.scale * super().forward(x, weights)


def test_a_changed_geometry_is_probed_again():
    mf.nas.clear_swap_cache()
    # 10 edges of 3 geometries: (C=8, stride 1) in the normal cell, (16, 2) and (16, 1) in the reduction cell
    assert swap_mixed_ops(TwoCellNet(DartsMixedOp)).probed == 3
    assert swap_mixed_ops(TwoCellNet(DartsMixedOp)).probed == 0
    assert swap_mixed_ops(TwoCellNet(DartsMixedOp, C=16)).probed == 2  # channels: (16, 1) was seen already
    assert swap_mixed_ops(TwoCellNet(DartsMixedOp).double()).probed == 3  # dtype
    assert swap_mixed_ops(TwoCellNet(PCMixedOp)).probed == 3  # another edge class (other shapes too)
    with mf.ops.use_backend("reference"):  # the ops the fused forward calls run elsewhere
        assert swap_mixed_ops(TwoCellNet(DartsMixedOp)).probed == 3

    bn_eps = TwoCellNet(DartsMixedOp)  # one candidate's BatchNorm eps (a plain attribute)
    bn_eps.cells[0]._ops[0]._ops[1][1].eps = 1e-3
    assert swap_mixed_ops(bn_eps).probed == 1

    # a plain attribute the edge's forward reads: verified at 1.0, then a network where it is 2.0
    assert swap_mixed_ops(TwoCellNet(ScaledByAttribute)).probed == 3
    scaled = TwoCellNet(ScaledByAttribute)
    scaled.cells[1]._ops[2].scale = 2.0
    with pytest.raises(ValueError, match=r"cells\.1\._ops\.2 .*computes something else"):
        swap_mixed_ops(scaled)

    # a forward hook (the fused forward would not run it): never cached, so probed and refused
    hooked = TwoCellNet(DartsMixedOp)
    hooked.cells[0]._ops[1]._ops[4].register_forward_hook(lambda m, i, out: 2 * out)
    with pytest.raises(ValueError, match=r"cells\.0\._ops\.1 .*computes something else"):
        swap_mixed_ops(hooked)

    # an attribute the key cannot hold (a tensor): that edge is probed every time
    tensor_attr = TwoCellNet(DartsMixedOp)
    tensor_attr.cells[0]._ops[3].extra = torch.zeros(1)
    assert swap_mixed_ops(tensor_attr).probed == 1


def test_a_class_whose_forward_changed_is_probed_again(monkeypatch):
    mf.nas.clear_swap_cache()
    assert swap_mixed_ops(TwoCellNet(ScaledByAttribute)).probed == 3
    monkeypatch.setattr(ScaledByAttribute, "forward", lambda self, x, w: 3 * DartsMixedOp.forward(self, x, w))
    with pytest.raises(ValueError, match=r"computes something else"):
        swap_mixed_ops(TwoCellNet(ScaledByAttribute))


def test_the_quick_wrappers_are_what_from_layers_builds():
    from mednns_fast.nas.darts import operations as ops
    from mednns_fast.nas.darts import swap as sw

    def layout(m):
        return {k: (type(v), v if not isinstance(v, (nn.Module, dict, set)) else None)
                for k, v in vars(m).items() if k != "_modules"}, {k: v for k, v in m._modules.items()}

    dw, pw = nn.Conv2d(4, 4, 3, 2, 2, 2, groups=4, bias=False), nn.Conv2d(4, 4, 1, bias=False)
    bn, pool = nn.BatchNorm2d(4, affine=False), nn.MaxPool2d(3, 1, 1)
    c1, c2 = nn.Conv2d(4, 2, 1, 2, bias=False), nn.Conv2d(4, 2, 1, 2, bias=False)
    built = sw._dil_stage(dw, pw, bn, 4)
    for ours, theirs in ((built, ops.DilConv.from_layers(dw, pw, bn)),
                         (sw._factorized_reduce(c1, c2, bn, 4), ops.FactorizedReduce.from_layers(c1, c2, bn)),
                         (sw._built(ops.PoolBN, pool=pool, bn=bn), ops.PoolBN.from_layers(pool, bn)),
                         (sw._built(ops.SepConv, stage1=built, stage2=built), ops.SepConv.from_stages(built, built))):
        (ours_plain, ours_children), (theirs_plain, theirs_children) = layout(ours), layout(theirs)
        assert type(ours) is type(theirs) and ours_plain == theirs_plain
        assert list(ours_children) == list(theirs_children)
        assert all(type(ours_children[k]) is type(v) and (v is ours_children[k] or isinstance(v, nn.ReLU))
                   for k, v in theirs_children.items())


@pytest.mark.parametrize("edge", [DartsMixedOp, PCMixedOp], ids=["darts", "pc_darts"])
def test_fused_new_makes_the_darts_architect_step_fused_and_exact(edge):
    """DARTS / PC-DARTS second order: `new()` builds the virtual network each step; after `fused_new` it is
    swapped (probe verdicts reused) and the architecture gradients equal the unswapped ones (float64)."""
    original = darts_pair(edge)
    swapped = copy.deepcopy(original)
    swap_mixed_ops(swapped)
    built = []

    class Network(DartsNetwork):
        def new(self):  # the code base's own new(): a fresh, unswapped network
            built.append(super().new())
            return built[-1]

    assert mf.nas.fused_new(Network) is Network and mf.nas.fused_new(Network) is Network  # wraps once
    assert Network.new.__wrapped__ is Network.new.__fused_new_original__
    swapped.__class__ = Network
    train, val = batch(), batch()
    train, val = (train[0].double(), train[1]), (val[0].double(), val[1])
    grads = []
    for model in (original, swapped):
        optimizer = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9)
        grads.append(darts_unrolled_alpha_grads(model, train, val, optimizer))
    virtual = list(built[-1].modules())
    assert sum(isinstance(m, SwappedMixedOp) for m in virtual) == 15 and not any(isinstance(m, edge) for m in virtual)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-13)


def test_fused_new_as_a_decorator_passes_the_swap_options():
    @mf.nas.fused_new(recompute=True)
    class Network(DartsNetwork):
        pass

    model = Network(C=8, layers=3, steps=2)
    virtual = model.new()  # DartsNetwork.new builds a DartsNetwork: swapped by the wrapper all the same
    edges = [m for m in virtual.modules() if isinstance(m, SwappedMixedOp)]
    assert len(edges) == 15 and all(e.recompute for e in edges)
    with pytest.raises(TypeError, match="pass the network's class"):
        mf.nas.fused_new(model)
    with pytest.raises(TypeError, match="has no new"):
        mf.nas.fused_new(TwoCellNet)


class ClassScaled(DartsMixedOp):
    """An edge whose forward reads a class attribute."""

    scale = 1.0

    def forward(self, x, weights):
        return self.scale * super().forward(x, weights)


def test_a_changed_class_attribute_is_probed_again(monkeypatch):
    mf.nas.clear_swap_cache()
    assert swap_mixed_ops(TwoCellNet(ClassScaled)).probed == 3
    assert swap_mixed_ops(TwoCellNet(ClassScaled)).probed == 0
    monkeypatch.setattr(ClassScaled, "scale", 2.0)
    with pytest.raises(ValueError, match=r"computes something else"):
        swap_mixed_ops(TwoCellNet(ClassScaled))
