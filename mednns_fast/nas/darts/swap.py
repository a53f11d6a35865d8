"""Swap another DARTS code base's mixed edges for the fused `MixedOp`, in place, in one call.

`swap_mixed_ops(model)` finds every DARTS mixed edge of an existing network (a module holding its candidate
operations in an `nn.ModuleList`, `_ops` in pt.darts, the original DARTS and PC-DARTS), reads what each
candidate IS from its layers (pool type, kernel size, dilation, stride, channels: never from its position or
class name), and replaces the edge by a fused edge built around the very same layers: the same Parameter
objects and buffers, registered under the same names, so state dicts, optimizers, module paths and the
caller's architecture weights (column k drives candidate k, in the caller's order) all stay as they were.
Before anything is replaced every new edge is checked against the original on a probe input; whatever
cannot be mapped is refused with the edge and candidate named, and the model is left unchanged. A check's
verdict is cached per edge geometry (`_edge_key`: everything the forward's code reads but the tensors' values),
so swapping a fresh copy of a network again (a second-order architect's `new()`, see `fused_new`) re-reads the
layers without probing again. See docs/drop_in_darts.md.
"""

from __future__ import annotations

import functools
import itertools
import marshal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules import module as _module_globals

from ...ops import get_backend
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
    """The swapped edges; ``probed``: how many of them were checked on a probe input in this call (the others
    reused the cached verdict of an edge of the same geometry)."""

    edges: tuple[SwappedEdge, ...]
    probed: int = 0

    @property
    def reused(self) -> int:
        return len(self.edges) - self.probed

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
                   ops_attr: str = "_ops", recompute: bool = False, cache: bool = True) -> SwapReport:
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
        cache: reuse the checks' verdict of an earlier edge of the same geometry: the same classes (their
            methods and class attributes as they are now), the same non-tensor attributes of every module of
            the edge (kernel sizes, strides, channels, eps, ``k``, ...), the same parameter and buffer
            shapes, dtypes and devices, no forward hooks, the same default dtype and op backends
            (`_edge_key`). An edge with anything the key cannot hold (a tensor or callable attribute, a
            forward hook) is always probed. False probes every edge (and caches nothing).

    Returns:
        A `SwapReport` listing each swapped edge, its derived candidate order, channels and stride, and how
        many edges were probed.

    Raises:
        ValueError: no edge found, or some edge or candidate cannot be mapped (each one named); the model is
            then unchanged.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"swap_mixed_ops: model must be an nn.Module, got {type(model).__name__}")
    # global forward hooks would run in the original edge's modules only: no verdict is reused under them
    cache = cache and not (_module_globals._global_forward_hooks or _module_globals._global_forward_pre_hooks)
    classes: dict[type, int] | None = {} if cache else None  # class -> its `_class_token`, for this call
    found, already = _find_edges(model, ops_attr, classes)
    if not found:
        if already:
            return SwapReport(())
        raise ValueError(f"swap_mixed_ops: found no DARTS mixed edge in {type(model).__name__} (a module "
                         f"with its candidates in an nn.ModuleList named {ops_attr!r})")
    context = (ops_attr, torch.get_default_dtype(), tuple(get_backend(op) for op in _FUSED_OPS)) if cache else None
    replacements, refusals, probed = [], [], 0
    for name, edge, walks in found:
        try:
            if not name:
                raise _Refused("is the model itself; call swap_mixed_ops on the network that holds it")
            key = _edge_key(edge, ops_attr, walks, context, classes) if cache else None
            known = _VERDICTS.get(key) if key is not None else None
            new, report = _map_edge(name, edge, ops_attr, [mods for mods, _ in walks], known)
            if known is None:
                probed += 1
                if key is not None:
                    if len(_VERDICTS) >= _VERDICTS_MAX:
                        _VERDICTS.clear()
                    _VERDICTS[key] = report
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
    return SwapReport(tuple(r for _, _, r in replacements), probed)


def clear_swap_cache() -> None:
    """Forget every cached probe verdict (`swap_mixed_ops` then probes each edge again)."""
    _VERDICTS.clear()
    _CLASS_TOKENS.clear()
    _LAYOUTS.clear()


