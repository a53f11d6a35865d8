"""Swap another DARTS code base's mixed edges for the fused `MixedOp`, in place, in one call.

`swap_mixed_ops(model)` finds every DARTS mixed edge of an existing network (a module holding its candidate
operations in an `nn.ModuleList`, `_ops` in pt.darts, the original DARTS and PC-DARTS), reads what each
candidate IS from its layers (pool type, kernel size, dilation, stride, channels: never from its position or
class name), and replaces the edge by a fused edge built around the very same layers: the same Parameter
objects and buffers, registered under the same names, so state dicts, optimizers, module paths and the
caller's architecture weights (column k drives candidate k, in the caller's order) all stay as they were.
Before anything is replaced every new edge is checked against the original on a probe input; whatever
cannot be mapped is refused with the edge and candidate named, and the model is left unchanged.
See docs/drop_in_darts.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .mixed_op import MixedOp
from .operations import OPS, DilConv, FactorizedReduce, PoolBN, SepConv, Zero

# The probe: small enough to cost nothing, even-sized so strided candidates of every code base agree.
_PROBE_BATCH, _PROBE_SIZE = 2, 8


@dataclass(frozen=True)
class SwappedEdge:
    """One replaced edge. `primitives` is the derived candidate order: column k of the edge's architecture
    weights drives candidate k."""

    name: str
    kind: str  # "mixed" (every channel) or "partial_channel" (PC-DARTS: 1/k of the channels)
    primitives: tuple[str, ...]
    channels: int  # channels the candidates see
    stride: int


@dataclass(frozen=True)
class SwapReport:
    edges: tuple[SwappedEdge, ...]

    def __len__(self) -> int:
        return len(self.edges)

    def __str__(self) -> str:
        orders: dict[tuple[str, ...], int] = {}
        for e in self.edges:
            orders[e.primitives] = orders.get(e.primitives, 0) + 1
        lines = [f"swapped {len(self.edges)} DARTS mixed edges for fused MixedOps"]
        lines += [f"  {n} edges, candidate order: {', '.join(order)}" for order, n in orders.items()]
        return "\n".join(lines)


class _Refused(Exception):
    """A candidate or an edge that has no fused counterpart (the message says why)."""


class SwappedMixedOp(MixedOp):
    """A fused `MixedOp` standing in for another code's edge, built around that edge's own layers.

    The original edge's children stay registered under their names (`_ops`, ...): `state_dict()` keys and
    values, `named_parameters()` and module paths are those of the original edge. The fused forward reads
    the same layers through `candidates`, a plain tuple of wrappers that register nothing themselves.
    The pruner's `active` mask is not saved in state dicts here (the original edge has no such entry).
    """

    def __init__(self, edge: nn.Module, ops_attr: str, primitives: Sequence[str],
                 candidates: Sequence[nn.Module], C: int, stride: int) -> None:
        super().__init__(C, stride, primitives, candidates=candidates)
        self.candidates = tuple(self._modules.pop("candidates"))
        self.register_buffer("active", self.active, persistent=False)
        for child_name, child in edge.named_children():
            self.add_module(child_name, child)
        self.ops_attr = ops_attr
        self.training = edge.training
        for attr, value in vars(edge).items():  # plain settings the caller may read (PC-DARTS' `k`)
            if not attr.startswith("_") and attr != "training" and not hasattr(self, attr):
                setattr(self, attr, value)

    def forward_naive(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The original edge's formula over the original candidate modules."""
        return sum(w * op(x) for w, op in zip(weights, getattr(self, self.ops_attr)))

    def extra_repr(self) -> str:
        return f"C={self.C}, stride={self.stride}, primitives={list(self.primitives)}"