def fused_new(cls: type | None = None, **swap_kwargs) -> type | Callable[[type], type]:
    """Make ``cls.new()`` return a fused network: the one line for DARTS / PC-DARTS second-order search.

    Their architect builds the virtual network of each step with ``model.new()`` (a fresh, unswapped
    ``Network``) and loads the weights into it by state dict; after ``mf.nas.fused_new(Network)`` that copy
    is swapped too (`swap_mixed_ops(copy, **swap_kwargs)`, probe checks reused from the cache, so a few ms
    for 70 edges). Patches the class in place and returns it, so it also works as a class decorator
    (``@mf.nas.fused_new`` or ``@mf.nas.fused_new(recompute=True)``); calling it twice wraps once. The model
    you train still needs its own ``swap_mixed_ops(model)``.
    """
    if cls is None:
        return functools.partial(fused_new, **swap_kwargs)
    if not isinstance(cls, type):
        raise TypeError(f"fused_new: pass the network's class (e.g. fused_new(type(model))), got "
                        f"{type(cls).__name__}")
    original = getattr(cls, "new", None)
    if not callable(original):
        raise TypeError(f"fused_new: {cls.__name__} has no new() method to wrap")
    original = getattr(original, "__fused_new_original__", original)

    @functools.wraps(original)
    def new(self, *args, **kwargs):
        model = original(self, *args, **kwargs)
        swap_mixed_ops(model, **swap_kwargs)
        return model

    new.__fused_new_original__ = original
    cls.new = new
    return cls


# ---- finding the edges --------------------------------------------------------------------------------------


def _find_edges(model: nn.Module, ops_attr: str, classes: dict[type, int] | None) -> tuple[list, int]:
    """(name, edge, walks) of every DARTS edge, in `named_modules` order, and the number of fused edges met.

    An edge: a module (not a `MixedOp`) with a non-empty ``nn.ModuleList`` at ``ops_attr`` whose candidates
    hold no such list themselves (a DARTS cell also keeps its edges in `_ops`: a container, not an edge).
    ``walks``: one `_walk` per candidate (its modules, in `modules()` order, and its key part: None when
    ``classes`` is None, i.e. without the cache).
    """
    found, memo, fused = [], set(), 0

    def visit(m: nn.Module, name: str) -> None:
        nonlocal fused
        if id(m) in memo:
            return
        memo.add(id(m))
        if isinstance(m, MixedOp):
            fused += 1
            return
        skip = None
        ops = m._modules.get(ops_attr)
        if isinstance(ops, nn.ModuleList) and len(ops) and not any(ops_attr in op._modules for op in ops):
            walks = [_walk(op, classes) for op in ops]
            if not any(ops_attr in sub._modules for mods, _ in walks for sub in mods):
                found.append((name, m, walks))
                skip = ops_attr  # candidates hold no edge
        for child_name, child in m._modules.items():
            if child is not None and child_name != skip:
                visit(child, f"{name}.{child_name}" if name else child_name)

    visit(model, "")
    return found, fused


# ---- the cache of probe verdicts ----------------------------------------------------------------------------

_VERDICTS: dict[tuple, SwappedEdge] = {}  # edge key -> what the checks and the probe found for that geometry
_VERDICTS_MAX = 1024
_FUSED_OPS = ("multi_depthwise_conv2d", "max_avg_pool3x3", "mixed_sum")  # what the fused forward calls
_MODULE_INTERNALS = frozenset(vars(nn.Module()))  # nn.Module's own bookkeeping (hooks: checked apart)
_LAYOUTS: dict[tuple, tuple[str, ...]] = {}  # (class, attribute names) -> the names that are not bookkeeping
_CLASS_TOKENS: dict[tuple, int] = {}  # a class's fingerprint -> its number in the keys
_TOKEN_NUMBERS = itertools.count()


class _NoKey(Exception):
    """Something the cache key cannot hold (a tensor or callable attribute, a hook): probe every time."""


def _walk(root: nn.Module, classes: dict[type, int] | None) -> tuple[list[nn.Module], tuple | None]:
    """``root``'s modules in `modules()` order and its key part (None when one of them cannot be keyed, or
    without ``classes``: no key wanted).

    The key part is the preorder of `_module_key`s (each names its children, so the tree is unambiguous),
    None for an empty child slot and, where a module is met again (shared layers), its first position."""
    mods: list[nn.Module] = []
    seen: dict[int, int] = {}
    parts: list = []
    keyed = classes is not None
    stack: list = [root]
    while stack:  # preorder without recursion: this runs for every module of every edge, every swap
        m = stack.pop()
        if m is None:
            parts.append(None)
            continue
        first = seen.get(id(m))
        if first is not None:
            parts.append(first)
            continue
        seen[id(m)] = len(mods)
        mods.append(m)
        if keyed:
            try:
                parts.append(_module_key(m, classes))
            except _NoKey:
                keyed = False
        if m._modules:
            stack.extend(reversed(m._modules.values()))
    return mods, (tuple(parts) if keyed else None)


def _module_key(m: nn.Module, classes: dict[type, int]) -> tuple:
    """What one module's forward may read besides tensor values: its class (`_class_token`: its methods and
    class attributes as they are now), the names of its attributes, children, parameters and buffers, its
    other attributes' values (plain ones only, as `marshal` writes them: numbers, strings, None, tuples, lists
    and dicts of them, so 1, 1.0 and True differ), its parameters' and buffers' types, shapes, dtypes and
    devices. A forward hook or any other attribute value (a tensor, a callable, a dtype, ...) raises `_NoKey`."""
    d = m.__dict__
    if d["_forward_hooks"] or d["_forward_pre_hooks"]:
        raise _NoKey
    cls = type(m)
    token = classes.get(cls)
    if token is None:
        token = classes[cls] = _class_token(cls)
    attributes = tuple(d)
    names = _LAYOUTS.get((cls, attributes))
    if names is None:
        if len(_LAYOUTS) >= _VERDICTS_MAX:
            _LAYOUTS.clear()
        names = _LAYOUTS[cls, attributes] = tuple(k for k in d if k not in _MODULE_INTERNALS)
    try:
        values = marshal.dumps(tuple(map(d.__getitem__, names)), 2)  # version 2: no back-references
    except ValueError:
        raise _NoKey from None
    params, buffers = d["_parameters"], d["_buffers"]
    tensors = tuple(None if t is None else (type(t), t.shape, t.dtype, t.device)
                    for t in (*params.values(), *buffers.values())) if params or buffers else ()
    return token, attributes, tuple(d["_modules"]), tuple(params), tuple(buffers), values, tensors


def _class_token(cls: type) -> int:
    """A number standing for ``cls`` as it is now: the class and every hashable entry of its and its bases'
    namespaces (methods, class attributes; compared by identity or value and type), so that patching a
    method or a class attribute gives another number. Computed once per class per swap."""
    fingerprint = [cls]
    for klass in cls.__mro__:
        for name, value in vars(klass).items():
            try:
                hash(value)
            except TypeError:  # a class-level list or dict (`__constants__`, annotations): not followed
                continue
            fingerprint.append((name, type(value), value))
    fingerprint = tuple(fingerprint)
    token = _CLASS_TOKENS.get(fingerprint)
    if token is None:
        if len(_CLASS_TOKENS) >= _VERDICTS_MAX:
            _CLASS_TOKENS.clear()
        token = _CLASS_TOKENS[fingerprint] = next(_TOKEN_NUMBERS)  # never reused, even after a clear
    return token


def _edge_key(edge: nn.Module, ops_attr: str, walks: list, context: tuple, classes: dict[type, int]) -> tuple | None:
    """The cache key of an edge's probe verdict, or None (no caching) when some module cannot be keyed or
    two candidates share a module (their `modules()` lists would overlap)."""
    if any(part is None for _, part in walks):
        return None
    ids = [id(m) for mods, _ in walks for m in mods]
    if len(set(ids)) != len(ids):
        return None
    try:
        own = [_module_key(edge, classes), _module_key(edge._modules[ops_attr], classes)]
        for child_name, child in edge._modules.items():
            if child_name != ops_attr:
                mods, part = _walk(child, classes) if child is not None else ((), (None,))
                if part is None or any(id(m) in ids for m in mods):
                    return None
                own.append((child_name, part))
    except _NoKey:
        return None
    return context, tuple(own), tuple(part for _, part in walks)


# ---- mapping an edge ----------------------------------------------------------------------------------------


def _map_edge(name: str, edge: nn.Module, ops_attr: str, candidate_modules: list[list[nn.Module]],
              known: SwappedEdge | None = None) -> tuple[SwappedMixedOp, SwappedEdge]:
    """The fused edge over ``edge``'s layers. ``known``: what the checks found for an edge of this geometry
    (its candidate order, channels, stride and kind): the wrappers are then built from it, unchecked and
    unprobed (every check reads only what the cache key holds)."""
    if known is not None:
        return _rebuild(name, edge, ops_attr, candidate_modules, known)
    ops = edge._modules[ops_attr]
    partial = isinstance(getattr(edge, "k", None), int) and isinstance(edge._modules.get("mp"), nn.MaxPool2d)
    sizes = [_channels(mods) for mods in candidate_modules]
    C = next((c for c in sizes if c is not None), None)
    if any(c not in (None, C) for c in sizes):
        raise _Refused(f"its candidates disagree on the channel count: {sizes}")
    probe_C = C if C is not None else 4
    names, wrappers, strides, problems = [], [], set(), []
    for k, (op, mods) in enumerate(zip(ops, candidate_modules)):
        try:
            primitive, wrapper, stride = _map_candidate(op, mods, probe_C)
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