class PartialChannelMixedOp(SwappedMixedOp):
    """PC-DARTS' edge: the candidates see the first 1/k of the channels, the rest bypass them (2x2
    max-pooled on a reduction edge), then the channels are shuffled in k groups."""

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self._partial(x, weights, super().forward)

    def forward_naive(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self._partial(x, weights, super().forward_naive)

    def _partial(self, x: torch.Tensor, weights: torch.Tensor, edge) -> torch.Tensor:
        part = x.shape[1] // self.k
        mixed = edge(x[:, :part], weights)
        rest = x[:, part:]
        if mixed.shape[2] != x.shape[2]:
            rest = self.mp(rest)
        out = torch.cat([mixed, rest], dim=1)
        N, C, H, W = out.shape
        return out.view(N, self.k, C // self.k, H, W).transpose(1, 2).reshape(N, C, H, W)


def swap_mixed_ops(model: nn.Module, *, primitives: Sequence[str] | None = None,
                   ops_attr: str = "_ops", recompute: bool = False) -> SwapReport:
    """Replace every DARTS mixed edge of ``model`` in place by a fused edge over the same layers.

    Args:
        model: a network containing DARTS edges: modules whose candidate operations sit in an
            ``nn.ModuleList`` attribute named ``ops_attr`` and whose forward is ``sum(w[k] * op_k(x))``
            (pt.darts, DARTS ``model_search.py``), or PC-DARTS' partial-channel edge (attributes ``k`` and
            ``mp``). A module whose list holds further such lists (a DARTS cell) is a container, not an edge.
        primitives: optional, the order the caller's architecture weights use; every edge's derived
            order must equal it, else nothing is swapped.
        ops_attr: the name of the candidate list.
        recompute: put the fused edges in memory mode (`MixedOp`'s ``recompute``).

    Returns:
        A `SwapReport` listing each swapped edge, its derived candidate order, channels and stride.

    Raises:
        ValueError: no edge found, or some edge or candidate cannot be mapped (each one named); the model is
            then unchanged.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"swap_mixed_ops: model must be an nn.Module, got {type(model).__name__}")
    found = [(name, m) for name, m in model.named_modules() if _is_edge(m, ops_attr)]
    if not found:
        already = sum(isinstance(m, MixedOp) for m in model.modules())
        if already:
            return SwapReport(())
        raise ValueError(f"swap_mixed_ops: found no DARTS mixed edge in {type(model).__name__} (a module "
                         f"with its candidates in an nn.ModuleList named {ops_attr!r})")
    replacements, refusals = [], []
    for name, edge in found:
        try:
            if not name:
                raise _Refused("is the model itself; call swap_mixed_ops on the network that holds it")
            new, report = _map_edge(name, edge, ops_attr)
            if primitives is not None and tuple(primitives) != report.primitives:
                raise _Refused(f"has candidates in the order {list(report.primitives)}, not the declared "
                               f"primitives {list(primitives)}")
            replacements.append((name, new, report))
        except _Refused as why:
            refusals.append(f"{name or '<model>'} ({type(edge).__name__}): {why}")
    if refusals:
        raise ValueError("swap_mixed_ops: nothing swapped, the model is unchanged; cannot map\n  - "
                         + "\n  - ".join(refusals))
    for name, new, _ in replacements:
        new.recompute = recompute
        parent_name, _, child = name.rpartition(".")
        model.get_submodule(parent_name)._modules[child] = new
    return SwapReport(tuple(r for _, _, r in replacements))


def _is_edge(module: nn.Module, ops_attr: str) -> bool:
    ops = module._modules.get(ops_attr)
    if isinstance(module, MixedOp) or not isinstance(ops, nn.ModuleList) or not len(ops):
        return False
    # A DARTS cell also keeps its edges in `_ops`: an edge's candidates hold no such list themselves.
    return not any(ops_attr in sub._modules for op in ops for sub in op.modules())


def _map_edge(name: str, edge: nn.Module, ops_attr: str) -> tuple[SwappedMixedOp, SwappedEdge]:
    ops = edge._modules[ops_attr]
    partial = isinstance(getattr(edge, "k", None), int) and isinstance(edge._modules.get("mp"), nn.MaxPool2d)
    sizes = [_channels(op) for op in ops]
    C = next((c for c in sizes if c is not None), None)
    if any(c not in (None, C) for c in sizes):
        raise _Refused(f"its candidates disagree on the channel count: {sizes}")
    probe_C = C if C is not None else 4
    names, wrappers, strides, problems = [], [], set(), []
    for k, op in enumerate(ops):
        try:
            primitive, wrapper, stride = _map_candidate(op, probe_C)
        except _Refused as why:
            problems.append(f"candidate {ops_attr}.{k} ({type(op).__name__}) {why}")
            continue
        names.append(primitive)
        wrappers.append(wrapper)
        strides.add(stride)
    if problems:
        raise _Refused("; ".join(problems))
    if len(strides) != 1:
        raise _Refused(f"its candidates disagree on the stride: {sorted(strides)}")
    if len(set(names)) != len(names):
        raise _Refused(f"has repeated candidates {names}: their weights would be ambiguous")
    _check_shared_bn(wrappers)
    stride = strides.pop()
    cls = PartialChannelMixedOp if partial else SwappedMixedOp
    new = cls(edge, ops_attr, names, wrappers, probe_C, stride)
    _check_same_output(edge, new, probe_C * (edge.k if partial else 1))
    kind = "partial_channel" if partial else "mixed"
    return new, SwappedEdge(name, kind, tuple(names), probe_C, stride)


def _channels(op: nn.Module) -> int | None:
    bns = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
    return bns[-1].num_features if bns else None


def _layers(op: nn.Module) -> list[nn.Module]:
    """The candidate's leaf layers in registration order, its ReLUs left out (the probe checks them)."""
    return [m for m in op.modules() if not m._modules and not isinstance(m, nn.ReLU)]


def _map_candidate(op: nn.Module, C: int) -> tuple[str, nn.Module, int]:
    """(primitive name, wrapper over the same layers, stride) of one candidate."""
    layers = _layers(op)
    kinds = tuple(_kind(m) for m in layers)
    if kinds == ("other",) and not any(True for _ in op.parameters()) and not any(True for _ in op.buffers()):
        return _map_parameterless(op, C)
    if kinds in (("max", "bn"), ("avg", "bn")):
        pool, bn = layers
        _check_pool(pool)
        primitive, wrapper, stride = f"{kinds[0]}_pool_3x3", PoolBN.from_layers(pool, bn), pool.stride
    elif kinds == ("conv", "conv", "bn") and layers[0].groups > 1:
        stage = _dil_stage(*layers, C)
        if stage.dilation == 1:
            raise _Refused("is a single depthwise-separable stage without dilation: not a DARTS candidate")
        primitive, wrapper, stride = f"dil_conv_{stage.kernel_size}x{stage.kernel_size}", stage, stage.stride
    elif kinds == ("conv", "conv", "bn"):
        primitive, wrapper, stride = "skip_connect", _factorized_reduce(*layers, C), 2
    elif kinds == ("conv", "conv", "bn") * 2:
        first, second = _dil_stage(*layers[:3], C), _dil_stage(*layers[3:], C)
        if (first.dilation, second.dilation, second.stride) != (1, 1, 1) or first.kernel_size != second.kernel_size:
            raise _Refused("has two depthwise-separable stages that are not a DARTS sep_conv (dilation 1, "
                           "same kernel, second stage unstrided)")
        primitive, wrapper, stride = (f"sep_conv_{first.kernel_size}x{first.kernel_size}",
                                      SepConv.from_stages(first, second), first.stride)
    else:
        raise _Refused(f"has layers {[type(m).__name__ for m in layers]}, which match no DARTS candidate")
    if primitive not in OPS:
        raise _Refused(f"is {primitive}, which the fused MixedOp does not have (it has {sorted(OPS)})")
    stride = stride[0] if isinstance(stride, tuple) else stride
    if stride not in (1, 2):
        raise _Refused(f"has stride {stride}; DARTS edges have stride 1 or 2")
    return primitive, wrapper, stride


def _kind(m: nn.Module) -> str:
    for cls, kind in ((nn.Conv2d, "conv"), (nn.BatchNorm2d, "bn"), (nn.MaxPool2d, "max"), (nn.AvgPool2d, "avg")):
        if type(m) is cls:
            return kind
    return "other"


@torch.no_grad()
def _map_parameterless(op: nn.Module, C: int) -> tuple[str, nn.Module, int]:
    """`none` or the identity `skip_connect`: told apart by what they do to a probe."""
    x = torch.randn(_PROBE_BATCH, C, _PROBE_SIZE, _PROBE_SIZE, generator=torch.Generator().manual_seed(0))
    y = op(x.clone())
    if not isinstance(y, torch.Tensor):
        raise _Refused("has no layers and does not return a tensor")
    if y.shape == x.shape and torch.equal(y, x):
        return "skip_connect", nn.Identity(), 1
    for stride in (1, 2):
        if y.shape == x[:, :, ::stride, ::stride].shape and not y.any():
            return "none", Zero(stride), stride
    raise _Refused("has no layers and is neither the identity nor zeros (`none`)")


def _check_pool(pool: nn.Module) -> None:
    def one(v):
        return v if isinstance(v, int) else v[0] if len(set(v)) == 1 else v

    settings = (one(pool.kernel_size), one(pool.padding), pool.ceil_mode)
    ok = settings == (3, 1, False) and one(pool.stride) in (1, 2)
    if isinstance(pool, nn.MaxPool2d):
        ok = ok and one(pool.dilation) == 1 and not pool.return_indices
    else:
        ok = ok and not pool.count_include_pad and pool.divisor_override is None
    if not ok:
        raise _Refused(f"has pool {pool}, not DARTS' 3x3 pool with padding 1"
                       + ("" if isinstance(pool, nn.MaxPool2d) else " and count_include_pad=False"))


def _check_conv(conv: nn.Conv2d, what: str) -> None:
    if conv.bias is not None or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise _Refused(f"has a {what} {conv} with a bias, non-zero padding mode or string padding")
    if len(set(conv.kernel_size)) != 1 or len(set(conv.stride)) != 1 or len(set(conv.dilation)) != 1 \
            or len(set(conv.padding)) != 1:
        raise _Refused(f"has a non-square {what} {conv}")


def _dil_stage(depthwise: nn.Conv2d, pointwise: nn.Conv2d, bn: nn.BatchNorm2d, C: int) -> DilConv:
    _check_conv(depthwise, "depthwise conv")
    _check_conv(pointwise, "pointwise conv")
    k, d = depthwise.kernel_size[0], depthwise.dilation[0]
    if not (depthwise.groups == depthwise.in_channels == depthwise.out_channels == C) or k % 2 == 0 \
            or depthwise.padding[0] != d * (k - 1) // 2:
        raise _Refused(f"has {depthwise}, not a depthwise conv over {C} channels with odd kernel and 'same' "
                       "padding")
    if pointwise.kernel_size != (1, 1) or pointwise.groups != 1 or pointwise.stride != (1, 1) \
            or (pointwise.in_channels, pointwise.out_channels, bn.num_features) != (C, C, C):
        raise _Refused(f"has {pointwise} then {bn}, not a {C}->{C} pointwise conv and its BatchNorm")
    return DilConv.from_layers(depthwise, pointwise, bn)


def _factorized_reduce(conv1: nn.Conv2d, conv2: nn.Conv2d, bn: nn.BatchNorm2d, C: int) -> FactorizedReduce:
    for conv in (conv1, conv2):
        _check_conv(conv, "conv")
        if (conv.kernel_size, conv.stride, conv.padding, conv.groups, conv.in_channels, conv.out_channels) != (
                (1, 1), (2, 2), (0, 0), 1, C, C // 2) or bn.num_features != C:
            raise _Refused(f"has {conv}, not the two 1x1 stride-2 convs of a factorized reduce")
    return FactorizedReduce.from_layers(conv1, conv2, bn)


def _check_shared_bn(wrappers: list[nn.Module]) -> None:
    """The fused forward normalises all conv candidates in one call: their BatchNorms must agree."""
    bns = [m for w in wrappers if isinstance(w, (SepConv, DilConv)) for m in w.modules()
           if isinstance(m, nn.BatchNorm2d)]
    settings = {(b.eps, b.momentum, b.affine, b.track_running_stats) for b in bns}
    if len(settings) > 1:
        raise _Refused(f"has conv candidates whose BatchNorms differ in (eps, momentum, affine, "
                       f"track_running_stats): {sorted(settings, key=str)}")


@torch.no_grad()
def _check_same_output(edge: nn.Module, new: SwappedMixedOp, C_in: int) -> None:
    """The new edge must compute what the original does (evaluation mode: no running statistic moves)."""
    first = next((t for t in [*edge.parameters(), *edge.buffers()] if t.is_floating_point()), None)
    device, dtype = (first.device, first.dtype) if first is not None else (torch.device("cpu"), torch.float32)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(_PROBE_BATCH, C_in, _PROBE_SIZE, _PROBE_SIZE, generator=gen).to(device, dtype)
    w = torch.softmax(torch.randn(len(new.primitives), generator=gen), 0).to(device, dtype)
    modes = {m: m.training for m in edge.modules()}
    try:
        edge.eval()
        expected = edge(x.clone(), w)
        got = new(x.clone(), w)
    except Exception as e:  # noqa: BLE001 - any failure of either forward means: cannot map
        raise _Refused(f"could not be checked on a probe input ({type(e).__name__}: {e})") from e
    finally:
        for m, mode in modes.items():
            m.training = mode
    if not isinstance(expected, torch.Tensor) or expected.shape != got.shape:
        raise _Refused("computes a differently shaped output than the fused edge would")
    err = (expected - got).abs().max().item()
    if err > 1e-4 * (1.0 + expected.abs().max().item()):
        raise _Refused(f"computes something else than sum_k w[k] * candidate_k(x) over {list(new.primitives)} "
                       f"(max difference {err:.3g} on a probe input)")