def _rebuild(name: str, edge: nn.Module, ops_attr: str, candidate_modules: list[list[nn.Module]],
             known: SwappedEdge) -> tuple[SwappedMixedOp, SwappedEdge]:
    """`_map_edge` for an edge whose geometry was checked and probed before: the same wrappers, built from the
    candidate names found then (the edge's layers in the same positions, as the key guarantees)."""
    stride, wrappers = known.stride, []
    for primitive, mods in zip(known.primitives, candidate_modules):
        if primitive == "none":
            wrappers.append(Zero(stride))
            continue
        if primitive == "skip_connect" and stride == 1:
            wrappers.append(nn.Identity())
            continue
        layers = _layers(mods)
        if primitive == "skip_connect":
            wrappers.append(_built(FactorizedReduce, relu=_RELU, conv1=layers[0], conv2=layers[1], bn=layers[2]))
        elif primitive.startswith("sep_conv"):
            wrappers.append(_built(SepConv, stage1=_dil_wrapper(*layers[:3]), stage2=_dil_wrapper(*layers[3:])))
        elif primitive.startswith("dil_conv"):
            wrappers.append(_dil_wrapper(*layers))
        else:
            wrappers.append(_built(PoolBN, pool=layers[0], bn=layers[1]))
    cls = PartialChannelMixedOp if known.kind == "partial_channel" else SwappedMixedOp
    new = cls(edge, ops_attr, known.primitives, wrappers, known.channels, stride)
    return new, SwappedEdge(name, known.kind, known.primitives, known.channels, stride)


def _channels(mods: list[nn.Module]) -> int | None:
    bns = [m for m in mods if isinstance(m, nn.BatchNorm2d)]
    return bns[-1].num_features if bns else None


def _layers(mods: list[nn.Module]) -> list[nn.Module]:
    """The candidate's leaf layers in registration order, its ReLUs left out (the probe checks them)."""
    return [m for m in mods if not m._modules and not isinstance(m, nn.ReLU)]


def _map_candidate(op: nn.Module, mods: list[nn.Module], C: int) -> tuple[str, nn.Module, int]:
    """(primitive name, wrapper over the same layers, stride) of one candidate; ``mods``: its `modules()`."""
    layers = _layers(mods)
    kinds = tuple(_kind(m) for m in layers)
    if kinds == ("other",) and not any(t is not None for m in mods for t in m._parameters.values()) \
            and not any(t is not None for m in mods for t in m._buffers.values()):
        return _map_parameterless(op, C)
    if kinds in (("max", "bn"), ("avg", "bn")):
        pool, bn = layers
        _check_pool(pool)
        primitive, wrapper, stride = f"{kinds[0]}_pool_3x3", _built(PoolBN, pool=pool, bn=bn), pool.stride
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
                                      _built(SepConv, stage1=first, stage2=second), first.stride)
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
    return _dil_wrapper(depthwise, pointwise, bn)


def _dil_wrapper(depthwise: nn.Conv2d, pointwise: nn.Conv2d, bn: nn.BatchNorm2d) -> DilConv:
    return _built(DilConv, kernel_size=depthwise.kernel_size[0], stride=depthwise.stride[0],
                  padding=depthwise.padding[0], dilation=depthwise.dilation[0], relu=_RELU, depthwise=depthwise,
                  pointwise=pointwise, bn=bn)


def _factorized_reduce(conv1: nn.Conv2d, conv2: nn.Conv2d, bn: nn.BatchNorm2d, C: int) -> FactorizedReduce:
    for conv in (conv1, conv2):
        _check_conv(conv, "conv")
        if (conv.kernel_size, conv.stride, conv.padding, conv.groups, conv.in_channels, conv.out_channels) != (
                (1, 1), (2, 2), (0, 0), 1, C, C // 2) or bn.num_features != C:
            raise _Refused(f"has {conv}, not the two 1x1 stride-2 convs of a factorized reduce")
    return _built(FactorizedReduce, relu=_RELU, conv1=conv1, conv2=conv2, bn=bn)


_RELU = nn.ReLU()  # stateless: the wrappers share one (they are not registered modules of the swapped edge)


def _built(cls: type[nn.Module], **attrs) -> nn.Module:
    """What ``cls.from_layers`` builds (an instance holding the given layers: the same module objects), without
    `nn.Module.__setattr__`'s bookkeeping, which a fresh instance does not need: a second-order architect
    swaps every step. python_tests/test_swap.py checks that both build the same thing."""
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    children = module._modules
    plain = module.__dict__
    for name, value in attrs.items():
        if isinstance(value, nn.Module):
            children[name] = value
        else:
            plain[name] = value
    return module


def _check_shared_bn(wrappers: list[nn.Module]) -> None:
    """The fused forward normalises all conv candidates in one call: their BatchNorms must agree."""
    stages = [s for w in wrappers for s in ((w.stage1, w.stage2) if isinstance(w, SepConv)
                                            else (w,) if isinstance(w, DilConv) else ())]
    bns = [s.bn for s in stages]
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
